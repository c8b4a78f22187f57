"""The Yahoo source against a fake Yahoo that restates history the way Yahoo does: no network."""

import json

import numpy as np
import pandas as pd
import pytest

from helpers import synthetic_bars
from tradesim.errors import TradesimError
from tradesim.market import load_market_data
from tradesim.market import yahoo

SPLIT_DAY, DIVIDEND_DAY, DIVIDEND = pd.Timestamp("2019-05-15"), pd.Timestamp("2019-05-20"), 0.5


class FakeYahoo:
    """Serves printed history as Yahoo would at `now`: prices and dividends divided by every split
    known by then, `Adj Close` also scaled for every known dividend, and a partial bar for a
    session in progress."""

    def __init__(self, start="2019-01-02", sessions=130):
        frame = synthetic_bars(("MSFT",), sessions=sessions, seed=4, start=start)["MSFT"]
        printed = pd.DataFrame(
            {
                "date": pd.to_datetime(frame["Date"]),
                "open": frame["Open"], "high": frame["High"], "low": frame["Low"], "close": frame["Close"],
                "volume": frame["Volume"].astype(float), "dividend": 0.0, "split": 0.0,
            }
        )
        after_split = printed["date"] >= SPLIT_DAY
        printed.loc[after_split, ["open", "high", "low", "close"]] /= 2
        printed.loc[after_split, "volume"] *= 2
        printed.loc[printed["date"] == SPLIT_DAY, "split"] = 2.0
        printed.loc[printed["date"] == DIVIDEND_DAY, "dividend"] = DIVIDEND
        self.printed = printed
        self.now = pd.Timestamp("2019-05-10 21:00", tz="UTC")
        self.calls = []

    def known(self):
        local = self.now.tz_convert("America/New_York")
        rows = self.printed[self.printed["date"] <= local.normalize().tz_localize(None)].copy()
        in_session = local.hour * 60 + local.minute < 16 * 60
        if in_session and len(rows) and rows["date"].iloc[-1] == local.normalize().tz_localize(None):
            rows.iloc[-1, rows.columns.get_loc("close")] *= 0.97  # the bar so far, not the close
        return rows.reset_index(drop=True)

    def answer(self):
        """The whole history as Yahoo shows it now (what the cache must agree with)."""
        rows = self.known()
        splits = np.where(rows["split"] > 0, rows["split"], 1.0)
        later = np.r_[np.cumprod(splits[::-1])[::-1][1:], 1.0]
        previous = np.r_[np.nan, rows["close"].to_numpy()[:-1]]
        factor = np.where(rows["dividend"] > 0, 1 - rows["dividend"] / previous, 1.0)
        dividend_later = np.r_[np.cumprod(factor[::-1])[::-1][1:], 1.0]
        return pd.DataFrame(
            {
                "Date": rows["date"],
                "Open": rows["open"] / later, "High": rows["high"] / later, "Low": rows["low"] / later,
                "Close": rows["close"] / later, "Adj Close": rows["close"] / later * dividend_later,
                "Volume": rows["volume"] * later, "Dividends": rows["dividend"] / later, "Stock Splits": rows["split"],
            }
        )

    def download(self, ticker, start, end):
        self.calls.append((ticker, start, end))
        if ticker != "MSFT":
            return pd.DataFrame()
        answer = self.answer()
        return answer[(answer["Date"] >= pd.Timestamp(start)) & (answer["Date"] < pd.Timestamp(end))].reset_index(drop=True)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    served = FakeYahoo()
    monkeypatch.setattr(yahoo, "_download", served.download)
    monkeypatch.setattr(yahoo, "_now", lambda: served.now)
    return served


def test_split_and_dividend_between_refreshes_are_not_stitched(fake):
    first = load_market_data("yahoo", ["MSFT"], start="2019-01-02")
    assert first.sessions[-1] == pd.Timestamp("2019-05-10") and len(fake.calls) == 1
    fake.now = pd.Timestamp("2019-05-31 21:30", tz="UTC")  # a 2:1 split and a dividend went ex since
    data = load_market_data("yahoo", ["MSFT"], start="2019-01-02")
    assert len(fake.calls) == 2 and str(fake.calls[1][1]) > "2019-04-01"  # a trailing window, not everything
    expected = fake.answer().set_index("Date")["Adj Close"]
    np.testing.assert_allclose(data.bars["close"]["MSFT"].to_numpy(), expected.loc[data.sessions].to_numpy(), rtol=1e-6)
    assert data.bars["close"]["MSFT"].pct_change().abs().max() < 0.2  # no false -50% at the join
    printed = fake.printed.set_index("date")
    np.testing.assert_allclose(data.bars["raw_close"]["MSFT"].to_numpy(), printed.loc[data.sessions, "close"].to_numpy())
    assert [str(d.date()) for d in data.details["MSFT"].adjustment_dates] == [str(SPLIT_DAY.date())]
    before_dividend = data.bars["close"]["MSFT"].loc["2019-05-17"] / data.bars["raw_close"]["MSFT"].loc["2019-05-17"]
    assert before_dividend == pytest.approx(1 - DIVIDEND / printed.loc["2019-05-17", "close"], rel=1e-6)
    # Restated history changes no earlier view: as of the first run's last day, prices are as they were.
    old_view, new_view = first.view(pd.Timestamp("2019-05-10")), data.view(pd.Timestamp("2019-05-10"))
    for name in ("open", "close", "raw_close"):
        assert old_view.window(name).tobytes() == new_view.window(name).tobytes()


