import numpy as np
import pandas as pd
import pytest

from helpers import synthetic_bars, write_long_file, write_ticker_dir
from tradesim.errors import TradesimError
from tradesim.market import load_market_data


@pytest.fixture
def frames():
    return synthetic_bars(tickers=("AAA", "BBB"), sessions=50, seed=1)


def test_directory_and_long_files_load_the_same_adjusted_bars(tmp_path, frames):
    from_dir = load_market_data(str(write_ticker_dir(tmp_path / "dir", frames)), ["aaa", "BBB"])
    from_csv = load_market_data(str(write_long_file(tmp_path / "long.csv", frames)), ["AAA", "BBB"])
    from_parquet = load_market_data(str(write_long_file(tmp_path / "long.parquet", frames)), ["AAA", "BBB"])
    for other in (from_csv, from_parquet):
        for field in ("open", "high", "low", "close", "volume", "raw_close"):
            pd.testing.assert_frame_equal(from_dir.bars[field], other.bars[field])
    raw = frames["AAA"]
    factor = raw["Adj Close"].to_numpy() / raw["Close"].to_numpy()
    np.testing.assert_allclose(from_dir.bars["open"]["AAA"].to_numpy(), raw["Open"].to_numpy() * factor)
    np.testing.assert_allclose(from_dir.bars["close"]["AAA"].to_numpy(), raw["Adj Close"].to_numpy())
    np.testing.assert_allclose(from_dir.bars["raw_close"]["AAA"].to_numpy(), raw["Close"].to_numpy())
    assert from_dir.has_ohlc and from_dir.adjusted


def test_column_aliases_are_matched_case_insensitively(tmp_path, frames):
    frame = frames["AAA"].rename(columns={"Date": "TIMESTAMP", "Adj Close": "adjusted_close", "Close": "CLOSE"})
    frame.to_csv(tmp_path / "AAA.csv", index=False)
    data = load_market_data(str(tmp_path), ["AAA"])
    np.testing.assert_allclose(data.bars["close"]["AAA"].to_numpy(), frames["AAA"]["Adj Close"].to_numpy())


def test_close_only_source_and_start_end_cut(tmp_path, frames):
    frames["AAA"][["Date", "Close"]].to_csv(tmp_path / "AAA.csv", index=False)
    data = load_market_data(str(tmp_path), ["AAA"], start="2020-01-10", end="2020-01-31")
    assert not data.has_ohlc and not data.adjusted
    assert data.sessions[0] == pd.Timestamp("2020-01-10") and data.sessions[-1] == pd.Timestamp("2020-01-31")
    assert data.bars["open"]["AAA"].isna().all()


def test_null_rows_are_dropped_and_counted(tmp_path, frames):
    frame = frames["AAA"].astype(object)
    frame.iloc[10, 1:] = "null"
    frame.to_csv(tmp_path / "AAA.csv", index=False)
    data = load_market_data(str(tmp_path), ["AAA"])
    assert len(data.sessions) == 49
    assert data.details["AAA"].null_rows == 1


def test_tickers_with_different_ranges_share_one_calendar(tmp_path, frames):
    frames["BBB"] = frames["BBB"].iloc[20:]
    data = load_market_data(str(write_ticker_dir(tmp_path, frames)), ["AAA", "BBB"])
    assert len(data.sessions) == 50
    assert data.bars["close"]["BBB"].iloc[:20].isna().all()


def test_sample_is_stocknet_ohlcv_with_tweets_and_sample_long_is_closes():
    data = load_market_data("sample", None)
    assert len(data.tickers) == 20 and {"MSFT", "AAPL"} <= set(data.tickers)
    assert data.sessions[0] == pd.Timestamp("2014-01-02") and data.sessions[-1] == pd.Timestamp("2015-12-31")
    assert data.has_ohlc and data.adjusted and len(data.sessions) == 504
    assert set(data.news["ticker"]) == set(data.tickers) and len(data.news) > 20_000
    per_day = data.news.groupby([data.news["ticker"], data.news["published_at"].dt.date]).size()
    assert per_day.max() == 5
    assert list(data.news.columns) == ["id", "ticker", "published_at", "visible_at", "text"]
    long = load_market_data("sample-long", None)
    assert len(long.tickers) == 20 and "MSFT" in long.tickers
    assert long.sessions[0] == pd.Timestamp("1990-01-02") and long.sessions[-1] == pd.Timestamp("2022-12-28")
    assert not long.has_ohlc and long.news.empty


