"""Decision passes reused by reruns that change only how they trade: the same decisions, the trading
simulated again, no fit and no model call; and every change that can move a decision decides again."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import tradesim
from strategies.baselines import Momentum
from strategies.llmoe import LLMoEStrategy
from tests.fakes import FakeBackend
from tests.helpers import synthetic_bars, write_ticker_dir
from tradesim import reuse
from tradesim.errors import TradesimError
from tradesim.llm import model as model_module

FAST = {"epochs": 3, "patience": 2, "hidden": 8}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def counted(monkeypatch):
    """How often each strategy class decided (its decide_batch was called)."""
    calls = {"momentum": 0, "llmoe": 0}
    for cls in (Momentum, LLMoEStrategy):
        original = cls.decide_batch

        def wrapped(self, views, original=original):
            calls[self.name] += 1
            return original(self, views)

        monkeypatch.setattr(cls, "decide_batch", wrapped)
    return calls


def data_dir(tmp_path, name="data", frames=None):
    return str(write_ticker_dir(tmp_path / name, frames or synthetic_bars(sessions=160)))


def momentum(data, **options):
    return tradesim.backtest(strategy="momentum", tickers="AAA,BBB,CCC", data=data, lookback=10, top_k=1, progress=False, **options)


def test_a_rerun_that_changes_only_trading_reuses_the_pass_and_equals_deciding_again(tmp_path, counted):
    data = data_dir(tmp_path)
    first = momentum(data)
    assert counted["momentum"] == 1 and not any("reused" in note for note in first.notes)
    rerun = momentum(data, cost_bps=7, slippage_bps=3, capital=25_000, risk_free=0.02)
    assert counted["momentum"] == 1  # not asked again
    assert any(note.startswith("decisions reused from an identical pass") for note in rerun.notes)
    assert Path(rerun.info["strategy"]["decisions_reused"]["path"]).is_file()
    fresh = momentum(data, cost_bps=7, slippage_bps=3, capital=25_000, risk_free=0.02, reuse_decisions=False)
    assert counted["momentum"] == 2
    pd.testing.assert_frame_equal(rerun.equity, fresh.equity)
    pd.testing.assert_frame_equal(rerun.trades, fresh.trades)
    pd.testing.assert_frame_equal(rerun.decisions, fresh.decisions)
    assert rerun.metrics.equals(fresh.metrics) and rerun.label == fresh.label


@pytest.mark.parametrize("change", ["data", "fill", "parameter", "seed", "code", "libraries"])
def test_what_can_move_a_decision_decides_again(tmp_path, counted, monkeypatch, change):
    frames = synthetic_bars(sessions=160)
    data = data_dir(tmp_path, frames=frames)
    momentum(data)
    options: dict = {}
    if change == "data":  # one close restated, late in the data
        frames["BBB"].loc[150, ["Close", "Adj Close", "High"]] *= 1.01
        data = data_dir(tmp_path, "restated", frames)
    elif change == "fill":
        options["fill"] = "next-close"
    elif change == "seed":
        options["seed"] = 3
    elif change == "code":
        monkeypatch.setattr(reuse, "source_digest", lambda cls: "edited")
    elif change == "libraries":
        monkeypatch.setattr(reuse, "library_versions", lambda: '{"numpy": "99"}')
    if change == "parameter":
        tradesim.backtest(strategy="momentum", tickers="AAA,BBB,CCC", data=data, lookback=11, top_k=1, progress=False)
    else:
        momentum(data, **options)
    assert counted["momentum"] == 2


def test_a_file_named_by_a_setting_is_part_of_the_key(tmp_path):
    data = data_dir(tmp_path)
    dates = pd.bdate_range("2020-01-02", periods=160)
    signals = tmp_path / "signals.csv"
    signals.write_text(f"date,ticker,weight\n{dates[20].date()},AAA,1\n")
    first = tradesim.backtest(strategy="signals", tickers="AAA,BBB,CCC", data=data, signals=str(signals), progress=False)
    signals.write_text(f"date,ticker,weight\n{dates[20].date()},BBB,1\n")  # same path, new content
    second = tradesim.backtest(strategy="signals", tickers="AAA,BBB,CCC", data=data, signals=str(signals), progress=False)
    assert first.weights.loc[dates[20], "AAA"] == 1 and second.weights.loc[dates[20], "BBB"] == 1
    assert not any("reused" in note for note in second.notes)


def test_a_model_with_another_fingerprint_decides_again_and_a_reused_run_asks_no_model(tmp_path, counted, monkeypatch):
    monkeypatch.setitem(model_module.BACKENDS, "fake", lambda target, options: FakeBackend(f"fake:{target}"))
    frames = synthetic_bars(tickers=("AAA",), sessions=260)
    data = data_dir(tmp_path, frames=frames)

    def llmoe(**options):
        return tradesim.backtest(strategy="llmoe", ticker="AAA", data=data, router="fake:1", train_end="2020-09-01", progress=False, **FAST, **options)

    first = llmoe()
    assert first.info["llm"]["model_calls"] > 0
    again = llmoe(cost_bps=10)
    assert counted["llmoe"] == 1 and again.info["llm"]["model_calls"] == 0 and again.info["strategy"]["models"][0]["model_calls"] == 0
    monkeypatch.setitem(model_module.BACKENDS, "fake", lambda target, options: FakeBackend(f"fake:{target}-retrained"))
    llmoe(cost_bps=10)
    assert counted["llmoe"] == 2


def test_this_runs_gross_limit_still_holds_and_a_damaged_pass_is_decided_again(tmp_path, counted, home):
    data = data_dir(tmp_path)
    dates = pd.bdate_range("2020-01-02", periods=160)
    signals = tmp_path / "signals.csv"
    signals.write_text(f"date,ticker,weight\n{dates[20].date()},AAA,1\n{dates[20].date()},BBB,-1\n")
    run = lambda **o: tradesim.backtest(strategy="signals", tickers="AAA,BBB,CCC", data=data, signals=str(signals), progress=False, **o)  # noqa: E731
    run(max_gross=2)
    with pytest.raises(TradesimError, match="gross exposure"):
        run(max_gross=1)
    momentum(data)
    for path in (home / "decisions").glob("*.pickle"):
        path.write_bytes(b"not a pickle")
    momentum(data, cost_bps=1)
    assert counted["momentum"] == 2  # a damaged pass is decided anew ...
    momentum(data, cost_bps=2)
    assert counted["momentum"] == 2  # ... and stored again
