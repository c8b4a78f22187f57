"""The Yahoo source with the download function patched: no network."""

import pandas as pd
import pytest

from helpers import synthetic_bars
from tradesim.errors import TradesimError
from tradesim.market import load_market_data
from tradesim.market import yahoo


@pytest.fixture
def fake_yahoo(monkeypatch, tmp_path):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    history = synthetic_bars(("MSFT",), sessions=400, seed=4, start="2019-01-01")["MSFT"]
    history = history.assign(Date=pd.to_datetime(history["Date"]))
    calls = []

    def download(ticker, start, end):
        calls.append((ticker, start, end))
        if ticker != "MSFT":
            return pd.DataFrame()
        inside = (history["Date"] >= pd.Timestamp(start)) & (history["Date"] < pd.Timestamp(end))
        return history[inside].copy()

    monkeypatch.setattr(yahoo, "_download", download)
    return calls, history


def test_cache_downloads_only_the_missing_range(fake_yahoo, tmp_path):
    calls, history = fake_yahoo
    first = load_market_data("yahoo", ["MSFT"], start="2019-03-01", end="2019-06-28")
    assert len(calls) == 1
    assert first.sessions[0] == pd.Timestamp("2019-03-01") and first.adjusted and first.has_ohlc
    again = load_market_data("yahoo", ["MSFT"], start="2019-03-01", end="2019-06-28")
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first.bars["close"], again.bars["close"])
    wider = load_market_data("yahoo", ["MSFT"], start="2019-02-01", end="2019-08-30")
    assert [(str(a), str(b)) for _, a, b in calls[1:]] == [("2019-02-01", "2019-03-01"), ("2019-06-29", "2019-08-31")]
    expected = history.set_index("Date").loc["2019-02-01":"2019-08-30", "Adj Close"]
    assert wider.bars["close"]["MSFT"].to_numpy() == pytest.approx(expected.to_numpy())
    assert (tmp_path / "home" / "yahoo" / "MSFT.parquet").exists()


def test_unknown_yahoo_ticker_is_one_line(fake_yahoo):
    with pytest.raises(TradesimError, match="Yahoo returned no bars for NOPE"):
        load_market_data("yahoo", ["NOPE"], start="2019-03-01", end="2019-06-28")


def test_yfinance_call_and_its_failures(monkeypatch, tmp_path):
    """The real download function around a patched yfinance.download (still no network)."""
    import logging

    import yfinance

    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    history = synthetic_bars(("MSFT",), sessions=30, seed=1, start="2021-01-04")["MSFT"]
    history = history.assign(Date=pd.to_datetime(history["Date"])).set_index("Date")
    calls = []

    def download(ticker, **options):
        calls.append((ticker, options))
        if ticker == "DOWN":
            logging.getLogger("yfinance").error("1 Failed download:\n['DOWN']: DNSError('Could not resolve host')")
            return pd.DataFrame()
        return history.copy()

    monkeypatch.setattr(yfinance, "download", download)
    data = load_market_data("yahoo", ["MSFT"], start="2021-01-04", end="2021-02-12")
    assert data.has_ohlc and data.adjusted and len(data.sessions) == 30
    assert calls[0][1]["auto_adjust"] is False and calls[0][1]["start"] == "2021-01-04"
    with pytest.raises(TradesimError, match=r"download of DOWN .* failed: .*DNSError\('Could not resolve host'\)"):
        load_market_data("yahoo", ["DOWN"], start="2021-01-04", end="2021-02-12")
