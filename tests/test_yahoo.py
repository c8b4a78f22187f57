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
