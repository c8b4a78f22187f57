"""LLMoE end to end: routing, experts, ablations, prompts, explain and compare."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fake_server import FakeServer
from fakes import FakeBackend
from helpers import synthetic_bars, write_ticker_dir
from llm_helpers import save_tiny_llama
from strategies.llmoe import INSTRUCTIONS, LLMoEStrategy
from tradesim.backtesting import run_backtest
from tradesim.cli import main
from tradesim.config import resolve
from tradesim.llm import model as model_module
from tradesim.market import load_market_data
from tradesim.market.features import FEATURE_NAMES, fill_to_fill_returns, llmoe_features, windows

FAST = ["--epochs", "3", "--patience", "2", "--hidden", "8"]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))


@pytest.fixture
def fake_router(monkeypatch):
    backends = []

    def build(target, options):
        backend = FakeBackend(f"fake:{target}")
        backends.append(backend)
        return backend

    monkeypatch.setitem(model_module.BACKENDS, "fake", build)
    return backends


@pytest.fixture
def market(tmp_path):
    frames = synthetic_bars(("MSFT",), sessions=320, seed=12, start="2015-01-01")
    bars = write_ticker_dir(tmp_path / "bars", frames)
    dates = pd.to_datetime(frames["MSFT"]["Date"])
    rng = np.random.default_rng(3)
    rows = []
    for i, day in enumerate(dates[::2]):
        for hour in (14, 20, 23):  # 14:00 UTC: before the cutoff; 20:00 and 23:00: around and after it
            rows.append({"id": f"n{i}-{hour}", "created_at": f"{day.date()}T{hour:02d}:30:00Z", "text": f"Microsoft MSFT headline {i} at {hour} {rng.integers(100)}"})
    rows.append({"id": "dated", "created_at": str(dates[200].date()), "text": "a dated item"})
    news = tmp_path / "news.jsonl"
    news.write_text("".join(json.dumps({**row, "ticker": "MSFT"}) + "\n" for row in rows))
    return str(bars), str(news), dates


def run_cli(*args):
    result = CliRunner().invoke(main, ["backtest", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_features_and_windows():
    index = pd.bdate_range("2020-01-01", periods=40)
    close = pd.Series(np.linspace(10, 20, 40), index=index)
    raw = close * 2
    bars = pd.DataFrame({"open": close * 0.99, "close": close, "raw_open": raw * 0.99, "raw_high": raw * 1.02, "raw_low": raw * 0.97, "raw_close": raw})
    features = llmoe_features(bars)
    assert tuple(features.columns) == FEATURE_NAMES and len(FEATURE_NAMES) == 11
    assert features["open_to_close"].iloc[-1] == pytest.approx(-0.01) and features["high_to_close"].iloc[-1] == pytest.approx(0.02)
    assert features["ma5_deviation"].iloc[-1] == pytest.approx(close.iloc[-5:].mean() / close.iloc[-1] - 1)
    rows = windows(features)
    assert rows.shape[1] == 55 and rows.index[0] == index[33]  # 30-session average + 5-session window
    np.testing.assert_allclose(rows.iloc[-1].to_numpy()[-11:], features.iloc[-1].to_numpy())
    at_close = fill_to_fill_returns(bars, "next-close")
    np.testing.assert_allclose(at_close.iloc[:-2], close.iloc[2:].to_numpy() / close.iloc[1:-1].to_numpy() - 1)
    assert at_close.iloc[-2:].isna().all()
    at_open = fill_to_fill_returns(bars, "next-open")
    np.testing.assert_allclose(at_open.iloc[:-2], bars["open"].iloc[2:].to_numpy() / bars["open"].iloc[1:-1].to_numpy() - 1)
    same = fill_to_fill_returns(bars, "same-close")
    np.testing.assert_allclose(same.iloc[:-1], close.iloc[1:].to_numpy() / close.iloc[:-1].to_numpy() - 1)
    close_only = llmoe_features(bars.assign(raw_open=np.nan, raw_high=np.nan, raw_low=np.nan))
    assert (close_only[["open_to_close", "high_to_close", "low_to_close"]] == 0).all().all()


def test_llmoe_end_to_end_with_a_fake_router(market, tmp_path, fake_router):
    bars, news, dates = market
    out = tmp_path / "run"
    args = ["--strategy", "llmoe", "--ticker", "MSFT", "--data", bars, "--news", news, "--train-end", dates[250].date(), "--router", "fake:1", *FAST]
    first = run_cli(*args, "--out", out)
    assert "model fake:1: " in first.output and " 0 cache hits" in first.output
    decisions = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert len(decisions) == 320 - 250
    row = decisions[10]
    assert row["router_label"] in ("Optimistic", "Pessimistic") and row["expert"] == row["router_label"]
    assert 0.5 <= row["router_probability"] <= 1 and 0 <= row["expert_probability"] <= 1
    assert row["prompt"].startswith("You are the router") and "Stock: MSFT" in row["prompt"]
    assert row["weight"] in (0.0, 1.0) and row["action"] in ("buy", "sell", "hold")
    run = json.loads((out / "run.json").read_text())
    assert run["llm"]["model_calls"] == 320 - 33 - 2 and run["llm"]["cache_hits"] == 0  # labelled training days + test days
    assert run["strategy"]["router_template"]["version"] == "llmoe-router/3"
    assert sum(run["strategy"]["expert_training_days"].values()) == 250 - 33 - 2  # next-open labels: the last two have none

    run_cli(*args, "--no-reuse-decisions", "--out", tmp_path / "again")  # the caches underneath a decision pass
    rerun = json.loads((tmp_path / "again" / "run.json").read_text())
    assert rerun["llm"]["model_calls"] == 0 and rerun["llm"]["cache_hits"] == run["llm"]["model_calls"]
    trained, loaded = run["strategy"]["fitted_models"], rerun["strategy"]["fitted_models"]
    assert [m["loaded"] for m in trained] == [False, False] and [m["loaded"] for m in loaded] == [True, True]
    assert [m["id"] for m in trained] == [m["id"] for m in loaded] and all(m["device"] == "cpu" for m in loaded)
    stored = json.loads((tmp_path / "home" / "models" / trained[0]["id"] / "model.json").read_text())
    assert stored["seed"] == 0 and stored["about"]["ticker"] == "MSFT" and stored["about"]["training_period"][0] < str(dates[250].date())
    assert rerun["versions"]["torch"] and rerun["versions"]["transformers"] and rerun["torch_runtime"]["cuda_available"] is False
    assert (out / "decisions.jsonl").read_bytes() == (tmp_path / "again" / "decisions.jsonl").read_bytes()
    assert (out / "equity.csv").read_bytes() == (tmp_path / "again" / "equity.csv").read_bytes()

    run_cli(*args, "--seed", 1, "--out", tmp_path / "seeded")
    seeded = json.loads((tmp_path / "seeded" / "run.json").read_text())["strategy"]["fitted_models"]
    assert not any(m["loaded"] for m in seeded) and not {m["id"] for m in seeded} & {m["id"] for m in trained}

    explained = CliRunner().invoke(main, ["explain", str(out), "--date", str(dates[260].date())])
    assert explained.exit_code == 0
    assert "prompt:" in explained.output and "news used" in explained.output and "router_label" in explained.output
    assert "action:" in explained.output and "filled at the next session" in explained.output
    missing = CliRunner().invoke(main, ["explain", str(out), "--date", "1999-01-01"])
    assert missing.exit_code != 0 and "no decision" in missing.output


def test_no_news_reaches_a_prompt_before_it_is_visible(market, tmp_path, fake_router):
    bars, news, dates = market
    config = resolve({}, {"strategy": "llmoe", "tickers": "MSFT", "data": bars, "news": news, "train_end": str(dates[250].date()),
                          "params": {"router": "fake:1", "epochs": 2, "hidden": 8}})
    result = run_backtest(config, LLMoEStrategy, progress=False)
    cutoffs = dict(zip(result.data.sessions, result.data.cutoffs))
    items = result.data.news.set_index("id")
    seen_after = 0
    for row in result.decisions:
        cutoff = cutoffs[pd.Timestamp(row["date"])]
        for used in row["news"]:
            assert pd.Timestamp(used["visible_at"]) < cutoff
            assert items.loc[used["id"], "text"] in row["prompt"]
        late = items[(items["visible_at"] >= cutoff)]
        assert not any(text in row["prompt"] for text in late["text"])
        seen_after += sum(1 for used in row["news"] if used["id"].endswith("-23"))
    assert seen_after > 0  # after-cutoff items do show up, in the next session's line


def test_expert_training_never_sees_a_test_row(market, tmp_path, fake_router):
    bars, news, dates = market
    split = dates[250]

    def trained(data_dir):
        config = resolve({}, {"strategy": "llmoe", "tickers": "MSFT", "data": data_dir, "train_end": str(split.date()),
                              "params": {"router": "fake:1", "epochs": 3, "hidden": 8}})
        return run_backtest(config, LLMoEStrategy, progress=False).strategy.experts

    original = trained(bars)
    scrambled_dir = tmp_path / "scrambled"
    frame = pd.read_csv(f"{bars}/MSFT.csv")
    later = pd.to_datetime(frame["Date"]) >= split
    rng = np.random.default_rng(0)
    for column in ("Open", "High", "Low", "Close", "Adj Close"):
        frame.loc[later, column] = 100.0
    frame.loc[later, "High"] = 100 + rng.uniform(0, 5, later.sum())
    frame.loc[later, "Adj Close"] = rng.uniform(50, 100, later.sum())
    scrambled_dir.mkdir()
    frame.to_csv(scrambled_dir / "MSFT.csv", index=False)
    changed = trained(str(scrambled_dir))
    for label in original:
        for (name, a), (_, b) in zip(original[label].network.state_dict().items(), changed[label].network.state_dict().items()):
            assert a.equal(b), f"{label} expert parameter {name} changed"


def test_router_ablations_and_oracle_flags(market, tmp_path):
    bars, _, dates = market
    common = ["--strategy", "llmoe", "--ticker", "MSFT", "--data", bars, "--train-end", dates[250].date(), *FAST]
    run_cli(*common, "--router", "always-optimistic", "--out", tmp_path / "opt")
    labels = {json.loads(line)["router_label"] for line in (tmp_path / "opt" / "decisions.jsonl").read_text().splitlines()}
    assert labels == {"Optimistic"}
    # With one label only, the optimistic expert trains on every day with mlp's seed: the same run as mlp.
    run_cli("--strategy", "mlp", *common[2:], "--out", tmp_path / "mlp")
    assert (tmp_path / "mlp" / "equity.csv").read_bytes() == (tmp_path / "opt" / "equity.csv").read_bytes()
    run_cli(*common, "--router", "random", "--out", tmp_path / "r1")
    run_cli(*common, "--router", "random", "--out", tmp_path / "r2")
    assert (tmp_path / "r1" / "decisions.jsonl").read_bytes() == (tmp_path / "r2" / "decisions.jsonl").read_bytes()
    oracle = run_cli(*common, "--router", "oracle", "--out", tmp_path / "oracle")
    assert "ORACLE ROUTER" in oracle.output
    assert json.loads((tmp_path / "oracle" / "metrics.json").read_text())["look_ahead"] is True
    assert "LOOK-AHEAD" in (tmp_path / "oracle" / "report.html").read_text()
    rows = [json.loads(line) for line in (tmp_path / "oracle" / "decisions.jsonl").read_text().splitlines()]
    assert all(row.get("look_ahead") for row in rows if row["router_label"])
    opens = load_market_data(bars, ["MSFT"]).bars["open"]["MSFT"]
    for row in rows[:-2]:  # next-open fills: the oracle sees the move from the next open to the one after
        at = opens.index.get_loc(pd.Timestamp(row["date"]))
        assert row["router_label"] == ("Optimistic" if opens.iloc[at + 2] > opens.iloc[at + 1] else "Pessimistic")

    compared = CliRunner().invoke(main, ["compare", str(tmp_path / "opt"), str(tmp_path / "r1"), str(tmp_path / "oracle")])
    assert compared.exit_code == 0
    lines = compared.output.splitlines()
    assert "Sharpe" in lines[0] and "llmoe (oracle) [LOOK-AHEAD]" in compared.output and "buy-and-hold MSFT" in compared.output
    assert len(lines) == 2 + 3 + 1 + 1 + 1  # header, rule, three runs, the benchmark, its period, the legend


def test_anonymized_prompts_hide_ticker_name_and_dates(market, tmp_path, fake_router):
    bars, news, dates = market
    out = tmp_path / "anon"
    run_cli("--strategy", "llmoe", "--ticker", "MSFT", "--data", bars, "--news", news, "--train-end", dates[250].date(), "--router", "fake:1", "--anonymize", "dates", *FAST, "--out", out)
    prompts = [json.loads(line)["prompt"] for line in (out / "decisions.jsonl").read_text().splitlines()]
    joined = "\n".join(prompts)
    assert "MSFT" not in joined and "Microsoft" not in joined and "2015-" not in joined
    assert "day -4:" in prompts[5] and "the company" in joined


def test_the_strictest_anonymization_leaves_no_name_date_or_price_level_in_any_prompt(tmp_path, fake_router):
    frames = synthetic_bars(("MSFT", "AAPL"), sessions=300, seed=5, start="2015-01-01")
    for frame in frames.values():  # price levels far from the rebased 100, so that a level cannot match by chance
        frame[["Open", "High", "Low", "Close", "Adj Close"]] *= 9
    bars = write_ticker_dir(tmp_path / "bars", frames)
    dates = pd.to_datetime(frames["MSFT"]["Date"])
    texts = ["Microsoft $MSFT closes at {close} on {day:%B %d, %Y}", "Apple and MSFT: Q3 {day:%Y} results due {day:%m/%d}", "MSFT up 2.5% to ${close} on {day:%A}"]
    rows = [
        {"id": f"n{i}", "ticker": "MSFT", "created_at": f"{day.date()}T14:00:00Z", "text": texts[i % 3].format(day=day, close=f"{close:.2f}")}
        for i, (day, close) in enumerate(zip(dates, frames["MSFT"]["Close"]))
    ]
    news = tmp_path / "news.jsonl"
    news.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "strict"
    run_cli("--strategy", "llmoe", "--ticker", "MSFT", "--data", bars, "--news", news, "--train-end", dates[230].date(), "--router", "fake:1",
            "--anonymize", "prices", *FAST, "--out", out)
    prompts = [str(prompt) for backend in fake_router for call in backend.calls for prompt in call]
    assert len(prompts) > 250  # every prompt the model was asked, training days included
    joined = "\n".join(prompts)
    closes = {f"{value:.2f}" for frame in frames.values() for value in frame["Close"]}
    numbers = set(re.findall(r"\d+\.\d\d", joined))
    assert not numbers & closes, sorted(numbers & closes)[:5]
    assert not re.search(r"MSFT|AAPL|Microsoft|Apple", joined)
    assert not re.search(r"\b20\d\d\b|January|February|March|April|June|July|August|September|October|November|December|day, |\d+/\d+", joined)
    assert "day -4: open" in joined and "close 100.00 volume" in joined and "x average" in joined and "up 2.5% to [number]" in joined
    report = json.loads((out / "run.json").read_text())["strategy"]
    assert report["label"] == "llmoe (fake:1, anonymized: prices)"


@pytest.mark.parametrize("strategy", ["mlp", "lstm", "moe-gate"])
def test_paper_baselines_run(market, tmp_path, strategy):
    bars, _, dates = market
    out = tmp_path / strategy
    run_cli("--strategy", strategy, "--ticker", "MSFT", "--data", bars, "--train-end", dates[250].date(), *FAST, "--out", out)
    rows = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert all(0 <= row["probability"] <= 1 for row in rows)
    if strategy == "moe-gate":
        assert all(abs(sum(row["gate"]) - 1) < 1e-5 for row in rows)


def test_llmoe_with_a_tiny_hf_router_and_reasons(market, tmp_path):
    bars, news, dates = market
    model_dir = save_tiny_llama(tmp_path / "tiny")
    out = tmp_path / "hf"
    run_cli("--strategy", "llmoe", "--ticker", "MSFT", "--data", bars, "--news", news, "--start", dates[150].date(), "--train-end", dates[280].date(),
            "--router", f"hf:{model_dir}", "--router-reasons", *FAST, "--out", out)
    rows = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert all(isinstance(row["reason"], str) for row in rows if row["router_label"])
    run = json.loads((out / "run.json").read_text())
    assert run["llm"]["completion_tokens"] > 0 and run["strategy"]["models"][0]["spec"] == f"hf:{model_dir}"


def test_llmoe_through_an_openai_compatible_server(market, tmp_path):
    bars, _, dates = market
    server = FakeServer()
    try:
        out = tmp_path / "served"
        run_cli("--strategy", "llmoe", "--ticker", "MSFT", "--data", bars, "--start", dates[150].date(), "--train-end", dates[280].date(),
                "--router", f"openai:{server.url}#tiny-model", *FAST, "--out", out)
    finally:
        server.close()
    rows = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert {row["router_label"] for row in rows} <= {"Optimistic", "Pessimistic"}
    # the chat endpoint: the instructions are the system message, the sessions the user message
    assert all(request["path"] == "/v1/chat/completions" for request in server.requests)
    assert all(request["body"]["messages"][0] == {"role": "system", "content": INSTRUCTIONS} for request in server.requests)
    assert all(request["body"]["messages"][1]["content"].startswith("Stock: MSFT\n") for request in server.requests)


def test_llmoe_rejects_bad_settings(market, tmp_path):
    bars, _, _ = market
    for args, message in [
        (["--ticker", "MSFT", "--router", "gpt-9"], "--router 'gpt-9': expected a model spec"),
        (["--tickers", "MSFT,AAPL"], "trades one ticker All-in All-out"),
        (["--ticker", "MSFT", "--train-end", "2015-01-20"], "has only 0 training sessions with complete features before 2015-01-19"),
        (["--ticker", "MSFT", "--train-end", "2014-12-01"], "no sessions before it to train on"),
    ]:
        result = CliRunner().invoke(main, ["backtest", "--strategy", "llmoe", "--data", bars, *args, "--out", str(tmp_path / "x")])
        assert result.exit_code != 0 and message in result.output, result.output
