"""Uncertainty of a run's figures: pure functions of daily returns, rankings and predictions.

Sharpe ratios here are per period (daily) unless a name says `annual`; the formulas of Lo (2002),
Mertens (2002) and Bailey & López de Prado (2012, 2014) are stated per period. Kurtosis is the
plain (not excess) fourth standardised moment: 3 for a normal distribution.

The bootstraps are arch's (`StationaryBootstrap` with `optimal_block_length`, `SPA`); the
autocorrelation-robust variances are statsmodels' Newey-West (`S_hac_simple`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tradesim.metrics import finite, matthews

EULER_GAMMA = 0.5772156649015329
LEVEL = 0.95  # every interval is a 95% one
MIN_OBSERVATIONS = 20  # fewer returns than this get no interval (nor a block length estimate)


def moments(returns: np.ndarray) -> tuple[float, float, float, int]:
    """(per-period Sharpe, skewness, kurtosis, observations) of excess returns; NaN Sharpe
    without variance."""
    x = np.asarray(returns, dtype=float)
    n = len(x)
    std = x.std(ddof=1) if n > 1 else 0.0
    if n < 3 or not std > 0:
        return float("nan"), 0.0, 3.0, n
    z = (x - x.mean()) / x.std(ddof=0)
    return float(x.mean() / std), float((z**3).mean()), float((z**4).mean()), n


def _sharpe_variance_factor(sharpe: float, skew: float, kurtosis: float) -> float:
    """1 - skew*SR + (kurtosis-1)/4*SR^2: the variance of the Sharpe estimate times (T-1)."""
    return max(1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2, 1e-12)


def sharpe_standard_error_iid(sharpe: float, skew: float, kurtosis: float, n: int) -> float:
    """Lo (2002) / Mertens (2002): the Sharpe's standard error under IID returns of any shape."""
    return math.sqrt(_sharpe_variance_factor(sharpe, skew, kurtosis) / (n - 1))


def newey_west_lags(n: int) -> int:
    """Newey & West's (1994) automatic rule: floor(4 (n/100)^(2/9))."""
    return int(4 * (n / 100) ** (2 / 9))


def mean_standard_error_hac(series: np.ndarray, lags: int) -> float:
    """Standard error of a series' mean, robust to autocorrelation up to `lags` (Newey-West,
    Bartlett weights)."""
    from statsmodels.stats.sandwich_covariance import S_hac_simple

    x = np.asarray(series, dtype=float)
    weighted_sum = float(np.squeeze(S_hac_simple(x - x.mean(), nlags=lags)))  # n times the long-run variance
    return math.sqrt(max(weighted_sum, 0.0)) / len(x)


def sharpe_standard_error_hac(returns: np.ndarray, lags: int | None = None) -> float:
    """The Sharpe's standard error under autocorrelation: the Newey-West standard error of the
    mean of its influence function (which, for IID returns, gives Mertens' formula)."""
    x = np.asarray(returns, dtype=float)
    z = (x - x.mean()) / x.std(ddof=1)
    sharpe = x.mean() / x.std(ddof=1)
    influence = z - sharpe / 2 * (z**2 - 1)
    return mean_standard_error_hac(influence, newey_west_lags(len(x)) if lags is None else lags)


def probabilistic_sharpe(sharpe: float, target: float, skew: float, kurtosis: float, n: int) -> float:
    """Bailey & López de Prado (2012): the probability that the true Sharpe exceeds `target`."""
    from scipy.stats import norm

    return float(norm.cdf((sharpe - target) * math.sqrt(n - 1) / math.sqrt(_sharpe_variance_factor(sharpe, skew, kurtosis))))


def minimum_track_record(sharpe: float, target: float, skew: float, kurtosis: float, confidence: float = LEVEL) -> float | None:
    """Bailey & López de Prado (2012): observations needed for the Sharpe to exceed `target` with
    `confidence`; None when the Sharpe does not exceed it (no track record is long enough)."""
    from scipy.stats import norm

    if not sharpe > target:
        return None
    return 1 + _sharpe_variance_factor(sharpe, skew, kurtosis) * (norm.ppf(confidence) / (sharpe - target)) ** 2


def expected_maximum_sharpe(trials: int, variance: float) -> float:
    """Bailey & López de Prado (2014): the expected largest of `trials` Sharpe ratios drawn with
    this variance around a true Sharpe of zero (per period, like `variance`)."""
    from scipy.stats import norm

    if trials < 2 or not variance > 0:
        return 0.0
    return math.sqrt(variance) * (
        (1 - EULER_GAMMA) * norm.ppf(1 - 1 / trials) + EULER_GAMMA * norm.ppf(1 - 1 / (trials * math.e))
    )


