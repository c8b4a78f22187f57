"""The exchange calendar paper accounts keep: which sessions have closed, which are due, `--now`."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pandas as pd

from tradesim.errors import TradesimError
from tradesim.paper.ledger import Ledger


CALENDAR = "XNYS"


@lru_cache(maxsize=1)
def calendar():
    import exchange_calendars

    return exchange_calendars.get_calendar(CALENDAR, start="1990-01-01")


def last_closed(now: pd.Timestamp) -> pd.Timestamp:
    """The newest session whose close is before `now`."""
    return calendar().minute_to_past_session(now.floor("min"))


def next_session(session: pd.Timestamp) -> pd.Timestamp:
    return calendar().next_session(session)


def close_time(session: pd.Timestamp) -> str:
    return calendar().session_close(session).tz_convert("America/New_York").strftime("%Y-%m-%d %H:%M %Z")


def parse_now(now: str | None) -> pd.Timestamp:
    """`--now` (an ISO time; without a zone it is New York time) or the clock."""
    if now is None:
        return pd.Timestamp.now(tz="UTC")
    try:
        stamp = pd.Timestamp(now)
    except ValueError:
        raise TradesimError(f"--now: expected a time like 2024-03-05T18:30 (New York time unless a zone is given), got {now!r}") from None
    stamp = (stamp.tz_localize("America/New_York") if stamp.tzinfo is None else stamp).tz_convert("UTC")
    known = calendar()
    last = known.session_close(known.sessions[-2])  # a night needs the session after the last closed one
    if not known.first_minute <= stamp <= last:
        raise TradesimError(
            f"--now {now}: outside the {CALENDAR} calendar exchange_calendars knows "
            f"({known.sessions[0].date()}..{known.sessions[-2].date()}); give a time inside it"
        )
    return stamp


def session_day(stamp: pd.Timestamp) -> str:
    return str(pd.Timestamp(stamp).date())


def due_sessions(ledger: Ledger, meta: dict[str, Any], now: pd.Timestamp) -> tuple[pd.DatetimeIndex, pd.Timestamp]:
    last = ledger.last_session()
    first = pd.Timestamp(meta["inception"]) if last is None else next_session(pd.Timestamp(last))
    closed = last_closed(now)
    if first > closed:
        return pd.DatetimeIndex([]), first
    return calendar().sessions_in_range(first, closed), first
