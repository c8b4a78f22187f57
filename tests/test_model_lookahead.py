"""The models' own look-ahead, proven with a scripted model that remembers the market: a local
OpenAI-wire server that knows every move of the test's own prices before a date and guesses after it."""

from __future__ import annotations

import hashlib
import json
import math
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from fake_server import FakeServer
from helpers import synthetic_bars, write_ticker_dir
from tradesim.cli import main

FAST = ["--epochs", "200", "--patience", "30", "--hidden", "8"]  # enough for each expert to learn its label
KNOWS_UNTIL = "2016-06-15"  # the memorizer's true cutoff


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    frames = synthetic_bars(("MSFT", "AAPL"), sessions=520, seed=21, start="2015-01-01")
    return write_ticker_dir(root / "bars", frames), frames


def guess(prompt: str) -> bool:
    return int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) % 2 == 0


def answer(first: str, second: str, right: bool | None, prompt: str) -> dict[str, float]:
    """A confident answer when the model knows (`right`), a coin flip from the prompt when it does not."""
    says_first = guess(prompt) if right is None else right
    return {f" {first}": math.log(0.95 if says_first else 0.05), f" {second}": math.log(0.05 if says_first else 0.95)}


class Memorizer:
    """Knows, up to KNOWS_UNTIL, each session's close-to-close move (the probe's question) and the
    move the next fill earns (the router's question); guesses after it. `honest`: always guesses."""

    def __init__(self, frames, honest=False):
        self.honest = honest
        self.closes = {t: pd.Series(f["Adj Close"].to_numpy(), index=pd.to_datetime(f["Date"])) for t, f in frames.items()}
        self.opens = {t: pd.Series((f["Open"] * f["Adj Close"] / f["Close"]).to_numpy(), index=pd.to_datetime(f["Date"])) for t, f in frames.items()}

    def knows(self, day: pd.Timestamp) -> bool:
        return not self.honest and day <= pd.Timestamp(KNOWS_UNTIL)

    def __call__(self, prompt: str) -> dict[str, float]:
        if "Up or Down" in prompt:  # the probe: did TICKER close higher on (DATE)?
            ticker, day = re.search(r"Did (\w+) stock", prompt).group(1), pd.Timestamp(re.search(r"\((\d{4}-\d\d-\d\d)\)", prompt).group(1))
            closes = self.closes[ticker]
            at = closes.index.get_loc(day)
            return answer("Up", "Down", bool(closes.iloc[at] > closes.iloc[at - 1]) if self.knows(day) else None, prompt)
        ticker = re.search(r"Stock: (\w+)", prompt).group(1)  # the router: the five sessions up to DATE
        day = max(pd.Timestamp(d) for d in re.findall(r"\d{4}-\d\d-\d\d", prompt))
        opens = self.opens[ticker]
        at = opens.index.get_loc(day)
        known = bool(opens.iloc[at + 2] > opens.iloc[at + 1]) if self.knows(day) and at + 2 < len(opens) else None
        return answer("Optimistic", "Pessimistic", known, prompt)


@pytest.fixture
def server():
    running = FakeServer()
    yield running
    running.close()


def backtest(server, bars, out, *extra):
    spec = f"openai:{server.url}#memorizer"
    args = ["backtest", "--strategy", "llmoe", "--ticker", "MSFT", "--data", str(bars), "--train-end", "2015-09-01", "--router", spec,
            "--model-cutoff", f"{spec}=2016-06-30", "--cutoff-embargo-days", "0", "--sig-reps", "300", *FAST, "--out", str(out), *extra]
    return CliRunner().invoke(main, args)


def test_a_memorizing_router_shines_before_its_cutoff_only_and_the_run_is_flagged(market, server, tmp_path):
    bars, frames = market
    server.scorer = Memorizer(frames)
    done = backtest(server, bars, tmp_path / "memorized")
    assert done.exit_code == 0, done.output
    metrics = json.loads((tmp_path / "memorized" / "metrics.json").read_text())
    split = metrics["by_model_cutoff"][f"openai:{server.url}#memorizer"]
    assert split["decisions"]["before"] > split["decisions"]["after"] > 50
    assert split["before"]["sharpe"] > 4 and split["before"]["sharpe_interval"][0] > 1
    assert split["after"]["sharpe"] < 2.5 and split["after"]["sharpe_interval"][0] < 0 < split["after"]["sharpe_interval"][1]
    assert metrics["look_ahead"] and any(r.startswith("MODEL LOOK-AHEAD") for r in metrics["look_ahead_reasons"])
    assert "MODEL LOOK-AHEAD" in done.output and "LOOK-AHEAD" in (tmp_path / "memorized" / "report.html").read_text()
    rows = [json.loads(line) for line in (tmp_path / "memorized" / "decisions.jsonl").read_text().splitlines()]
    assert {row["model_cutoff"][f"openai:{server.url}#memorizer"] for row in rows} == {"before", "after"}
    explained = CliRunner().invoke(main, ["explain", str(tmp_path / "memorized"), "--date", rows[0]["date"]])
    assert "decided on or before its cutoff 2016-06-30 — the model may have read what followed this day" in explained.output
    compared = CliRunner().invoke(main, ["compare", str(tmp_path / "memorized")])
    assert "[LOOK-AHEAD]" in compared.output
    refused = backtest(server, bars, tmp_path / "refused", "--require-post-cutoff", "--cost-bps", "1")  # another trial, were it one
    assert refused.exit_code == 1 and "--require-post-cutoff: MODEL LOOK-AHEAD" in refused.output and not (tmp_path / "refused").exists()
    listed = CliRunner().invoke(main, ["trials"])
    assert " 1 trials," in listed.output  # the refused run is no trial


