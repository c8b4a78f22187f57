"""A human summary of loaded market data: what `tradesim data show` prints."""

from __future__ import annotations

import numpy as np

from tradesim.market.data import MarketData

GAP_DAYS = 4  # a weekend plus a one-day holiday spans 4 calendar days; longer breaks are gaps


def describe(data: MarketData) -> str:
    lines = [
        f"source: {data.source}",
        f"sessions: {len(data.sessions)} ({data.sessions[0].date()}..{data.sessions[-1].date()})",
        f"prices: {'open/high/low/close' if data.has_ohlc else 'closes only (fills happen at closes)'}, {_adjustment(data)}",
        "",
        f"{'ticker':<8} {'first':<10} {'last':<10} {'rows':>6} {'null rows':>9} {'gaps':>5}  adjustments",
    ]
    for ticker in data.tickers:
        closes = data.bars["close"][ticker].dropna()
        dates = closes.index
        spans = np.diff(dates.to_numpy()).astype("timedelta64[D]").astype(int)
        gaps = int((spans > GAP_DAYS).sum())
        longest = f" (longest {int(spans.max())} days from {dates[int(spans.argmax())].date()})" if gaps else ""
        item = data.details[ticker]
        inside = [d for d in item.adjustment_dates if dates[0] <= d <= dates[-1]]
        adjustments = ", ".join(str(d.date()) for d in inside) or "none"
        lines.append(
            f"{ticker:<8} {str(dates[0].date()):<10} {str(dates[-1].date()):<10} {len(closes):>6} "
            f"{item.null_rows:>9} {gaps:>5}  {'splits on ' + adjustments if inside else adjustments}{longest}"
        )
    warnings = [note for note in data.notes if note.startswith("WARNING")]
    return "\n".join(lines + ([""] + warnings if warnings else []))


def _adjustment(data: MarketData) -> str:
    kinds = sorted({item.adjusted_by for item in data.details.values()})
    described = ["adjusted by adj_close/close" if kind == "adjusted close" else f"adjusted by {kind}" if kind else "not adjusted (no adjusted close, split or dividend column)" for kind in kinds]
    return "; ".join(described)

