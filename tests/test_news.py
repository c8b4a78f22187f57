import json

import numpy as np

import pandas as pd
import pytest

from helpers import synthetic_bars, write_ticker_dir
from tradesim.errors import TradesimError
from tradesim.market import load_market_data
from tradesim.market.calendar import decision_cutoffs


def _bars(tmp_path):
    return str(write_ticker_dir(tmp_path / "bars", synthetic_bars(("AAA", "BBB"), sessions=200, seed=2, start="2015-01-01")))


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_cutoff_is_16h_new_york_with_daylight_saving():
    cutoffs = decision_cutoffs(pd.DatetimeIndex(["2015-01-15", "2015-07-01"]))
    assert [str(c) for c in cutoffs] == ["2015-01-15 21:00:00+00:00", "2015-07-01 20:00:00+00:00"]


def test_news_visibility_follows_the_cutoff(tmp_path):
    news = _jsonl(
        tmp_path / "news" / "AAA.jsonl",
        [
            {"id": "winter-before", "created_at": "2015-01-15T20:59:00Z", "text": "before the winter close"},
            {"id": "winter-after", "created_at": "2015-01-15T21:00:00Z", "text": "at the winter cutoff"},
            {"id": "summer-before", "created_at": "2015-07-01T19:59:00Z", "text": "before the summer close"},
            {"id": "summer-after", "created_at": "2015-07-01T20:01:00Z", "text": "after the summer close"},
            {"id": "date-only", "created_at": "2015-03-04", "text": "dated but not timed"},
            {"id": "offset", "created_at": "2015-03-10T15:30:00-05:00", "text": "new york time with offset"},
        ],
    )
    data = load_market_data(_bars(tmp_path), ["AAA", "BBB"], news=str(news.parent))
    assert set(data.news["ticker"]) == {"AAA"}

    def visible(day):
        return set(data.view(pd.Timestamp(day)).news["id"])

    assert "winter-before" in visible("2015-01-15") and "winter-after" not in visible("2015-01-15")
    assert "winter-after" in visible("2015-01-16")
    assert "summer-before" in visible("2015-07-01") and "summer-after" not in visible("2015-07-01")
    assert "date-only" not in visible("2015-03-04") and "date-only" in visible("2015-03-05")
    offset = data.news.set_index("id").loc["offset", "published_at"]
    assert str(offset) == "2015-03-10 20:30:00+00:00"
    # New York moved to daylight time on 2015-03-08: 20:30 UTC is 16:30 there, after that day's cutoff.
    assert "offset" not in visible("2015-03-10") and "offset" in visible("2015-03-11")


def test_long_csv_news_with_derived_ids(tmp_path):
    path = tmp_path / "news.csv"
    pd.DataFrame(
        {
            "Symbol": ["aaa", "bbb", "ccc"],
            "Published_At": ["2015-02-02 14:00", "2015-02-03T10:00:00Z", "2015-02-03T10:00:00Z"],
            "Headline": ["AAA beats estimates", "BBB misses", "not ours"],
        }
    ).to_csv(path, index=False)
    data = load_market_data(_bars(tmp_path), ["AAA", "BBB"], news=str(path))
    assert list(data.news["ticker"]) == ["AAA", "BBB"]
    assert data.news["id"].str.fullmatch(r"[0-9a-f]{16}").all()
    again = load_market_data(_bars(tmp_path), ["AAA", "BBB"], news=str(path))
    assert list(again.news["id"]) == list(data.news["id"])
    assert str(data.news["published_at"].iloc[0]) == "2015-02-02 14:00:00+00:00"  # naive means UTC


def test_news_errors_name_file_and_line(tmp_path):
    bad_time = _jsonl(tmp_path / "n1" / "AAA.jsonl", [{"created_at": "2015-01-02T10:00:00Z", "text": "ok"}, {"created_at": "soon", "text": "x"}])
    with pytest.raises(TradesimError, match=r"AAA\.jsonl, line 3: unparseable timestamp 'soon'"):
        load_market_data(_bars(tmp_path), ["AAA"], news=str(bad_time.parent))
    no_text = _jsonl(tmp_path / "n2" / "AAA.jsonl", [{"created_at": "2015-01-02T10:00:00Z", "body": "x"}])
    with pytest.raises(TradesimError, match=r"AAA\.jsonl: missing required column 'text' \(accepted names: headline, title, text"):
        load_market_data(_bars(tmp_path), ["AAA"], news=str(no_text.parent))