def _write(tmp_path, frame, name="AAA.csv"):
    frame.to_csv(tmp_path / name, index=False)
    return str(tmp_path)


@pytest.mark.parametrize(
    "corrupt,message",
    [
        (lambda f: f.drop(columns=["Close"]), r"AAA\.csv: missing required column 'close'"),
        (lambda f: f.drop(columns=["Date"]), r"AAA\.csv: missing required column 'date'"),
        (lambda f: f.assign(Date=f["Date"].where(f.index != 7, "2020-13-45")), r"AAA\.csv, line 9: unparseable date '2020-13-45'"),
        (lambda f: pd.concat([f.iloc[:5], f.iloc[[4]], f.iloc[5:]]), r"AAA\.csv, line 7: duplicate date"),
        (lambda f: pd.concat([f.iloc[:5], f.iloc[[8]], f.iloc[5:8], f.iloc[9:]]), r"AAA\.csv, line 8: unsorted date"),
        (lambda f: f.assign(Close=f["Close"].where(f.index != 3, -1.0)), r"AAA\.csv, line 5: close is -1 for AAA, expected a positive price"),
        (lambda f: f.assign(Open=f["Open"].where(f.index != 3, 0.0)), r"AAA\.csv, line 5: open is 0"),
        (lambda f: f.assign(High=f["Low"] * 0.5), r"AAA\.csv, line 2: high .* is below low"),
        (lambda f: f.assign(Volume=f["Volume"].astype(object).where(f.index != 2, "lots")), r"line 4: volume is 'lots', expected a number"),
    ],
)
def test_validation_errors_name_file_and_line(tmp_path, frames, corrupt, message):
    source = _write(tmp_path, corrupt(frames["AAA"]))
    with pytest.raises(TradesimError, match=message):
        load_market_data(source, ["AAA"])


def test_empty_range_and_unknown_ticker(tmp_path, frames):
    source = _write(tmp_path, frames["AAA"])
    with pytest.raises(TradesimError, match=r"no bars for AAA between 2030-01-01 and the end \(it covers 2020-01-02\.\.2020-03-11\)"):
        load_market_data(source, ["AAA"], start="2030-01-01")
    with pytest.raises(TradesimError, match="unknown ticker ZZZ"):
        load_market_data(source, ["ZZZ"])
    with pytest.raises(TradesimError, match="unknown ticker ZZZ"):
        load_market_data("sample", ["ZZZ"])
    with pytest.raises(TradesimError, match="no such file or directory"):
        load_market_data(str(tmp_path / "missing"), ["AAA"])
    long = write_long_file(tmp_path / "long.csv", frames)
    with pytest.raises(TradesimError, match=r"unknown ticker ZZZ \(the file has AAA, BBB\)"):
        load_market_data(str(long), ["ZZZ"])


def test_tickers_all_leaves_out_a_ticker_without_bars_in_the_dates_but_a_named_one_is_an_error(tmp_path):
    frames = synthetic_bars(("AAA", "BBB"), 300, seed=1)
    frames["LATE"] = synthetic_bars(("LATE",), 40, seed=2, start="2021-06-01")["LATE"]
    folder = write_ticker_dir(tmp_path / "prices", frames)
    data = load_market_data(str(folder), "all", end="2020-12-31")
    assert data.tickers == ("AAA", "BBB") and "LATE" not in data.details
    assert any("1 tickers have no bars between the start and 2020-12-31 and are left out (LATE)" in note for note in data.notes)
    with pytest.raises(TradesimError, match="no bars for LATE between the start and 2020-12-31"):
        load_market_data(str(folder), ["AAA", "LATE"], end="2020-12-31")
    with pytest.raises(TradesimError, match="no ticker has bars between 2030-01-01 and the end"):
        load_market_data(str(folder), "all", start="2030-01-01")


def _split_history(sessions=120, split_at=60, ratio=4.0, dividend_at=90, dividend=0.5):
    """A stock's printed prices around a 4:1 split and a dividend, with its true adjusted close."""
    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2014-01-02", periods=sessions)
    value = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, sessions)))  # the holder's value per original share
    printed = np.where(np.arange(sessions) >= split_at, value / ratio, value)
    split = np.where(np.arange(sessions) == split_at, ratio, 1.0)
    paid = np.where(np.arange(sessions) == dividend_at, dividend, 0.0)
    open_ = printed * (1 + rng.normal(0, 0.002, sessions))
    frame = pd.DataFrame({
        "timestamp": dates.strftime("%Y-%m-%d"), "open": open_, "high": np.maximum(open_, printed) * 1.01,
        "low": np.minimum(open_, printed) * 0.99, "close": printed, "volume": 1000, "dividend_amount": paid, "split_coefficient": split,
    })
    return frame, dates