def test_a_refresh_during_the_session_never_caches_its_partial_bar(fake):
    fake.now = pd.Timestamp("2019-05-10 17:00", tz="UTC")  # 13:00 in New York: the session is open
    during = load_market_data("yahoo", ["MSFT"], start="2019-01-02")
    assert during.sessions[-1] == pd.Timestamp("2019-05-09")
    fake.now = pd.Timestamp("2019-05-10 21:00", tz="UTC")
    after = load_market_data("yahoo", ["MSFT"], start="2019-01-02")
    assert len(fake.calls) == 2 and after.sessions[-1] == pd.Timestamp("2019-05-10")
    assert after.bars["raw_close"]["MSFT"].iloc[-1] == pytest.approx(fake.printed.set_index("date").loc["2019-05-10", "close"])


def test_a_refresh_after_midnight_utc_covers_only_the_closed_session(fake, tmp_path):
    fake.now = pd.Timestamp("2019-05-14 00:30", tz="UTC")  # still 2019-05-13 in New York
    data = load_market_data("yahoo", ["MSFT"], start="2019-01-02")
    assert data.sessions[-1] == pd.Timestamp("2019-05-13")
    state = json.loads((tmp_path / "home" / "yahoo" / "MSFT.json").read_text())
    assert state["checked_through"] == "2019-05-13"
    load_market_data("yahoo", ["MSFT"], start="2019-01-02")
    assert len(fake.calls) == 1  # covered: no second download
    fake.now = pd.Timestamp("2019-05-14 21:00", tz="UTC")
    later = load_market_data("yahoo", ["MSFT"], start="2019-01-02")
    assert len(fake.calls) == 2 and later.sessions[-1] == pd.Timestamp("2019-05-14")


def test_a_restated_overlap_refetches_the_whole_history_and_says_so(fake):
    load_market_data("yahoo", ["MSFT"], start="2019-01-02")
    fake.printed.loc[fake.printed["date"] == pd.Timestamp("2019-05-08"), "close"] *= 1.01  # Yahoo corrects a bar
    fake.now = pd.Timestamp("2019-05-13 21:00", tz="UTC")
    data = load_market_data("yahoo", ["MSFT"], start="2019-01-02")
    assert len(fake.calls) == 3 and str(fake.calls[2][1]) == "2019-01-02"
    assert any("downloaded again" in note for note in data.notes)
    assert data.bars["raw_close"]["MSFT"].loc["2019-05-08"] == pytest.approx(fake.printed.set_index("date").loc["2019-05-08", "close"])


def test_an_earlier_start_downloads_from_it(fake):
    load_market_data("yahoo", ["MSFT"], start="2019-03-01", end="2019-04-30")
    assert str(fake.calls[0][1]) == "2019-03-01" and str(fake.calls[0][2]) == "2019-05-11"  # always up to now
    again = load_market_data("yahoo", ["MSFT"], start="2019-03-01", end="2019-04-30")
    assert len(fake.calls) == 1 and again.sessions[-1] == pd.Timestamp("2019-04-30")
    wider = load_market_data("yahoo", ["MSFT"], start="2019-02-01", end="2019-04-30")
    assert str(fake.calls[1][1]) == "2019-02-01" and wider.sessions[0] == pd.Timestamp("2019-02-01")


def test_unknown_yahoo_ticker_is_one_line(fake):
    with pytest.raises(TradesimError, match="Yahoo returned no bars for NOPE"):
        load_market_data("yahoo", ["NOPE"], start="2019-03-01", end="2019-04-30")


def test_yfinance_call_and_its_failures(monkeypatch, tmp_path):
    """The real download function around a patched yfinance.download (still no network)."""
    import logging

    import yfinance

    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(yahoo, "_now", lambda: pd.Timestamp("2021-02-13 12:00", tz="UTC"))
    history = synthetic_bars(("MSFT",), sessions=30, seed=1, start="2021-01-04")["MSFT"]
    history = history.assign(Date=pd.to_datetime(history["Date"]), Dividends=0.0, **{"Stock Splits": 0.0}).set_index("Date")
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
    assert calls[0][1]["auto_adjust"] is False and calls[0][1]["actions"] is True and calls[0][1]["start"] == "2021-01-04"
    with pytest.raises(TradesimError, match=r"download of DOWN .* failed: .*DNSError\('Could not resolve host'\)"):
        load_market_data("yahoo", ["DOWN"], start="2021-01-04", end="2021-02-12")