# One item per way of writing a time; the expected session it first counts for (cutoff 16:00 New York).
FORMATS = [
    ("iso-date", "2015-06-30", "2015-07-01"),
    ("us-date", "06/30/2015", "2015-07-01"),
    ("naive-midnight", "2015-06-30 00:00:00", "2015-07-01"),
    ("naive-time", "2015-06-30 19:30:00", "2015-06-30"),  # UTC: 15:30 in New York, before the cutoff
    ("naive-late", "2015-06-30 20:30:00", "2015-07-01"),  # UTC: 16:30 in New York
    ("zoned-midnight", "2015-06-30T00:00:00-04:00", "2015-07-01"),  # midnight in its own zone: a date
    ("utc-midnight", "2015-06-30T00:00:00Z", "2015-07-01"),  # midnight UTC: a date, not 20:00 New York the day before
    ("zoned-time", "2015-06-30T15:59:00-04:00", "2015-06-30"),  # an instant
    ("utc-z", "2015-06-30T19:59:00Z", "2015-06-30"),
]


def _format_table():
    return pd.DataFrame({"id": [f[0] for f in FORMATS], "ticker": "AAA", "published_at": [f[1] for f in FORMATS], "text": [f"item {f[0]}" for f in FORMATS]})


def _sessions_counted(data):
    news = data.view(data.sessions[-1]).news_for("AAA")
    return {row.id: str(row.session.date()) for row in news.itertuples()}


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet-text"])
def test_visibility_is_decided_per_value_whatever_the_format(tmp_path, kind):
    table = _format_table()
    path = tmp_path / f"news.{kind.split('-')[0]}"
    if kind == "csv":
        table.to_csv(path, index=False)
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in table.to_dict("records")))
    else:
        table.to_parquet(path, index=False)
    data = load_market_data(_bars(tmp_path), ["AAA"], news=str(path))
    assert _sessions_counted(data) == {name: session for name, _, session in FORMATS}
    assert any("time but no zone: read as UTC" in note for note in data.notes)


def test_parquet_datetime_columns_mixing_midnights_and_times(tmp_path):
    naive = pd.DataFrame(
        {
            "id": ["midnight", "afternoon", "evening"],
            "ticker": "AAA",
            "published_at": pd.to_datetime(["2015-06-30 00:00", "2015-06-30 19:30", "2015-06-30 20:30"]),
            "text": ["a", "b", "c"],
        }
    )
    naive.to_parquet(tmp_path / "naive.parquet", index=False)
    data = load_market_data(_bars(tmp_path), ["AAA"], news=str(tmp_path / "naive.parquet"))
    assert _sessions_counted(data) == {"midnight": "2015-07-01", "afternoon": "2015-06-30", "evening": "2015-07-01"}
    aware = naive.assign(published_at=naive["published_at"].dt.tz_localize("America/New_York"))
    aware.to_parquet(tmp_path / "aware.parquet", index=False)
    data = load_market_data(_bars(tmp_path), ["AAA"], news=str(tmp_path / "aware.parquet"))
    # With a zone a time is an instant (19:30 New York counts for the next day); an exact midnight is a date.
    assert _sessions_counted(data) == {"midnight": "2015-07-01", "afternoon": "2015-07-01", "evening": "2015-07-01"}


def test_market_wide_items_are_visible_to_every_ticker_under_the_same_rules(tmp_path):
    rows = [
        {"ticker": "AAA", "created_at": "2015-03-02T15:00:00Z", "text": "AAA news"},
        {"ticker": "", "created_at": "2015-03-02T15:00:00Z", "text": "the Fed holds rates"},
        {"ticker": None, "created_at": "2015-03-03", "text": "dated macro item"},
        {"ticker": "ZZZ", "created_at": "2015-03-02T15:00:00Z", "text": "another universe"},
    ]
    news = _jsonl(tmp_path / "long.jsonl", rows)
    data = load_market_data(_bars(tmp_path), ["AAA", "BBB"], news=str(news))
    assert data.news["ticker"].isna().sum() == 2 and "ZZZ" not in set(data.news["ticker"].dropna())
    assert any("no ticker: market-wide" in note for note in data.notes)
    view = data.view(pd.Timestamp("2015-03-03"))
    assert list(view.market_news()["text"]) == ["the Fed holds rates"]  # the dated item counts from 03-04
    assert list(view.news_for("AAA")["text"]) == ["AAA news"] and view.news_for("BBB").empty
    assert list(data.view(pd.Timestamp("2015-03-04")).market_news(last=1)["text"]) == ["dated macro item"]
    macro = tmp_path / "macro.csv"  # a file without a ticker column, not named after a ticker: all market-wide
    pd.DataFrame({"date": ["2015-03-02"], "headline": ["payrolls beat"]}).to_csv(macro, index=False)
    data = load_market_data(_bars(tmp_path), ["AAA"], news=str(macro))
    assert data.news["ticker"].isna().all() and data.view(pd.Timestamp("2015-03-03")).market_news()["text"].tolist() == ["payrolls beat"]