def deflated_sharpe(sharpe: float, skew: float, kurtosis: float, n: int, trials: int, variance: float) -> float:
    """Bailey & López de Prado (2014): the probabilistic Sharpe against the Sharpe the best of
    `trials` unskilled strategies would be expected to show."""
    return probabilistic_sharpe(sharpe, expected_maximum_sharpe(trials, variance), skew, kurtosis, n)


def _annual_return(x: np.ndarray, annualization: int) -> float:
    growth = np.log1p(x).mean() if (x > -1).all() else -np.inf
    return math.expm1(growth * annualization)


def block_length(*series: np.ndarray) -> float:
    """The stationary bootstrap's mean block length (Politis & White, as arch estimates it), the
    largest over the series, at least 1."""
    from arch.bootstrap import optimal_block_length

    lengths = [optimal_block_length(np.asarray(x, dtype=float))["stationary"].iloc[0] for x in series if len(x) >= MIN_OBSERVATIONS and np.std(x) > 0]
    finite = [length for length in lengths if math.isfinite(length)]
    return max([1.0, *finite])


def resampled_indices(n: int, block: float, reps: int, seed: int) -> np.ndarray:
    """`reps` stationary-bootstrap resamples of positions 0..n-1 (reps x n), drawn by arch. The
    statistics are then computed on all resamples at once (numpy), not one call per resample:
    a run's whole significance block costs tens of milliseconds instead of a second."""
    from arch.bootstrap import StationaryBootstrap

    bootstrap = StationaryBootstrap(block, np.arange(n), seed=np.random.default_rng(seed))
    return np.stack([positional[0] for positional, _ in bootstrap.bootstrap(reps)])


def long_run_variances(rows: np.ndarray, lags: int) -> np.ndarray:
    """The Newey-West (Bartlett) long-run variance of each row, as statsmodels' `S_hac_simple`
    computes it for one series (divided by the length), for every bootstrap resample at once
    (tests hold the two equal)."""
    centered = rows - rows.mean(axis=1, keepdims=True)
    total = (centered**2).sum(axis=1)
    for lag in range(1, lags + 1):
        total += 2 * (1 - lag / (lags + 1)) * (centered[:, lag:] * centered[:, :-lag]).sum(axis=1)
    return total / rows.shape[1]