def test_raw_prices_with_split_and_dividend_columns_are_adjusted_from_them(tmp_path):
    frame, dates = _split_history()
    frame.to_csv(tmp_path / "AAA.csv", index=False)
    data = load_market_data(str(tmp_path / "AAA.csv"), ["AAA"])
    close = data.bars["close"]["AAA"]
    daily = close.pct_change().dropna()
    assert daily.abs().max() < 0.06  # the 4:1 split is no -75% day
    printed = frame["close"].to_numpy()
    assert close.iloc[70] / close.iloc[50] == pytest.approx(printed[70] * 4 / printed[50])
    before, after = printed[89], printed[90]  # the dividend: earlier prices scaled by 1 - D / previous close
    assert close.iloc[90] / close.iloc[89] == pytest.approx(after / (before - 0.5))
    assert data.adjusted and any("adjusted from the split and dividend columns" in note for note in data.notes)
    assert not any(note.startswith("WARNING") for note in data.notes)


def test_prices_already_adjusted_beside_a_split_column_are_not_adjusted_twice(tmp_path):
    frame, _ = _split_history(dividend=0.0)
    factor = np.where(np.arange(len(frame)) < 60, 0.25, 1.0)
    for column in ("open", "high", "low", "close"):
        frame[column] = frame[column] * factor  # yfinance auto_adjust: adjusted prices, and the split column beside them
    frame.to_csv(tmp_path / "AAA.csv", index=False)
    data = load_market_data(str(tmp_path / "AAA.csv"), ["AAA"])
    np.testing.assert_allclose(data.bars["close"]["AAA"].to_numpy(), frame["close"].to_numpy())


def test_an_unadjusted_split_without_any_adjustment_column_is_said_loudly(tmp_path):
    from tradesim.market.summary import describe

    frame, dates = _split_history()
    frame.drop(columns=["dividend_amount", "split_coefficient"]).to_csv(tmp_path / "AAA.csv", index=False)
    data = load_market_data(str(tmp_path / "AAA.csv"), ["AAA"])
    warning = [note for note in data.notes if note.startswith("WARNING")]
    assert len(warning) == 1 and f"{dates[60].date()} (4." in warning[0] and "unadjusted splits" in warning[0]
    assert warning[0] in describe(data)
    quiet = load_market_data(str(tmp_path / "AAA.csv"), ["AAA"], start=dates[0], end=dates[50])  # the jump is outside the dates
    assert not any(note.startswith("WARNING") for note in quiet.notes)


@pytest.mark.parametrize("field,value", [("open", 99.0), ("close", 1.0)])
def test_an_open_or_close_outside_the_days_range_names_the_file_and_line(tmp_path, frames, field, value):
    frame = frames["AAA"].copy()
    frame.loc[7, field.capitalize()] = value
    write_ticker_dir(tmp_path, {"AAA": frame})
    with pytest.raises(TradesimError, match=rf"AAA.csv, line 9: {field} {value:g} is outside the day's range \(low .*, high .*\) for AAA"):
        load_market_data(str(tmp_path), ["AAA"])


def test_a_csv_written_by_yfinance_with_mixed_utc_offsets_reads(tmp_path, frames):
    frame = frames["AAA"].copy()
    dates = pd.to_datetime(frame["Date"]).dt.tz_localize("America/New_York")
    frame["Date"] = [f"{d:%Y-%m-%d %H:%M:%S%z}"[:-2] + ":" + f"{d:%z}"[-2:] for d in dates]
    frame.loc[0, "Date"] = "2020-01-02 00:00:00-05:00"
    frame.loc[len(frame) - 1, "Date"] = frame.loc[len(frame) - 1, "Date"].replace("-05:00", "-04:00")
    write_ticker_dir(tmp_path, {"AAA": frame})
    data = load_market_data(str(tmp_path), ["AAA"])
    assert list(data.sessions) == list(pd.to_datetime(frames["AAA"]["Date"]))


def test_upper_case_all_is_allstate_not_every_ticker(tmp_path):
    frames = synthetic_bars(tickers=("ALL", "BBB"), sessions=30, seed=2)
    write_long_file(tmp_path / "long.csv", frames)
    assert load_market_data(str(tmp_path / "long.csv"), "ALL").tickers == ("ALL",)
    assert load_market_data(str(tmp_path / "long.csv"), "all").tickers == ("ALL", "BBB")
