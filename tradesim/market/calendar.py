"""When things become known: the decision cutoff of each session and the visibility of dated news.

A decision for session `d` is taken after the close of `d`; news counts for it when it became
visible before the cutoff (default 16:00 America/New_York on `d`, daylight saving handled by the
time zone database). A news item with a date but no time becomes visible at the end of that date
in New York, so it first counts for the next session.
"""

from __future__ import annotations

import re

import pandas as pd

from tradesim.errors import TradesimError

MARKET_TIMEZONE = "America/New_York"
DEFAULT_CUTOFF = "16:00"


def parse_cutoff(cutoff: str) -> pd.Timedelta:
    """'16:00' -> the offset from midnight; rejects anything that is not HH:MM."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", cutoff.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise TradesimError(f"--cutoff: expected a time like 16:00 (America/New_York), got {cutoff!r}")
    return pd.Timedelta(hours=int(match[1]), minutes=int(match[2]))


def decision_cutoffs(sessions: pd.DatetimeIndex, cutoff: str = DEFAULT_CUTOFF) -> pd.DatetimeIndex:
    """The UTC instant of each session's decision cutoff."""
    local = (sessions.normalize() + parse_cutoff(cutoff)).tz_localize(MARKET_TIMEZONE)
    return local.tz_convert("UTC").as_unit("ns")


def end_of_day_utc(dates: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The UTC instant at which a New York calendar date ends (midnight starting the next date)."""
    return (dates.normalize() + pd.Timedelta(days=1)).tz_localize(MARKET_TIMEZONE).tz_convert("UTC").as_unit("ns")
