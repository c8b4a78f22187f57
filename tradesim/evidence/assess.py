"""A finished run's evidence: the `significance` block (intervals, tests, the deflated Sharpe over
the study's trials) and `by_model_cutoff` (the run split at each model's training cutoff), with the
flags and notes they raise. `tradesim.backtesting` calls `assess` once per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tradesim.config import RunConfig
from tradesim.errors import TradesimError
from tradesim.evidence import cutoffs, significance, trials
from tradesim.metrics import finite, performance


@dataclass
class Forecasts:
    """What a ranking or predicting strategy's forecasts are judged on."""

    daily_rank_ic: pd.Series | None = None
    horizon: int = 1
    truth: np.ndarray | None = None  # realized rises, date order
    guess: np.ndarray | None = None  # predicted rises


@dataclass
class Assessment:
    significance: dict[str, Any]
    by_model_cutoff: dict[str, Any]
    labels: dict[str, dict[str, str]]  # model spec -> decision date -> before / near / after
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


SWEEP_DEFLATION = "a sweep's cell: its deflated Sharpe counts every cell of the sweep and is in the sweep's results.parquet"


@dataclass(frozen=True)
class TrialIdentity:
    fingerprint: str
    tickers: tuple[str, ...]
    first_decision: str
    last_session: str
    label: str
    resolved: dict[str, Any]


def assess(
    config: RunConfig, returns: pd.Series, benchmark_returns: pd.Series, forecasts: Forecasts, *,
    annualization: int, identity: TrialIdentity, model_specs: list[str], decision_dates: pd.DatetimeIndex, record: bool = True,
    deflate: bool = True,
) -> Assessment:
    """`record`: add the run to the trial ledger (paper accounts replaying their own days do not);
    `deflate`: deflate the Sharpe by the study's trials (a sweep's cells do not: the sweep deflates
    them together once they are all run, so that a cell's files never depend on which ran first)."""
    reps, seed = config.sig_reps, config.seed
    block = significance.sharpe_evidence(
        returns, benchmark_returns, annualization=annualization, risk_free=config.risk_free, reps=reps, seed=seed
    )
    if forecasts.daily_rank_ic is not None:
        block["rank_ic"] = significance.rank_ic_evidence(forecasts.daily_rank_ic, forecasts.horizon)
    if forecasts.truth is not None:
        block["prediction"] = significance.prediction_evidence(forecasts.truth, forecasts.guess, reps=reps, seed=seed)
    split, labels, flags, cutoff_notes = by_model_cutoff(config, returns, benchmark_returns, annualization, model_specs, decision_dates)
    if config.require_post_cutoff and flags:  # refused before it counts as a trial
        raise TradesimError(f"--require-post-cutoff: {flags[0]}")
    if deflate:
        notes = _trial(block, config, returns, identity, annualization, record)
    else:
        notes = []
        block["deflation"] = SWEEP_DEFLATION
    block["in_words"] = in_words(block)
    return Assessment(block, split, labels, flags, notes + cutoff_notes)


def _trial(block: dict[str, Any], config: RunConfig, returns: pd.Series, identity: TrialIdentity, annualization: int, record: bool) -> list[str]:
    """Record the run in the trial ledger and deflate its Sharpe by the study's trials."""
    study, description = trials.study_of(config.study, identity.fingerprint, identity.tickers, identity.first_decision, identity.last_session)
    trial = trials.trial_of(config.to_dict(), identity.fingerprint, identity.resolved)
    sharpe = block.get("sharpe") or {}
    notes = []
    if record and not trials.record(
        study, description, trial, identity.label, config.to_dict(), returns, sharpe.get("value"), sharpe.get("interval")
    ):
        notes.append(f"this run was not recorded as a trial: {trials.ledger_path()} cannot be written (the deflated Sharpe counts the trials recorded before it and this one)")
    deflated = trials.deflation_of(trial, identity.label, returns, config.risk_free / annualization, trials.trials(study))
    block.update({
        "study": config.study or study,
        "trial": trial,
        "trials": deflated["trials"],
        "trial_rank": deflated["rank"],
        "trial_sharpe_variance": deflated["sharpe_variance"],
        "deflated_sharpe": finite(deflated["deflated_sharpe"]),
        "trials_in_words": trials.trials_in_words(deflated["trials"], deflated["rank"], config.study or study[:12]),
    })
    return notes


def _verdict(interval, value: float | None, fmt: str, zero_means: str = "zero") -> str:
    if value is None or interval is None:
        return "n/a"
    shown = f"{value:{fmt}} (95% interval {interval[0]:{fmt}} to {interval[1]:{fmt}})"
    if significance.contains_zero(interval):
        return f"{shown}: not distinguishable from {zero_means}"
    return f"{shown}: {'above' if interval[0] > 0 else 'below'} {zero_means}"


