"""Real-data tier: the public datasets in ../shared/data. Skipped when they are absent."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradesim.market import load_market_data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = [pytest.mark.shared, pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")]
STOCKNET = SHARED / "stocknet"
SP500 = SHARED / "sp500"


def test_stocknet_price_directory_with_null_rows():
    data = load_market_data(str(STOCKNET / "price_raw"), None)
    assert len(data.tickers) == 88
    for ticker in ("PTR", "REX", "SNP"):
        assert data.details[ticker].null_rows == 1
        assert np.isnan(data.bars["close"].loc["2016-06-29", ticker])
    assert data.has_ohlc and data.adjusted
    msft = pd.read_csv(STOCKNET / "price_raw" / "MSFT.csv", index_col="Date", parse_dates=True)
    factor = msft["Adj Close"] / msft["Close"]
    # Adjustment steps treat changes of adj_close/close under 1e-6 as the file's 6-decimal rounding,
    # so the rebuilt adjusted prices may drift from the file's by that order over five years.
    np.testing.assert_allclose(data.bars["close"]["MSFT"].dropna(), msft["Adj Close"], rtol=2e-6)
    np.testing.assert_allclose(data.bars["open"]["MSFT"].dropna(), msft["Open"] * factor, rtol=2e-6)
    np.testing.assert_allclose(data.bars["raw_close"]["MSFT"].dropna(), msft["Close"], rtol=1e-15)
    assert data.bars["close"]["ABBV"].first_valid_index() > data.sessions[0]


def test_stocknet_mini_slice_and_its_tweets():
    folder = STOCKNET / "mini_msft_aapl_2014_2015"
    data = load_market_data(str(folder / "prices.csv"), ["MSFT", "AAPL"], news=str(folder / "tweets.jsonl"))
    assert len(data.sessions) == 504
    assert data.sessions[0] == pd.Timestamp("2014-01-02") and data.sessions[-1] == pd.Timestamp("2015-12-31")
    assert set(data.news["ticker"]) == {"MSFT", "AAPL"}
    assert (data.news["visible_at"] == data.news["published_at"]).all()


def test_stocknet_tweet_directory_respects_the_cutoff():
    data = load_market_data(str(STOCKNET / "price_raw"), ["MSFT", "AAPL"], start="2014-01-01", end="2015-12-31", news=str(STOCKNET / "tweets"))
    assert len(data.news) > 1000
    view = data.view(pd.Timestamp("2015-07-01"))  # daylight time: the close is 20:00 UTC
    assert view.news["visible_at"].max() < pd.Timestamp("2015-07-01 20:00", tz="UTC")
    view = data.view(pd.Timestamp("2015-01-15"))  # standard time: the close is 21:00 UTC
    assert view.news["visible_at"].max() < pd.Timestamp("2015-01-15 21:00", tz="UTC")


def test_sp500_raw_ohlc_is_split_adjusted():
    data = load_market_data(str(SP500 / "sp500_top100_daily_2012_2021.csv"), ["AAPL", "TSLA", "MSFT"])
    assert data.bars["close"].shape == (2340, 3)
    raw, adjusted = data.bars["raw_close"]["AAPL"], data.bars["close"]["AAPL"]
    # AAPL split 7:1 on 2014-06-09: the raw close drops by ~7x, the adjusted one does not.
    assert raw.loc["2014-06-06"] / raw.loc["2014-06-09"] > 6.5
    assert 0.9 < adjusted.loc["2014-06-06"] / adjusted.loc["2014-06-09"] < 1.1
    daily = data.bars["close"].pct_change().iloc[1:].abs().max()
    assert (daily < 0.5).all()
    assert [str(d.date()) for d in data.details["AAPL"].adjustment_dates] == ["2014-06-09", "2020-08-31"]
    high, low = data.bars["high"], data.bars["low"]
    assert (high >= low).all().all()


def test_full_history_file_with_timestamp_column():
    data = load_market_data(str(SP500 / "AAPL_daily_full_1999_2021.csv"), None)
    ticker = data.tickers[0]
    splits = [str(d.date()) for d in data.details[ticker].adjustment_dates]
    assert {"2000-06-21", "2005-02-28", "2014-06-09", "2020-08-31"} <= set(splits)
    assert (data.bars["close"][ticker].pct_change().dropna().abs() < 0.6).all()


def test_llmoe_on_stocknet_prices_and_tweets(tmp_path, monkeypatch):
    """The issue's real-news run, on the offline router: tweets reach prompts, only once visible."""
    from click.testing import CliRunner

    from tradesim.cli import main

    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "backtest", "--strategy", "llmoe", "--ticker", "AAPL", "--data", str(STOCKNET / "price_raw"), "--news", str(STOCKNET / "tweets"),
        "--start", "2014-10-01", "--end", "2015-09-30", "--train-end", "2015-06-30", "--epochs", "20", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert len(rows) == 65
    assert sum(len(row["news"]) for row in rows) > 500
    cutoff_utc = {"2015-07-01": "2015-07-01T20:00:00+00:00", "2015-09-01": "2015-09-01T20:00:00+00:00"}
    for row in rows:
        if row["date"] in cutoff_utc:
            assert all(pd.Timestamp(item["visible_at"]) < pd.Timestamp(cutoff_utc[row["date"]]) for item in row["news"])
    run = json.loads((out / "run.json").read_text())
    assert run["llm"]["model_calls"] > 200 and run["data"]["news_items"] > 1000


