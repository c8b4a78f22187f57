"""Performance metrics: pure functions of a daily returns series (empyrical underneath).

`risk_free` is an annual rate; empyrical takes a per-period one, so it is divided by
`annualization` before use. `max_drawdown` keeps empyrical's sign (a loss is negative).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

ANNUALIZATION = 252
RETURN_METRICS = (
    "total_return",
    "annual_return",
    "annual_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
)
TRADING_METRICS = ("n_trades", "exposure", "turnover")


PERCENT_METRICS = {"total_return", "annual_return", "annual_volatility", "max_drawdown", "exposure"}


def format_metric(name: str, value) -> str:
    """How tables show a metric: percentages, counts, or ratios with two decimals; None as n/a."""
    if value is None:
        return "n/a"
    if name in PERCENT_METRICS:
        return f"{value * 100:.2f}%"
    if name in ("n_trades", "dates", "predictions"):
        return str(value)
    if name in ("rank_ic_mean", "accuracy", "mcc"):
        return f"{value:.3f}"
    return f"{value:.2f}"


def finite(value) -> float | None:
    """A number as JSON keeps it: None for None, NaN and infinities."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def performance(returns: pd.Series, *, annualization: int = ANNUALIZATION, risk_free: float = 0.0) -> dict[str, float | None]:
    """Return-based metrics of a daily returns series; undefined values (no variance, no loss) are None."""
    import empyrical

    period_risk_free = risk_free / annualization
    return {
        "total_return": finite(empyrical.cum_returns_final(returns)),
        "annual_return": finite(empyrical.annual_return(returns, annualization=annualization)),
        "annual_volatility": finite(empyrical.annual_volatility(returns, annualization=annualization)),
        "sharpe": finite(empyrical.sharpe_ratio(returns, risk_free=period_risk_free, annualization=annualization)),
        "sortino": finite(
            empyrical.sortino_ratio(returns, required_return=period_risk_free, annualization=annualization)
        ),
        "max_drawdown": finite(empyrical.max_drawdown(returns)),
        "calmar": finite(empyrical.calmar_ratio(returns, annualization=annualization)),
    }


def trading(
    trades: pd.DataFrame, equity: pd.Series, gross_exposure: pd.Series, *, annualization: int = ANNUALIZATION
) -> dict[str, float | int | None]:
    """Activity of a simulated portfolio.

    * `n_trades`: number of fills.
    * `exposure`: mean gross exposure (|position value| / equity) at the closes after the first one.
    * `turnover`: one-way annual turnover, half the traded value over equity, per year.
    """
    periods = max(len(equity) - 1, 1)
    traded = trades.groupby("date")["value"].sum() if len(trades) else pd.Series(dtype=float)
    # Equity at the close before each fill is what the traded value is measured against.
    before = equity.shift(1).reindex(traded.index).fillna(equity.iloc[0])
    return {
        "n_trades": int(len(trades)),
        "exposure": finite(gross_exposure.iloc[1:].mean()) if len(gross_exposure) > 1 else 0.0,
        "turnover": finite((traded / before).sum() / 2 * annualization / periods) if len(traded) else 0.0,
    }


def daily_rank_ic(scores: pd.DataFrame, realized: pd.DataFrame, *, min_names: int = 3) -> pd.Series:
    """Per decision date, the Spearman correlation across tickers of the scores with the returns
    realized over the following period. Dates with fewer than `min_names` tickers having both are
    left out."""
    aligned = realized.reindex(index=scores.index, columns=scores.columns)
    usable = scores.notna() & aligned.notna()
    ranked_scores = scores.where(usable).rank(axis=1)
    ranked_returns = aligned.where(usable).rank(axis=1)
    return ranked_scores.corrwith(ranked_returns, axis=1)[usable.sum(axis=1) >= min_names].dropna()


def rank_ic(scores: pd.DataFrame, realized: pd.DataFrame, *, min_names: int = 3) -> dict[str, float | int | None]:
    """RankIC (`daily_rank_ic`): its mean, standard deviation and IR (mean / std)."""
    daily = daily_rank_ic(scores, realized, min_names=min_names)
    std = daily.std() if len(daily) > 1 else float("nan")
    return {
        "rank_ic_mean": finite(daily.mean()) if len(daily) else None,
        "rank_ic_std": finite(std),
        "rank_ic_ir": finite(daily.mean() / std) if len(daily) > 1 and std > 0 else None,
        "rank_ic_positive": finite((daily > 0).mean()) if len(daily) else None,
        "dates": int(len(daily)),
    }


def matthews(truth: np.ndarray, guess: np.ndarray) -> float:
    """The Matthews correlation of two binary vectors, which is their Pearson (phi) correlation; 0
    when either is constant, scikit-learn's convention. (scikit-learn's own would cost every run
    1.3 s of imports; tests hold the two equal.)"""
    if truth.std() == 0 or guess.std() == 0:
        return 0.0
    return float(np.corrcoef(truth.astype(float), guess.astype(float))[0, 1])


def prediction_pairs(predicted: pd.DataFrame, realized: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(realized rises, predicted rises) where both exist, in date order (tickers within a date)."""
    aligned = realized.reindex(index=predicted.index, columns=predicted.columns)
    usable = predicted.notna().to_numpy() & aligned.notna().to_numpy()
    return aligned.to_numpy()[usable] > 0, predicted.to_numpy()[usable].astype(bool)


def prediction_quality(predicted: pd.DataFrame, realized: pd.DataFrame) -> dict[str, float | int | None]:
    """Accuracy and Matthews correlation of predicted rises (True/False; NaN: no prediction)
    against the sign of the realized returns."""
    truth, guess = prediction_pairs(predicted, realized)
    if not len(guess):
        return {"accuracy": None, "mcc": None, "predictions": 0, "predicted_rise_share": None, "realized_rise_share": None}
    return {
        "accuracy": finite((truth == guess).mean()),
        "mcc": finite(matthews(truth, guess)),
        "predictions": int(len(guess)),
        "predicted_rise_share": finite(guess.mean()),
        "realized_rise_share": finite(truth.mean()),
    }
