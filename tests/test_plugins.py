"""Strategies as plug-ins: a separate package, installed with pip, registers a strategy in the
entry-point group `tradesim.strategies`; `tradesim strategies` lists it, `tradesim backtest` runs
it, and a paper account runs it night after night with the plug-in's code in its identity. From
Python, `tradesim.backtest` takes a Strategy class and a DataFrame of bars."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import tradesim
from tests.paper_helpers import cli, evening, printed_bars, write_bars, write_config, xnys_sessions
from tradesim.errors import TradesimError
from tradesim.strategy import Decision, Param, Strategy

PLUGIN = '''
from dataclasses import dataclass

from tradesim.strategy import Decision, Settings, Strategy, setting

SHARE = 1.0


@dataclass(frozen=True)
class ContrarianSettings(Settings):
    lookback: int = setting(5, "sessions the loss is measured over", minimum=1)


class Contrarian(Strategy):
    """Holds the ticker that fell most over the last `lookback` sessions."""

    name = "contrarian"
    summary = "Buy the biggest loser of the last N sessions (a plug-in from another package)."
    Settings = ContrarianSettings

    def decide(self, view):
        close = view.field("close", self.settings.lookback + 1).dropna(axis=1)
        if len(close) <= self.settings.lookback or close.empty:
            return Decision({})
        moved = close.iloc[-1] / close.iloc[0] - 1
        loser = moved.idxmin()
        return Decision({loser: SHARE}, {t: {"move": float(moved.get(t, float("nan")))} for t in self.tickers})
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "tradesim-contrarian"
version = "0.1"

[project.entry-points."tradesim.strategies"]
contrarian = "tradesim_contrarian:Contrarian"
broken = "tradesim_contrarian:NoSuchClass"

[tool.setuptools]
py-modules = ["tradesim_contrarian"]
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The plug-in package built and installed with pip into its own folder (put on PYTHONPATH)."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "source"
    source.mkdir()
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "tradesim_contrarian.py").write_text(PLUGIN)
    site = root / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(source)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    return site


def run_cli(site, home, *args):
    """The command in a new process that finds the plug-in on its path, as an installed one."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "TRADESIM_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", "from tradesim.cli import main; main()", *map(str, args)], capture_output=True, text=True, env=env)


@pytest.fixture
def on_path(installed, monkeypatch):
    """The plug-in's folder on this process's path (entry points are read from it on each call)."""
    monkeypatch.syspath_prepend(str(installed))
    importlib.invalidate_caches()
    yield installed
    sys.modules.pop("tradesim_contrarian", None)


def test_a_plugin_package_is_listed_backtested_and_paper_traded(tmp_path, installed, on_path, monkeypatch):
    listed = run_cli(installed, tmp_path / "home", "strategies")
    assert listed.returncode == 0, listed.stderr
    assert "contrarian: Buy the biggest loser of the last N sessions (a plug-in from another package). [plug-in from tradesim-contrarian]" in listed.stdout
    assert "--lookback (int, default 5)" in listed.stdout
    assert "broken: cannot be used:" in listed.stdout and "NoSuchClass" in listed.stdout
    assert "momentum:" in listed.stdout and "[plug-in" not in listed.stdout.split("momentum:")[1].splitlines()[0]

    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    tickers = ("AAA", "BBB", "CCC")
    data = write_bars(tmp_path / "data", printed_bars(tickers, sessions=120))
    ran = cli("backtest", "--strategy", "contrarian", "--tickers", ",".join(tickers), "--data", data, "--lookback", "3", "--cost-bps", "5", "--out", tmp_path / "run")
    assert ran.exit_code == 0, ran.output
    run = tradesim.open_run(tmp_path / "run")
    assert run.info["strategy"] == {**run.info["strategy"], "name": "contrarian", "params": {"lookback": 3}}
    assert (run.weights.sum(axis=1) > 0).mean() > 0.9 and len(run.trades) > 10

    broken = cli("backtest", "--strategy", "broken", "--tickers", "AAA", "--data", data)
    assert broken.exit_code == 1 and broken.output.count("\n") == 1, broken.output
    assert "strategy 'broken' (tradesim_contrarian:NoSuchClass from tradesim-contrarian) failed to load" in broken.output

    # A paper account of the plug-in: nights run, and the plug-in's code is part of what decides.
    sessions = xnys_sessions("2023-01-03", 120)
    config = write_config(tmp_path / "acct.toml", data, "contrarian", tickers, fill="next-open", params={"lookback": 3})
    made = cli("paper", "init", "acct", "--config", config, "--inception", sessions[100].date(), "--now", evening(sessions[99].date()))
    assert made.exit_code == 0, made.output
    night = cli("paper", "run", "acct", "--now", evening(sessions[103].date()))
    assert night.exit_code == 0 and night.output.count("processed ") == 4, night.output
    module = on_path / "tradesim_contrarian.py"
    module.write_text(module.read_text().replace("SHARE = 1.0", "SHARE = 0.5"))
    refused = cli("paper", "run", "acct", "--now", evening(sessions[104].date()))
    assert refused.exit_code == 2 and "(code)" in refused.output, refused.output