def test_the_embedded_sample_is_rebuilt_byte_for_byte_by_its_script(tmp_path):
    import subprocess
    import sys

    repository = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, str(repository / "data" / "build_sample.py"), "--stocknet", str(STOCKNET), "--out", str(tmp_path)], check=True, capture_output=True)
    shipped = repository / "tradesim" / "data" / "stocknet"
    for name in ("prices.csv.xz", "news.jsonl.xz", "LICENSE", "README.md"):
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), name


def _cli(tmp_path, monkeypatch, *args):
    from click.testing import CliRunner

    from tradesim.cli import main

    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(main, ["backtest", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def test_tradexpert_reads_stocknet_tweets_as_news_only_once_visible(tmp_path, monkeypatch):
    out = tmp_path / "run"
    result = _cli(
        tmp_path, monkeypatch, "--strategy", "tradexpert", "--tickers", "all", "--data", STOCKNET / "price_raw", "--news", STOCKNET / "tweets",
        "--start", "2014-09-01", "--end", "2015-12-31", "--train-end", "2015-09-01", "--general-expert", "random", "--experts", "news,market",
        "--out", out,
    )
    assert "left out (GMRE)" in result.output  # --tickers all: a ticker listed only outside the dates is not part of the run
    reports = pd.read_parquet(out / "reports.parquet")
    news = reports[reports["expert"] == "news"]
    assert news["ticker"].nunique() == 87 and (~news["report"].str.startswith("No news")).mean() > 0.7
    data = load_market_data(str(STOCKNET / "price_raw"), ["AAPL"], start="2015-01-01", end="2015-12-31", news=str(STOCKNET / "tweets"))
    rows = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    visible = data.news.set_index("id")["visible_at"]
    for row in rows:
        if row["ticker"] == "AAPL" and row["news_ids"]:
            cutoff = data.view(pd.Timestamp(row["date"])).cutoff
            assert all(visible[i] < cutoff for i in row["news_ids"])


@pytest.mark.parametrize("mode,ranking", [("rank", "all-pairs"), ("rank", "budgeted"), ("rank", "bubble"), ("rank", "quicksort"), ("predict", None)])
def test_tradexpert_fits_on_sp500_in_both_modes_with_every_ranking(tmp_path, monkeypatch, mode, ranking):
    out = tmp_path / "run"
    tickers = "AAPL,MSFT,AMZN,GOOGL,JPM,JNJ,XOM,PG,NVDA,TSLA,KO,PFE,INTC,CSCO,WMT,BAC"
    _cli(
        tmp_path, monkeypatch, "--strategy", "tradexpert", "--tickers", tickers, "--data", SP500 / "sp500_top100_daily_2012_2021.csv",
        "--start", "2018-01-01", "--end", "2020-06-30", "--train-end", "2020-01-02", "--experts", "market,alpha", "--mode", mode,
        *(["--ranking", ranking] if ranking else []), "--epochs", "10", "--out", out,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    rankings = pd.read_parquet(out / "rankings.parquet")
    assert 24 <= rankings["date"].nunique() <= 26  # weekly over the first half of 2020
    if mode == "rank":
        assert rankings.groupby("date")["held"].sum().eq(5).all()
        assert -1 <= metrics["ranking"]["rank_ic_mean"] <= 1
        if ranking == "all-pairs":
            assert (rankings["comparisons"] == 120).all()
    else:
        assert 0 <= metrics["prediction"]["accuracy"] <= 1 and metrics["prediction"]["predictions"] > 100


def test_finteam_standard_splits_and_the_flare_check_row():
    from tradesim.evaluation.flare import flare_rows, format_rows, read_price_source
    from tradesim.evaluation.tasks import load_splits

    aapl = read_price_source(STOCKNET / "price_raw")["AAPL"]
    assert format_rows(flare_rows(aapl).loc["2014-01-02":"2014-01-02"]) == ["2014-01-02,0.5,0.7,-0.2,-1.4,-1.4,1.0,0.8,0.8,1.1,0.8,-0.3"]
    fpb, flare = load_splits("fpb", SHARED)
    assert (len(fpb.test), len(flare.test)) == (970, 774)
    assert len(load_splits("fiqa-sa", SHARED)[0].test) == 235
    assert [len(s.test) for s in load_splits("fomc", SHARED)] == [496, 496, 496]
    acl18 = load_splits("acl18", SHARED, acl18_train_limit=None)[0]
    assert len(acl18.test) == 3720  # StockNet's test set size
    assert acl18.train["target"].max() < pd.Timestamp("2015-08-01") <= acl18.valid["target"].min()


def test_finteam_corpora_are_decontaminated_and_cut_off():
    from strategies.finteam.corpora import Decontaminator, benchmark_sentences, expert_corpora
    from tradesim.evaluation.text import sentences

    cutoff = pd.Timestamp("2015-08-01")
    prices = {"stocknet": STOCKNET / "price_raw", "sp500": SP500 / "sp500_top100_daily_2012_2021.csv"}
    corpora = expert_corpora(SHARED / "corpora", SHARED / "sentiment", prices, cutoff)
    records = {c.spec.key: c.record for c in corpora}
    assert records["macro/minutes"]["removed_sentences"]["fomc"] > 1000  # the README counts 1,080 verbatim
    assert all(r["latest_public"] is None or r["latest_public"] < "2015-08-01" for r in records.values())
    fomc = Decontaminator()
    fomc.add("fomc", benchmark_sentences(SHARED / "sentiment")["fomc"])
    minutes = next(c for c in corpora if c.spec.key == "macro/minutes")
    assert not any(fomc.match(s) for text in minutes.train[:20] for s in sentences(text))