def test_news_window_matches_a_plain_filter(tmp_path):
    rng = np.random.default_rng(5)
    stamps = pd.to_datetime(rng.uniform(pd.Timestamp("2015-01-01").value, pd.Timestamp("2015-10-01").value, 600).astype("int64"), utc=True)
    rows = [{"id": f"n{i}", "ticker": str(rng.choice(["AAA", "BBB", ""])), "created_at": s.isoformat(), "text": f"t{i}"} for i, s in enumerate(stamps)]
    data = load_market_data(_bars(tmp_path), ["AAA", "BBB"], news=str(_jsonl(tmp_path / "n.jsonl", rows)))
    for date in data.sessions[20::17]:
        view = data.view(date)
        window = view.news_window(last=5)
        since = data.cutoffs[data.sessions.get_loc(date) - 5]
        for ticker in ("AAA", "BBB", None):
            items = data.news[(data.news["ticker"].isna() if ticker is None else data.news["ticker"] == ticker)]
            expected = items[(items["visible_at"] >= since) & (items["visible_at"] < view.cutoff)]
            assert sorted(window.ids(ticker)) == sorted(expected["id"]) and window.count(ticker) == len(expected)


@pytest.mark.parametrize("fmt", ["parquet-utc", "parquet-new-york", "jsonl-z", "csv-offset", "csv-own-zone"])
def test_a_date_stored_as_a_midnight_timestamp_counts_from_the_next_session(tmp_path, fmt):
    """Parquet writers and vendors store a publication date as midnight UTC (or midnight in the
    writer's zone): it is a date, visible at the end of that New York day, not 20:00 the day before."""
    day = pd.Timestamp("2015-03-04")
    if fmt.startswith("parquet"):
        zone = "UTC" if fmt == "parquet-utc" else "America/New_York"
        stamps = pd.Series([day, day + pd.Timedelta(hours=14)]).dt.tz_localize(zone)
        path = tmp_path / "AAA.parquet"
        pd.DataFrame({"published_at": stamps, "headline": ["dated", "timed"]}).to_parquet(path)
    else:
        values = {"jsonl-z": "2015-03-04T00:00:00Z", "csv-offset": "2015-03-04 00:00:00+00:00", "csv-own-zone": "2015-03-04 00:00:00-05:00"}[fmt]
        timed = "2015-03-04T14:00:00Z" if fmt != "csv-own-zone" else "2015-03-04 14:00:00-05:00"
        if fmt.startswith("jsonl"):
            path = _jsonl(tmp_path / "AAA.jsonl", [{"created_at": values, "text": "dated"}, {"created_at": timed, "text": "timed"}])
        else:
            path = tmp_path / "AAA.csv"
            pd.DataFrame({"date": [values, timed], "title": ["dated", "timed"]}).to_csv(path, index=False)
    data = load_market_data(_bars(tmp_path), ["AAA"], news=str(path))
    assert list(data.view(day).news_for("AAA")["text"]) == ["timed"]
    assert list(data.view(pd.Timestamp("2015-03-05")).news_for("AAA", last=1)["text"]) == ["dated"]
    assert any("exactly on a midnight" in note and "read as dates" in note for note in data.notes)


def test_fundamentals_published_at_midnight_utc_count_from_the_next_session(tmp_path):
    from tradesim.market.fundamentals import load_fundamentals

    path = tmp_path / "fundamentals.parquet"
    pd.DataFrame({"ticker": ["AAA"], "period_end": ["2014-12-31"], "published_at": pd.to_datetime(["2015-03-04"]).tz_localize("UTC"),
                  "field": ["revenue"], "value": [1.0]}).to_parquet(path)
    rows = load_fundamentals(path, ("AAA",))
    assert rows["visible_at"].iloc[0] == pd.Timestamp("2015-03-05 05:00", tz="UTC")  # the end of 2015-03-04 in New York