def in_words(block: dict[str, Any]) -> list[str]:
    """The block as sentences: every interval that contains zero is said to, in words."""
    lines = []
    sharpe = block.get("sharpe")
    if sharpe:
        psr = sharpe["psr_zero"]
        track = sharpe["min_track_record_zero"]
        lines.append(
            f"Sharpe {_verdict(sharpe['interval'], sharpe['value'], '.2f')}; standard error {sharpe['se_iid']:.2f} (IID), "
            f"{sharpe['se_hac']:.2f} (Newey-West); probability the true Sharpe is above 0: {psr:.2f}"
            + (f"; {track:.0f} sessions would be needed to tell it from 0 at 95% (this run has {block['observations']})" if track else "")
        )
        bench = block["benchmark"]
        if bench.get("sharpe_difference") is not None:
            spa = bench["spa_pvalue"]
            lines.append(
                f"against the benchmark: Sharpe difference {_verdict(bench['sharpe_difference_interval'], bench['sharpe_difference'], '+.2f')}; "
                f"annual return difference {_verdict(bench['annual_return_difference_interval'], bench['annual_return_difference'], '+.2%')}; "
                f"SPA p-value {'n/a' if spa is None else f'{spa:.3f}'}"
            )
    elif "note" in block:
        lines.append(block["note"])
    if "deflation" in block:
        lines.append(block["deflation"])
    ranking = block.get("rank_ic")
    if ranking and ranking.get("t_hac") is not None:
        lines.append(
            f"RankIC {_verdict(ranking['interval'], ranking['mean'], '.3f')} over {ranking['dates']} dates; "
            f"t {ranking['t_hac']:.2f} with Newey-West ({ranking['hac_lags']} lags), {ranking['t_naive']:.2f} naive"
        )
    prediction = block.get("prediction")
    if prediction and prediction.get("predictions"):
        p = prediction["accuracy_pvalue"]
        above = p is not None and p < 0.05
        lines.append(
            f"accuracy {prediction['accuracy']:.3f} against the majority-class rate {prediction['majority_rate']:.3f} of the same dates "
            f"(p {'n/a' if p is None else f'{p:.3f}'}): {'above it' if above else 'not distinguishable from it'}; "
            f"MCC {_verdict(prediction['mcc_interval'], prediction['mcc'], '.3f')}"
        )
    if "trials" in block:
        deflated = block["deflated_sharpe"]
        lines.append(f"{block['trials_in_words']}; deflated Sharpe (probability of skill after the trials) {'n/a' if deflated is None else f'{deflated:.2f}'}")
    return lines


def by_model_cutoff(
    config: RunConfig, returns: pd.Series, benchmark_returns: pd.Series, annualization: int, model_specs: list[str], decision_dates: pd.DatetimeIndex,
) -> tuple[dict[str, Any], dict[str, dict[str, str]], list[str], list[str]]:
    """Per model: its cutoff, the decisions before, near and after it, and the metrics (with a
    Sharpe and annual-return interval) of the sessions those decisions earned. Flags a run with
    most decisions before a model's cutoff."""
    split: dict[str, Any] = {}
    described: dict[str, dict[str, str]] = {}
    flags, notes = [], []
    for spec in dict.fromkeys(model_specs):
        cutoff = cutoffs.cutoff_of(spec, config.model_cutoffs)
        if cutoff.date is None:
            notes.append(f"the training cutoff of {spec} is unknown ({cutoff.source}): its decisions were not checked for the model's own look-ahead")
            split[spec] = {**cutoff.describe(), "decisions": None}
            continue
        labels = cutoffs.label_dates(decision_dates, cutoff.date, config.cutoff_embargo_days)
        described[spec] = {str(day.date()): label for day, label in labels.items()}
        counts = {label: int((labels == label).sum()) for label in cutoffs.LABELS}
        before_share = counts["before"] / len(labels)
        earned = cutoffs.returns_labels(labels, returns.index)
        parts = {}
        for label in cutoffs.LABELS:
            chosen = (earned == label).to_numpy()
            parts[label] = _part(returns[chosen], benchmark_returns.reindex(returns.index)[chosen], config, annualization)
        split[spec] = {**cutoff.describe(), "embargo_days": config.cutoff_embargo_days, "decisions": counts, "before_share": before_share, **parts}
        if before_share > 0.5:
            flags.append(cutoffs.look_ahead_reason(cutoff, before_share, config.cutoff_embargo_days))
    return split, described, flags, notes


def _part(returns: pd.Series, benchmark_returns: pd.Series, config: RunConfig, annualization: int) -> dict[str, Any]:
    """The metrics of some of a run's sessions, with the Sharpe's interval (and the benchmark's
    Sharpe on the same sessions)."""
    if len(returns) < 3:
        return {"sessions": int(len(returns))}
    measure = lambda series: performance(series, annualization=annualization, risk_free=config.risk_free)  # noqa: E731
    part: dict[str, Any] = {"sessions": int(len(returns)), **measure(returns), "benchmark_sharpe": measure(benchmark_returns.fillna(0.0))["sharpe"]}
    period_rf = config.risk_free / annualization
    x, b = returns.to_numpy(), benchmark_returns.fillna(0.0).to_numpy()
    if len(x) >= significance.MIN_OBSERVATIONS and np.std(x) > 0:
        interval = significance.sharpe_interval(x - period_rf, reps=config.sig_reps, seed=config.seed, annualization=annualization)
        paired = significance.bootstrap_intervals(x - period_rf, b - period_rf, x, b, annualization=annualization, reps=config.sig_reps, seed=config.seed)
        part["sharpe_interval"] = significance.as_interval(interval)
        part["annual_return_interval"] = significance.as_interval(paired["annual_return"])
        part["sharpe_difference_interval"] = significance.as_interval(paired["sharpe_difference"])
    return part