def _sharpes_and_errors(rows: np.ndarray, lags: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-period Sharpe of each row and its Newey-West standard error (`sharpe_standard_error_hac`)."""
    mean, std = rows.mean(axis=1), rows.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = mean / std
        z = (rows - mean[:, None]) / std[:, None]
        influence = z - sharpe[:, None] / 2 * (z**2 - 1)
        return sharpe, np.sqrt(long_run_variances(influence, lags) / rows.shape[1])


def sharpe_interval(excess: np.ndarray, *, reps: int, seed: int, level: float = LEVEL, annualization: int = 1) -> tuple[float, float]:
    """A stationary-bootstrap interval of the Sharpe, studentized by its Newey-West standard error
    (bootstrap-t): on autocorrelated returns the plain percentile interval covers too little
    (0.84 for a nominal 0.90 on AR(0.3) returns; this one 0.88-0.91, tests/test_evidence.py)."""
    x = np.asarray(excess, dtype=float)
    lags = newey_west_lags(len(x))
    sharpe, error = (v[0] for v in _sharpes_and_errors(x[None, :], lags))
    draws, errors = _sharpes_and_errors(x[resampled_indices(len(x), block_length(x), reps, seed)], lags)
    with np.errstate(divide="ignore", invalid="ignore"):
        studentized = (draws - sharpe) / errors
    tail = (1 - level) / 2 * 100
    upper, lower = np.nanpercentile(studentized[np.isfinite(studentized)], [100 - tail, tail])
    scale = math.sqrt(annualization)
    return float((sharpe - upper * error) * scale), float((sharpe - lower * error) * scale)


def _percentiles(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_intervals(
    excess: np.ndarray, benchmark_excess: np.ndarray, returns: np.ndarray, benchmark_returns: np.ndarray,
    *, annualization: int, reps: int, seed: int,
) -> dict[str, tuple[float, float]]:
    """Paired stationary-bootstrap percentile intervals (the same resampled days for the strategy
    and its benchmark): annual return of each, and the differences of their Sharpes and returns."""
    index = resampled_indices(len(excess), block_length(excess, benchmark_excess), reps, seed)

    def annual_sharpes(x):
        rows = np.asarray(x, dtype=float)[index]
        with np.errstate(divide="ignore", invalid="ignore"):
            return rows.mean(axis=1) / rows.std(axis=1, ddof=1) * math.sqrt(annualization)

    def annual_returns(x):
        rows = np.asarray(x, dtype=float)[index]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.expm1(np.log1p(rows).mean(axis=1) * annualization)

    annual, benchmark_annual = annual_returns(returns), annual_returns(benchmark_returns)
    with np.errstate(invalid="ignore"):  # a resample without variance: NaN, left out of the percentiles
        return {
            "annual_return": _percentiles(annual),
            "sharpe_difference": _percentiles(annual_sharpes(excess) - annual_sharpes(benchmark_excess)),
            "annual_return_difference": _percentiles(annual - benchmark_annual),
        }


def sharpe_gap_change(
    before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray], *, annualization: int, reps: int, seed: int,
) -> tuple[float, tuple[float, float] | None]:
    """A difference in differences of annual Sharpe ratios: (A - B) before a date minus (A - B)
    after it, for two runs A and B over the same sessions (`before` and `after`: their returns,
    paired), with a paired stationary-bootstrap percentile interval (each period resampled on its own)."""

    def sharpes(rows):
        with np.errstate(divide="ignore", invalid="ignore"):
            return rows.mean(axis=-1) / rows.std(axis=-1, ddof=1) * math.sqrt(annualization)

    gaps, draws = [], []
    for offset, (a, b) in enumerate((before, after)):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        gaps.append(sharpes(a) - sharpes(b))
        if len(a) >= MIN_OBSERVATIONS:
            index = resampled_indices(len(a), block_length(a, b), reps, seed + offset)
            draws.append(sharpes(a[index]) - sharpes(b[index]))
    value = float(gaps[0] - gaps[1])
    if len(draws) < 2:
        return value, None
    with np.errstate(invalid="ignore"):
        return value, _percentiles(draws[0] - draws[1])


def spa_pvalue(returns: np.ndarray, benchmark_returns: np.ndarray, *, reps: int, seed: int) -> float | None:
    """Hansen's (2005) SPA test, consistent p-value, of `returns` against `benchmark_returns`
    (columns of `returns`: several models at once). arch takes losses: negative returns. A small
    p-value says a model beats the benchmark."""
    from arch.bootstrap import SPA

    models = np.asarray(returns, dtype=float)
    benchmark = np.asarray(benchmark_returns, dtype=float)
    difference = (models.T - benchmark).T if models.ndim == 2 else models - benchmark
    if not np.std(difference) > 0:
        return None
    spa = SPA(-benchmark, -models, block_size=int(round(block_length(difference.ravel()))), reps=reps, seed=np.random.default_rng(seed))
    spa.compute()
    return float(spa.pvalues["consistent"])


def contains_zero(interval) -> bool:
    """Whether an interval holds zero: its figure is not distinguishable from zero."""
    return interval is not None and interval[0] is not None and interval[1] is not None and interval[0] <= 0 <= interval[1]


def as_interval(pair) -> list[float | None] | None:
    if pair is None:
        return None
    low, high = (finite(v) for v in pair)
    return None if low is None or high is None else [low, high]


def sharpe_evidence(returns: pd.Series, benchmark_returns: pd.Series, *, annualization: int, risk_free: float, reps: int, seed: int) -> dict[str, Any]:
    """The `significance` block's Sharpe and benchmark parts (annual units, intervals at 95%)."""
    aligned = pd.concat([returns, benchmark_returns], axis=1, join="inner").dropna()
    strategy, benchmark = aligned.iloc[:, 0].to_numpy(), aligned.iloc[:, 1].to_numpy()
    period_rf = risk_free / annualization
    excess, benchmark_excess = strategy - period_rf, benchmark - period_rf
    sharpe, skew, kurtosis, n = moments(excess)
    benchmark_sharpe = moments(benchmark_excess)[0]
    scale = math.sqrt(annualization)
    block: dict[str, Any] = {
        "level": LEVEL,
        "observations": n,
        "skew": finite(skew),
        "kurtosis": finite(kurtosis),
        "bootstrap_reps": reps,
    }
    if not math.isfinite(sharpe):
        return {**block, "sharpe": None, "note": "the returns have no variance: the Sharpe and its uncertainty are undefined"}
    lags = newey_west_lags(n)
    intervals = bootstrap_intervals(excess, benchmark_excess, strategy, benchmark, annualization=annualization, reps=reps, seed=seed)
    has_benchmark = math.isfinite(benchmark_sharpe)
    block["sharpe"] = {
        "value": finite(sharpe * scale),
        "se_iid": finite(sharpe_standard_error_iid(sharpe, skew, kurtosis, n) * scale),
        "se_hac": finite(sharpe_standard_error_hac(excess, lags) * scale),
        "hac_lags": lags,
        "interval": as_interval(sharpe_interval(excess, reps=reps, seed=seed, annualization=annualization)),
        "interval_method": "stationary bootstrap-t (studentized by the Newey-West standard error)",
        "block_length": finite(block_length(excess)),  # the mean block of the Sharpe's resamples
        "psr_zero": finite(probabilistic_sharpe(sharpe, 0.0, skew, kurtosis, n)),
        "psr_benchmark": finite(probabilistic_sharpe(sharpe, benchmark_sharpe, skew, kurtosis, n)) if has_benchmark else None,
        "min_track_record_zero": finite(minimum_track_record(sharpe, 0.0, skew, kurtosis)),
        "min_track_record_benchmark": finite(minimum_track_record(sharpe, benchmark_sharpe, skew, kurtosis)) if has_benchmark else None,
    }
    block["annual_return"] = {"interval": as_interval(intervals["annual_return"])}
    block["benchmark"] = {
        "sharpe": finite(benchmark_sharpe * scale),
        "sharpe_interval": as_interval(sharpe_interval(benchmark_excess, reps=reps, seed=seed, annualization=annualization)) if has_benchmark else None,
        "sharpe_difference": finite((sharpe - benchmark_sharpe) * scale) if has_benchmark else None,
        "sharpe_difference_interval": as_interval(intervals["sharpe_difference"]) if has_benchmark else None,
        "annual_return_difference": finite(_annual_return(strategy, annualization) - _annual_return(benchmark, annualization)),
        "annual_return_difference_interval": as_interval(intervals["annual_return_difference"]),
        "spa_pvalue": finite(spa_pvalue(strategy, benchmark, reps=reps, seed=seed)),
    }
    return block


def rank_ic_evidence(daily_ic: pd.Series, horizon: int) -> dict[str, Any]:
    """Mean RankIC with its naive t and its Newey-West t (at least horizon-1 lags: overlapping
    H-session returns make neighbouring dates' ICs correlated), on the date-sorted series."""
    series = daily_ic.sort_index().to_numpy(dtype=float)
    n = len(series)
    if n < 3 or not series.std(ddof=1) > 0:
        return {"dates": n, "mean": finite(series.mean()) if n else None, "t_naive": None, "t_hac": None, "interval": None}
    from scipy.stats import norm

    lags = max(horizon - 1, newey_west_lags(n))
    mean = series.mean()
    se_naive = series.std(ddof=1) / math.sqrt(n)
    se_hac = mean_standard_error_hac(series, lags)
    z = norm.ppf(0.5 + LEVEL / 2)
    return {
        "dates": n,
        "mean": finite(mean),
        "t_naive": finite(mean / se_naive),
        "t_hac": finite(mean / se_hac) if se_hac > 0 else None,
        "hac_lags": lags,
        "interval": as_interval((mean - z * se_hac, mean + z * se_hac)),
    }


def prediction_evidence(truth: np.ndarray, guess: np.ndarray, *, reps: int, seed: int) -> dict[str, Any]:
    """Accuracy against the majority-class rate of the same dates (one-sided binomial test) and
    the MCC with a stationary-bootstrap interval over the date-ordered predictions."""
    from scipy.stats import binomtest

    truth, guess = np.asarray(truth, dtype=bool), np.asarray(guess, dtype=bool)
    n = len(truth)
    if n == 0:
        return {"predictions": 0}
    correct = int((truth == guess).sum())
    majority = max(truth.mean(), 1 - truth.mean())
    block: dict[str, Any] = {
        "predictions": n,
        "accuracy": finite(correct / n),
        "majority_rate": finite(majority),
        "accuracy_pvalue": finite(binomtest(correct, n, majority, alternative="greater").pvalue) if majority < 1 else None,
        "accuracy_interval": as_interval(binomtest(correct, n).proportion_ci(LEVEL, method="wilson")),
    }
    mcc_interval = None
    if n >= MIN_OBSERVATIONS and truth.std() > 0 and guess.std() > 0:
        index = resampled_indices(n, block_length(truth.astype(float), guess.astype(float)), reps, seed)
        t, g = truth.astype(float)[index], guess.astype(float)[index]
        t, g = t - t.mean(axis=1, keepdims=True), g - g.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = (t * g).sum(axis=1) / np.sqrt((t**2).sum(axis=1) * (g**2).sum(axis=1))  # a constant resample: NaN, left out
        mcc_interval = as_interval(_percentiles(phi))
    block["mcc"] = finite(matthews(truth, guess))
    block["mcc_interval"] = mcc_interval
    return block
