"""The same schedule as a vectorbt Portfolio: an export for vectorbt users and the engine's
independent oracle in the tests. vectorbt is not on the run path; it comes with the `vectorbt`
(and `dev`) extra."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tradesim.engine import fill_schedule
from tradesim.errors import TradesimError


def to_vectorbt(
    weights: pd.DataFrame,
    close: pd.DataFrame,
    open_: pd.DataFrame | None = None,
    *,
    fill: str = "next-open",
    cost_bps: float = 0.0,
    slippage_bps: float = 0.0,
    capital: float = 100_000.0,
    start: pd.Timestamp | None = None,
):
    """`vectorbt.Portfolio.from_orders` over the engine's schedule (fills, skipped orders,
    delisting close-outs free of costs): target percents, both directions, one shared cash pot,
    sells before buys. Takes `tradesim.engine.simulate`'s arguments."""
    try:
        import vectorbt as vbt
    except ImportError:
        raise TradesimError("to_vectorbt: needs vectorbt (pip install -e '.[vectorbt]')") from None
    schedule = fill_schedule(weights, open_, close, fill, start)
    marks = schedule.marks
    return vbt.Portfolio.from_orders(
        close=pd.DataFrame(marks, index=schedule.sessions, columns=close.columns),
        size=schedule.targets,
        size_type="targetpercent",
        price=np.where(np.isfinite(schedule.fill_prices), schedule.fill_prices, marks),
        direction="both",
        fees=np.where(schedule.free, 0.0, cost_bps / 1e4),
        slippage=np.where(schedule.free, 0.0, slippage_bps / 1e4),
        init_cash=capital,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
        freq="1D",
    )
