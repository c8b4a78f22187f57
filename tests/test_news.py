import json

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
