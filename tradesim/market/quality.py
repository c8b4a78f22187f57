"""Data quality before a backtest: what `tradesim data check` prints and a run's notes summarise.

Per ticker, over the loaded dates: rows, null rows dropped at loading, sessions of the data with no
bar while the ticker is listed (gaps), zero-volume sessions, overnight jumps that look like
unadjusted splits, and how many sessions of the period the news covers (sessions for which at
least one item of the ticker became visible). Loading itself refuses what cannot be traded
(unsorted dates, non-positive prices, an open or close outside [low, high]): such a file fails the
check with the loader's one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradesim.market.data import MarketData


@dataclass(frozen=True)
class TickerQuality:
    ticker: str
    rows: int
    null_rows: int  # in the whole file (those inside the dates are among the gaps)
    gaps: list[pd.Timestamp]  # sessions of the data without a bar while the ticker is listed
    zero_volume: int
    suspect_splits: list[tuple[pd.Timestamp, float]]
    news_sessions: int | None  # sessions of the period with news of the ticker (None: no news given)
    period_sessions: int

    @property
    def problems(self) -> list[str]:
        found = []
        if self.gaps:
            found.append(f"{len(self.gaps)} missing bars (first {self.gaps[0].date()})")
        if self.zero_volume:
            found.append(f"{self.zero_volume} zero-volume sessions")
        if self.suspect_splits:
            found.append(f"{len(self.suspect_splits)} jumps like unadjusted splits (first {self.suspect_splits[0][0].date()})")
        return found


def check_data(data: MarketData, period_start: pd.Timestamp | None = None) -> list[TickerQuality]:
    """The quality of every ticker of `data`; news coverage is counted over the sessions from
    `period_start` (default: all of them)."""
    sessions = data.sessions
    period = sessions if period_start is None else sessions[sessions >= pd.Timestamp(period_start)]
    close, volume = data.arrays["raw_close"], data.arrays["volume"]
    has_news = not data.news.empty
    counted = _news_sessions(data, period) if has_news else {}
    result = []
    for column, ticker in enumerate(data.tickers):
        priced = np.isfinite(close[:, column])
        first, last = data.listed.loc[ticker]
        listed = (sessions >= first) & (sessions <= last)
        item = data.details[ticker]
        inside = [(day, ratio) for day, ratio in item.suspect_splits if sessions[0] < day <= sessions[-1]]
        result.append(
            TickerQuality(
                ticker=ticker,
                rows=int(priced.sum()),
                null_rows=item.null_rows,
                gaps=list(sessions[listed & ~priced]),
                zero_volume=int((volume[:, column][priced] == 0).sum()),
                suspect_splits=inside,
                news_sessions=counted.get(ticker, 0) if has_news else None,
                period_sessions=len(period),
            )
        )
    return result


def _news_sessions(data: MarketData, period: pd.DatetimeIndex) -> dict[str, int]:
    """Per ticker: sessions of `period` for which at least one of its items became visible."""
    if period.empty:
        return {}
    cutoffs = data.cutoffs
    last = data.sessions.get_indexer(period)
    bounds = np.r_[cutoffs.asi8[last[0] - 1] if last[0] > 0 else np.iinfo(np.int64).min, cutoffs.asi8[last]]
    news = data.news.dropna(subset=["ticker"])
    visible = news["visible_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    counted = {}
    for ticker, rows in news.groupby("ticker").indices.items():
        session = np.searchsorted(bounds, visible[rows], side="right") - 1  # the session each item first counts for
        inside = session[(session >= 0) & (session < len(period))]
        counted[str(ticker)] = int(len(np.unique(inside)))
    return counted


def quality_table(checked: list[TickerQuality]) -> str:
    lines = [f"{'ticker':<8} {'rows':>6} {'null*':>5} {'gaps':>5} {'zero vol':>8} {'splits?':>7} {'news sessions':>14}  problems"]
    for row in checked:
        news = "no news" if row.news_sessions is None else f"{row.news_sessions}/{row.period_sessions}"
        lines.append(
            f"{row.ticker:<8} {row.rows:>6} {row.null_rows:>5} {len(row.gaps):>5} {row.zero_volume:>8} {len(row.suspect_splits):>7} "
            f"{news:>14}  {'; '.join(row.problems) or 'none'}"
        )
    lines.append("null*: rows of the source file with every price empty (dropped); gaps: sessions without a bar while listed")
    return "\n".join(lines)


def quality_summary(checked: list[TickerQuality]) -> str:
    """One line for a run's notes: the tickers with problems, and the news coverage of the period."""
    troubled = [row for row in checked if row.problems]
    named = "; ".join(f"{row.ticker}: {', '.join(row.problems)}" for row in troubled[:3]) + (" ..." if len(troubled) > 3 else "")
    parts = [f"{len(troubled)} of {len(checked)} tickers with problems" + (f" ({named})" if troubled else "")]
    covered = [row for row in checked if row.news_sessions is not None]
    if covered:
        least = min(covered, key=lambda row: row.news_sessions)
        total = sum(row.period_sessions for row in covered)
        parts.append(
            f"news covers {sum(row.news_sessions for row in covered)} of {total} ticker-sessions of the test period "
            f"(least: {least.ticker}, {least.news_sessions} of {least.period_sessions})"
        )
    return "data check: " + "; ".join(parts) + " (`tradesim data check` shows it all)"