class Halves(Strategy):
    """A strategy class of the user's own, never registered, its parameters declared the older way
    (a `params` tuple, from which its typed Settings are made)."""

    name = "halves"
    summary = "Half in each of the first two tickers."
    params = (Param("first", float, 0.5, "the first ticker's weight"),)

    def decide(self, view):
        return Decision({self.tickers[0]: self.settings.first, self.tickers[1]: 1 - self.settings.first})


def long_frame(tickers=("AAA", "BBB"), sessions=60, seed=1):
    rng = np.random.default_rng(seed)
    dates = xnys_sessions("2022-01-03", sessions)
    rows = []
    for ticker in tickers:
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, sessions)))
        rows.append(pd.DataFrame({"Date": dates, "Symbol": ticker, "Open": close * 0.999, "High": close * 1.01, "Low": close * 0.98, "Close": close, "Volume": 1000}))
    return pd.concat(rows, ignore_index=True)


def test_backtest_takes_a_strategy_class_and_a_dataframe(tmp_path):
    frame = long_frame()
    run = tradesim.backtest(strategy=Halves, data=frame, first=0.25, progress=False)
    assert run.strategy == "halves" and run.tickers == ["AAA", "BBB"]
    assert run.weights.iloc[0].to_dict() == {"AAA": 0.25, "BBB": 0.75}
    assert run.info["config"]["data"] == "<DataFrame>"
    # The same bars from a file give the same equity curve.
    path = tmp_path / "bars.csv"
    frame.assign(Date=frame["Date"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    from_file = tradesim.backtest(strategy=Halves, data=str(path), tickers="AAA,BBB", first=0.25, progress=False)
    pd.testing.assert_series_equal(run.equity["strategy"], from_file.equity["strategy"])
    # Written to a run directory, it reads back; prices cannot be read again from a frame.
    written = tradesim.backtest(strategy=Halves, data=frame, tickers=["BBB", "AAA"], first=1.0, out=tmp_path / "run", progress=False)
    assert written.tickers == ["BBB", "AAA"] and written.weights.iloc[0].to_dict() == {"BBB": 1.0, "AAA": 0.0} and json.loads((tmp_path / "run" / "run.json").read_text())["strategy"]["name"] == "halves"
    with pytest.raises(TradesimError, match="DataFrame handed to tradesim.backtest"):
        written.prices


def test_backtest_refuses_what_is_not_a_strategy_or_bars():
    with pytest.raises(TradesimError, match="not a tradesim.strategy.Strategy subclass"):
        tradesim.backtest(strategy=dict, data=long_frame(), progress=False)
    with pytest.raises(TradesimError, match="unknown strategy 'nope'"):
        tradesim.backtest(strategy="nope", data=long_frame(), progress=False)
    with pytest.raises(TradesimError, match="data \\(a DataFrame\\): missing required column 'close'"):
        tradesim.backtest(strategy=Halves, data=long_frame().drop(columns="Close"), progress=False)
    with pytest.raises(TradesimError, match="data \\(a DataFrame\\): unknown ticker ZZZ"):
        tradesim.backtest(strategy=Halves, data=long_frame(), tickers="AAA,ZZZ", progress=False)


def test_settings_are_typed_frozen_and_give_the_flags_and_checks():
    from strategies.tradexpert.strategy import TradExpert

    settings = TradExpert(("AAA", "BBB", "CCC"), {"top_k": "2", "general_expert": "random"}).settings
    assert settings.top_k == 2 and settings.budget is None and settings.news_model is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.top_k = 3
    flags = {param.flag: param for param in TradExpert.params}
    assert flags["--top-k"].type is int and flags["--top-k"].minimum == 1 and flags["--mode"].choices == ("rank", "predict")
    assert flags["--budget"].type is int and flags["--budget"].default is None
    with pytest.raises(TradesimError, match="--mode \\(params.mode\\): expected one of rank, predict"):
        TradExpert(("AAA", "BBB", "CCC"), {"mode": "guess"})
    # The older way: a params tuple gives a typed, frozen Settings class too.
    assert Halves(("AAA", "BBB"), {"first": "0.3"}).settings.first == 0.3 and Halves.Settings.__name__ == "HalvesSettings"