def test_an_honest_model_with_a_cutoff_before_the_test_is_not_flagged(market, server, tmp_path):
    bars, frames = market
    server.scorer = Memorizer(frames, honest=True)
    spec = f"openai:{server.url}#memorizer"
    done = backtest(server, bars, tmp_path / "honest", "--model-cutoff", f"{spec}=2015-06-30")
    assert done.exit_code == 0, done.output
    metrics = json.loads((tmp_path / "honest" / "metrics.json").read_text())
    assert not metrics["look_ahead"] and metrics["by_model_cutoff"][spec]["decisions"]["before"] == 0


@pytest.mark.parametrize("honest", [False, True])
def test_the_probe_finds_the_memorizers_cutoff_and_none_for_an_honest_model(market, server, tmp_path, honest):
    bars, frames = market
    server.scorer = Memorizer(frames, honest=honest)
    server.writer = lambda prompt: "123.45"
    spec = f"openai:{server.url}#memorizer"
    out = tmp_path / "probe"
    done = CliRunner().invoke(main, ["probe", spec, "--ticker", "MSFT", "--data", str(bars), "--start", "2015-07-01", "--end", "2016-12-31",
                                     "--model-cutoff", f"{spec}=2016-05-31", "--out", str(out), *(["--no-prices"] if honest else [])])
    assert done.exit_code == 0, done.output
    summary = json.loads((out / "probe.json").read_text())
    answers = pd.read_csv(out / "probe.csv")
    assert len(answers) > 350 and summary["months"] == 18
    assert {"price_answer", "price_error"} <= set(answers.columns) if not honest else "price_answer" not in answers.columns
    assert (out / "probe.png").stat().st_size > 10_000
    if honest:
        assert summary["estimated_cutoff"] is None and "none found" in done.output
    else:
        estimate = pd.Timestamp(summary["estimated_cutoff"])
        assert abs((estimate - pd.Timestamp(KNOWS_UNTIL)).days) <= 31, summary["estimated_cutoff"]
        assert f"estimated effective cutoff: {summary['estimated_cutoff']}" in done.output
    assert summary["stated_cutoff"] == "2016-05-31"


def test_the_cutoff_rule_rarely_finds_one_in_an_honest_models_answers():
    """Two years of coin-flip answers for two tickers: a per-month 5% test would call some month
    above chance in most probes; the Holm rule in about one in twenty."""
    import gc

    import numpy as np

    from tradesim.evidence.probe import score

    dates = pd.bdate_range("2014-01-01", "2015-12-31")
    holm = naive = 0
    gc.freeze()  # statsmodels' Holm calls gc.collect() each time: seconds in a test worker's large heap
    try:
        for seed in range(40):
            rng = np.random.default_rng(seed)
            answers = pd.DataFrame({"date": np.repeat(dates, 2), "up": rng.random(2 * len(dates)) < 0.52})
            answers["answer_up"] = rng.random(len(answers)) < 0.6
            answers["correct"] = answers["answer_up"] == answers["up"]
            months, summary = score(answers)
            holm += summary["estimated_cutoff"] is not None
            naive += bool((months["p_value"] < 0.05).any())
    finally:
        gc.unfreeze()
    assert holm / 40 <= 0.1 and naive / 40 >= 0.3


def test_a_price_answer_is_read_past_the_restated_date():
    from tradesim.evidence.probe import parse_price

    assert parse_price("The closing price of AAPL stock on January 3, 2014 was $77.28.") == 77.28
    assert parse_price("It closed at 1,045.10 on 2014-01-03") == 1045.10
    assert parse_price("The closing price of MSFT stock on January") is None
