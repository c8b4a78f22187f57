"""One backtest: load data, fit on the past, decide date by date, simulate, measure.

`backtest()` is the library entry point (`tradesim.backtest`); `configure()` and `run_backtest()`
are what it and `tradesim backtest` share. It knows the Strategy interface but no particular
strategy: they are found through `tradesim.plugins`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from tradesim import plugins
from tradesim.config import ALL_TICKERS, KEYS, SAME_CLOSE_FLAG, RunConfig, read_toml, resolve
from tradesim.engine import NO_OPEN, SimulationResult, simulate
from tradesim.errors import TradesimError
from tradesim.market.data import IN_MEMORY, MarketData, load_market_data
from tradesim.market.features import fill_to_fill_returns
from tradesim.market.quality import check_data, quality_summary
from tradesim.evidence.assess import Forecasts, TrialIdentity, assess
from tradesim.metrics import ANNUALIZATION, RETURN_METRICS, TRADING_METRICS, daily_rank_ic, finite, performance, prediction_pairs, prediction_quality, rank_ic, trading
from tradesim.policies import benchmark_targets
from tradesim.reuse import ReplayedStrategy, load_pass, pass_key, pass_parts, pass_path, store_pass, strategy_record
from tradesim.rundir import check_run_dir, write_run_directory
from tradesim.runs import Run
from tradesim.strategy import Runtime, Strategy
from tradesim.sweep.folds import Fold, fold_of, plan_folds

DEFAULT_TEST_SESSIONS = 504  # without --train-end, learned strategies test on the last two years
DEFAULT_TRAIN_FRACTION = 0.7  # ... or on the last 30% when the data is shorter than four years


@dataclass
class BacktestResult:
    config: RunConfig
    strategy: Strategy
    data: MarketData
    fill: str
    train_end: pd.Timestamp | None
    weights: pd.DataFrame  # decision dates x tickers
    decisions: list[dict[str, Any]]
    simulation: SimulationResult
    benchmark: SimulationResult
    metrics: dict[str, Any]  # metrics["benchmark"]["name"] says what the benchmark is
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    seed_equity: pd.DataFrame | None = None  # with --seeds N: each seed's equity curve (dates x seeds)


def _test_sessions(data: MarketData, strategy: Strategy, config: RunConfig, notes: list[str]):
    """(train_end, the test sessions, the training sessions): the split `fit` and metrics follow."""
    sessions = data.sessions
    if config.train_end is None and not strategy.needs_training:
        return None, sessions, sessions[:0]
    if config.train_end is None:
        if len(sessions) >= 2 * DEFAULT_TEST_SESSIONS:
            train_end = sessions[-DEFAULT_TEST_SESSIONS]
        else:
            train_end = sessions[int(len(sessions) * DEFAULT_TRAIN_FRACTION)]
        notes.append(f"no --train-end given: trained before {train_end.date()}, tested from it ({int((sessions >= train_end).sum())} sessions)")
    else:
        train_end = pd.Timestamp(config.train_end)
    training, test = sessions[sessions < train_end], sessions[sessions >= train_end]
    if training.empty:
        raise TradesimError(f"--train-end {train_end.date()}: no sessions before it to train on (data starts {sessions[0].date()})")
    if len(test) < 2:
        raise TradesimError(f"--train-end {train_end.date()}: fewer than 2 sessions after it to test on (data ends {sessions[-1].date()})")
    return train_end, test, training


def check_weights(weights: dict[str, float], tickers: tuple[str, ...], strategy: str, date: pd.Timestamp, max_gross: float = 1.0) -> None:
    """Refuse, naming the strategy and date, weights the engine must not silently fix: unknown
    tickers, non-finite values, longs above 100% of capital, gross exposure above `max_gross`."""
    unknown = set(weights) - set(tickers)
    if unknown:
        raise TradesimError(f"strategy {strategy} weighted unknown ticker {sorted(unknown)[0]} on {date.date()}")
    values = np.array([weights.get(t, 0.0) for t in tickers], dtype=float)
    if not np.isfinite(values).all():
        raise TradesimError(f"strategy {strategy} returned a non-finite weight on {date.date()}")
    if values.clip(min=0).sum() > 1 + 1e-9:
        raise TradesimError(f"strategy {strategy} asked for leverage (long weights {values.clip(min=0).sum():g}) on {date.date()}")
    if np.abs(values).sum() > max_gross + 1e-9:
        raise TradesimError(
            f"strategy {strategy} asked for gross exposure {np.abs(values).sum():g} (the sum of |weights|) on {date.date()}, "
            f"above --max-gross {max_gross:g}; weights are never scaled silently"
        )


def order_action(previous: float, weight: float) -> str:
    if abs(previous - weight) <= 1e-12:  # np.isclose(rtol=0, atol=1e-12) on finite weights, without its cost per call
        return "hold"
    return "buy" if weight > previous else "sell"


def benchmark_weights(close: pd.DataFrame, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
    """The benchmark (`policies.benchmark_targets`) from `first` to `last`: a row where the tickers
    priced change (the first session, a listing, data that ends)."""
    window = close.loc[first:last]
    priced = np.isfinite(window.to_numpy())
    changed = np.r_[True, (priced[1:] != priced[:-1]).any(axis=1)]
    return pd.DataFrame(benchmark_targets(priced[changed]), index=window.index[changed], columns=close.columns)


def _forecast_quality(data: MarketData, fill: str, horizon: int, scores: dict, predictions: dict) -> tuple[dict[str, Any], Forecasts]:
    """RankIC of the scores and accuracy/MCC of the predictions a strategy gave, against the
    fill-to-fill returns over its horizon (measured after the run, on the whole data), and what
    their evidence is computed from."""
    forecasts = Forecasts(horizon=horizon)
    if not scores and not predictions:
        return {}, forecasts
    realized = fill_to_fill_returns(data.bars, fill, horizon)
    quality: dict[str, Any] = {}
    if scores:
        table = pd.DataFrame.from_dict(scores, orient="index")
        quality["ranking"] = {"horizon": horizon, **rank_ic(table, realized)}
        forecasts.daily_rank_ic = daily_rank_ic(table, realized)
    if predictions:
        table = pd.DataFrame.from_dict(predictions, orient="index").astype("float")
        quality["prediction"] = {"horizon": horizon, **prediction_quality(table, realized)}
        forecasts.truth, forecasts.guess = prediction_pairs(table, realized)
    return quality, forecasts


def left_out_note(left_out: dict[str, list[pd.Timestamp]], decisions: int) -> str:
    """Listed tickers a ranking or prediction left out, with their dates (they were not judged there)."""
    ordered = sorted(left_out.items(), key=lambda item: (-len(item[1]), item[0]))
    parts = [
        f"{ticker} on {', '.join(str(d.date()) for d in days[:3])}{f' and {len(days) - 3} more' if len(days) > 3 else ''}"
        for ticker, days in ordered[:6]
    ]
    more = f"; {len(ordered) - 6} more tickers" if len(ordered) > 6 else ""
    return (
        f"{len(ordered)} listed tickers were left out of some of the {decisions} decisions (not enough data in the "
        f"strategy's window): {'; '.join(parts)}{more}"
    )


@contextmanager
def seeded_global_random(seed: int) -> Iterator[None]:
    """Whatever draws from numpy's (or an imported torch's) global generator during a run draws
    seeded numbers; the caller's generator state is put back afterwards, so a notebook's own random
    numbers do not change because it ran a backtest."""
    numpy_state = np.random.get_state()
    torch = sys.modules.get("torch")
    torch_state = torch.random.get_rng_state() if torch is not None else None
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        if torch_state is not None:
            torch.random.set_rng_state(torch_state)


def _walk_forward_folds(
    data: MarketData, strategy: Strategy, config: RunConfig, test: pd.DatetimeIndex, state: bytes | None, fold_states: dict[int, bytes] | None
) -> list[Fold] | None:
    """The run's walk-forward folds (None: the strategy is fitted once, before --train-end)."""
    if not config.walk_forward:
        return None
    if not strategy.needs_training:
        raise TradesimError(f"--walk-forward: strategy {strategy.name} learns nothing, so there is nothing to refit (use it with a learned strategy)")
    if state is not None and fold_states is None:
        raise TradesimError("--walk-forward: this run loads one stored fitted state, and a walk-forward schedule needs one per fold")
    return plan_folds(data.sessions, test, config.walk_forward, config.train_window, config.embargo)


def _fit_fold(strategy: Strategy, data: MarketData, fold: Fold, dates: pd.DatetimeIndex, stored: dict[int, bytes] | None = None) -> dict[str, Any]:
    """Fit the strategy for one fold, on the view its schedule allows (or load the state stored for
    it), and describe what it fitted."""
    fitted = getattr(strategy, "fitted", None)
    before = len(fitted) if isinstance(fitted, list) else 0
    if stored is not None:
        if fold.number not in stored:
            raise TradesimError(f"fold {fold.number} (testing from {fold.test_first.date()}): no fitted state was stored for it")
        strategy.load_state(stored[fold.number])
    else:
        strategy.fit(fold.training_view(data))
    fitted = getattr(strategy, "fitted", None)
    if isinstance(fitted, list) and stored is not None:  # the stored state's own record of what it fitted last
        models = [{"id": item.get("id"), "loaded": True} for item in fitted[-1:] if isinstance(item, dict)]
    elif isinstance(fitted, list):
        models = [{"id": item.get("id"), "loaded": item.get("loaded")} for item in fitted[before:] if isinstance(item, dict)]
    else:
        models = [fitted] if isinstance(fitted, dict) else []
    training = getattr(strategy, "training_period", None)
    return {
        **fold.describe(),
        "training_period": None if training is None else list(training),
        "decisions": int(len(dates)),
        "first_decision": str(dates[0].date()) if len(dates) else None,
        "fitted_models": models,
    }


def fold_metrics(fold_records: list[dict[str, Any]], returns: pd.Series, risk_free: float) -> list[dict[str, Any]]:
    """Each fold with the metrics of the sessions its decisions earned: after its first test
    session's close, up to the next fold's."""
    starts = [pd.Timestamp(record["test_first"]) for record in fold_records]
    rows = []
    for number, record in enumerate(fold_records):
        earned = returns[returns.index > starts[number]]
        if number + 1 < len(starts):
            earned = earned[earned.index <= starts[number + 1]]
        measured = performance(earned, annualization=ANNUALIZATION, risk_free=risk_free) if len(earned) > 1 else {}
        rows.append({**record, "sessions": int(len(earned)), **measured})
    return rows


def walk_forward_note(config: RunConfig, fold_records: list[dict[str, Any]], reused: bool = False) -> str:
    window = "all earlier sessions" if config.train_window == "expanding" else f"the last {config.train_window} sessions"
    loaded = sum(1 for record in fold_records if record["fitted_models"] and all(m.get("loaded") for m in record["fitted_models"]))
    fitting = "nothing was fitted (the decisions were reused)" if reused else f"{len(fold_records) - loaded} folds were fitted now, {loaded} loaded the models stored for them"
    return (
        f"walk-forward: {len(fold_records)} folds, refit every {config.walk_forward} test sessions on {window} before each fold"
        f"{f' less an embargo of {config.embargo} sessions' if config.embargo else ''}; one stitched out-of-sample curve "
        f"(metrics.json 'folds'); {fitting}"
    )


def _decide(strategy: Strategy, data: MarketData, test: pd.DatetimeIndex, max_gross: float, folds: list[Fold] | None = None,
            stored: dict[int, bytes] | None = None):
    """The strategy's decisions over the test sessions: weights (decision dates x tickers), one log
    record per date and ticker, scores and predictions by date, the tickers a ranking left out, and
    with walk-forward folds, what each fold fitted (the strategy is refitted before each fold)."""
    dates = strategy.decision_dates(test)
    if len(dates) == 0:
        raise TradesimError(f"strategy {strategy.name} has no decision date between {test[0].date()} and {test[-1].date()}")
    if folds is None:
        batches, fold_records = [(None, dates)], None
    else:
        numbers = np.array(fold_of(folds, dates))
        batches = [(fold, dates[numbers == fold.number]) for fold in folds]
        fold_records = []
    decided = []
    for fold, chosen in batches:
        if fold is not None:
            fold_records.append(_fit_fold(strategy, data, fold, chosen, stored))
        decided += [(fold, date, decision) for date, decision in zip(chosen, strategy.decide_batch([data.view(date) for date in chosen]))]
    rows, decisions, scores, predictions = [], [], {}, {}
    left_out: dict[str, list[pd.Timestamp]] = {}
    listed = data.listed
    previous = dict.fromkeys(data.tickers, 0.0)
    for fold, date, decision in decided:
        check_weights(decision.weights, data.tickers, strategy.name, date, max_gross)
        row = {t: float(decision.weights.get(t, 0.0)) for t in data.tickers}
        rows.append(row)
        if decision.scores is not None:
            scores[date] = decision.scores
        if decision.predictions is not None:
            predictions[date] = decision.predictions
        judged = decision.scores if decision.scores is not None else decision.predictions
        if judged is not None:
            for ticker in listed.index[(listed["first"] <= date) & (listed["last"] >= date)]:
                if ticker not in judged:
                    left_out.setdefault(ticker, []).append(date)
        for ticker in data.tickers:
            decisions.append(
                {
                    "date": str(date.date()),
                    "ticker": ticker,
                    **({} if fold is None else {"fold": fold.number}),
                    **decision.log.get(ticker, {}),
                    "weight": row[ticker],
                    "action": order_action(previous[ticker], row[ticker]),
                }
            )
        previous = row
    weights = pd.DataFrame(rows, index=pd.DatetimeIndex(dates, name="date"), columns=list(data.tickers))
    return weights, decisions, scores, predictions, left_out, fold_records


def run_backtest(
    config: RunConfig,
    strategy_class: type[Strategy],
    progress: bool = True,
    state: bytes | None = None,
    on_stage: Callable[[str], None] | None = None,
    frame: pd.DataFrame | None = None,
    record_trial: bool = True,
    market: MarketData | None = None,
    sweep_cell: bool = False,
    llm_cache_path: Path | None = None,
    fold_states: dict[int, bytes] | None = None,
) -> BacktestResult:
    """`state`: a fitted state (`Strategy.state()`, e.g. a paper account's) loaded instead of fitting;
    `on_stage`: told "load", "fit", "decide" and "simulate" as each begins (progress bars);
    `frame`: the bars, when the config's data is IN_MEMORY; `record_trial`: add the run to the
    trial ledger (a paper account replaying its own sessions does not); `market`: the data, loaded
    already (a sweep's workers get it from the driver); `sweep_cell`: a sweep's cell, neither
    recorded nor deflated alone (the sweep does both for all its cells); `llm_cache_path`: the
    language-model cache to use instead of $TRADESIM_HOME's (a sweep worker's shard); `fold_states`:
    with a walk-forward schedule and `state` (fold 0's), the states later folds were fitted to (a
    walk-forward paper account's), loaded instead of fitting."""
    if (frame is None) != (config.data != IN_MEMORY) and market is None:
        raise TradesimError(f"data: {IN_MEMORY} means bars handed over as a DataFrame; give the frame, or a source name or path")
    results = []
    for seed in reversed(range(config.seed, config.seed + config.seeds)):  # the first seed last: its trial count sees them all
        seeded = dataclasses.replace(config, seed=seed)
        with seeded_global_random(seed):
            results.insert(0, _run_backtest(seeded, strategy_class, progress, state, on_stage, frame, record_trial and not sweep_cell, market, sweep_cell, llm_cache_path, fold_states))
    return results[0] if len(results) == 1 else with_seeds(config, results)


SEED_METRICS = (*RETURN_METRICS, *TRADING_METRICS, "ranking.rank_ic_mean", "prediction.accuracy", "prediction.mcc", "significance.deflated_sharpe")


def with_seeds(config: RunConfig, results: list[BacktestResult]) -> BacktestResult:
    """The first seed's run, with every seed's metrics (mean, standard deviation, values) in
    `metrics["seeds"]` and their equity curves (the report draws their band)."""
    first = results[0]
    tables = [Run(result=result).metrics for result in results]  # nested blocks under dotted names
    summary: dict[str, Any] = {}
    for name in SEED_METRICS:
        known = np.array([table.get(name, np.nan) for table in tables], dtype=float)
        if np.isnan(known).all():
            continue
        summary[name] = {
            "mean": float(np.nanmean(known)),
            "std": float(np.nanstd(known, ddof=1)) if np.isfinite(known).sum() > 1 else None,
            "values": [finite(value) for value in known],
        }
    seeds = list(range(config.seed, config.seed + config.seeds))
    first.metrics["seeds"] = {"seeds": seeds, "metrics": summary}
    first.seed_equity = pd.DataFrame({seed: result.simulation.equity for seed, result in zip(seeds, results)})
    spread = summary.get("sharpe")
    first.notes.append(
        f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]}) were run; the files are the first seed's, metrics.json 'seeds' holds every "
        f"seed's metrics" + (f" (Sharpe {spread['mean']:.2f} ± {spread['std']:.2f})" if spread and spread["std"] is not None else "")
    )
    return first


def _run_backtest(
    config: RunConfig,
    strategy_class: type[Strategy],
    progress: bool,
    state: bytes | None,
    on_stage: Callable[[str], None] | None,
    frame: pd.DataFrame | None,
    record_trial: bool,
    market: MarketData | None = None,
    sweep_cell: bool = False,
    llm_cache_path: Path | None = None,
    fold_states: dict[int, bytes] | None = None,
) -> BacktestResult:
    stage = on_stage or (lambda name: None)
    stage("load")
    started = time.perf_counter()
    runtime = Runtime(device=config.device, llm_cache=config.llm_cache, progress=progress, llm_cache_path=None if llm_cache_path is None else str(llm_cache_path))
    # Named tickers: parameters are checked before any data is read; `all`: once the source names them.
    strategy = strategy_class(config.tickers, config.params, config.seed, runtime) if config.tickers else None
    data = market if market is not None else load_market_data(
        config.data if frame is None else frame, config.tickers or ALL_TICKERS, config.start, config.end, config.news, config.cutoff, config.fundamentals
    )
    if strategy is None:
        strategy = strategy_class(data.tickers, config.params, config.seed, runtime)
    loaded = time.perf_counter()
    notes: list[str] = list(data.notes)
    fill = config.fill
    if fill == "next-open" and not data.has_ohlc:
        fill = "next-close"
        notes.append("the data has closes only: orders fill at the next session's close")
    if fill == "same-close":
        notes.insert(0, SAME_CLOSE_FLAG)
    strategy.runtime = dataclasses.replace(strategy.runtime, fill=fill)
    stage("fit")
    train_end, test, training = _test_sessions(data, strategy, config, notes)
    folds = _walk_forward_folds(data, strategy, config, test, state, fold_states)
    stored = None if folds is None or state is None else {**(fold_states or {}), 0: state}
    key = parts = record = None
    if config.reuse_decisions and state is None and config.llm_cache != "off":
        parts = pass_parts(config, strategy, data, fill)
        key = pass_key(parts)
        record = load_pass(key, parts, strategy.runtime)
    if record is None:
        if strategy.looks_ahead:
            strategy.reveal_future(data)
        if train_end is not None and folds is None:
            if state is None:
                strategy.fit(data.view(training[-1]))
            else:
                strategy.load_state(state)
    notes.append(quality_summary(check_data(data, test[0])))
    fitted = time.perf_counter()

    stage("decide")
    if record is None:
        weights, decisions, scores, predictions, left_out, fold_records = _decide(strategy, data, test, config.max_gross, folds, stored)
        if key is not None:
            store_pass(key, parts, {
                "weights": weights, "decisions": decisions, "scores": scores, "predictions": predictions, "left_out": left_out,
                "folds": fold_records, "strategy": strategy_record(strategy),
            })
    else:
        weights, decisions, scores, predictions, left_out = (record[name] for name in ("weights", "decisions", "scores", "predictions", "left_out"))
        fold_records = record.get("folds")
        for date, row in weights.iterrows():  # this run's gross limit, which is not part of the key
            check_weights(row.to_dict(), data.tickers, strategy.name, date, config.max_gross)
        strategy = ReplayedStrategy(strategy, record, key)
        notes.append(
            f"decisions reused from an identical pass of {record['created_at']} (strategy, parameters, data, dates, fill, seed, "
            f"code, libraries and models unchanged; {pass_path(key)}): only the trading was simulated again, no model was asked "
            "(--no-reuse-decisions decides again)"
        )
    dates = weights.index
    if left_out:
        notes.append(left_out_note(left_out, len(dates)))
    decided = time.perf_counter()

    stage("simulate")
    trading_costs = dict(fill=fill, cost_bps=config.cost_bps, slippage_bps=config.slippage_bps, capital=config.capital)
    open_ = data.bars["open"] if data.has_ohlc else None
    close = data.bars["close"]
    simulation = simulate(weights, close, open_, start=dates[0], **trading_costs)
    if simulation.unfilled.size:
        notes.append(
            f"the decision of {simulation.unfilled[-1].date()} has no next session in the data: it is logged, not filled"
        )
    benchmark = simulate(benchmark_weights(close, dates[0], test[-1]), close, open_, start=dates[0], **trading_costs)
    benchmark_name = f"buy-and-hold {data.tickers[0]}" if len(data.tickers) == 1 else "equal-weight buy-and-hold universe"
    if not simulation.skipped.empty:
        first = simulation.skipped.iloc[0]
        notes.append(
            f"{len(simulation.skipped)} orders had no fill price and were skipped (first: {first['ticker']} "
            f"on {first['date'].date()}, weight {first['weight']:g})"
        )
    if not simulation.filled_at_close.empty:
        first = simulation.filled_at_close.iloc[0]
        notes.append(
            f"{len(simulation.filled_at_close)} next-open orders met an empty open and filled at that session's close "
            f"(first: {first['ticker']} on {first['date'].date()}; trades.csv note '{NO_OPEN}')"
        )
    if simulation.ruined is not None:
        notes.insert(0, (
            f"RUINED on {simulation.ruined.date()}: equity fell to zero or below at that close; every position was closed "
            "there and equity is 0 from then on (metrics cover the run up to that day)"
        ))
    for ticker, last in simulation.delisted.items():
        notes.append(f"{ticker}'s data ends on {last.date()}: any position was closed at that close (trades.csv note 'delisted')")
    simulated = time.perf_counter()

    def measure(result: SimulationResult) -> dict[str, Any]:
        return {
            **performance(result.returns, annualization=ANNUALIZATION, risk_free=config.risk_free),
            **trading(result.trades, result.equity, result.gross_exposure, annualization=ANNUALIZATION),
        }

    notes.extend(strategy.notes)
    quality, forecasts = _forecast_quality(data, fill, strategy.horizon, scores, predictions)
    flags = [text for text, flagged in ((strategy.look_ahead_reason, strategy.looks_ahead), (SAME_CLOSE_FLAG, fill == "same-close")) if flagged]
    period = {"first_decision": str(dates[0].date()), "last_session": str(simulation.equity.index[-1].date()), "sessions": int(len(simulation.equity))}
    identity = TrialIdentity(
        data.fingerprint, data.tickers, period["first_decision"], period["last_session"], strategy.label,
        {"fill": fill, "train_end": None if train_end is None else str(train_end.date()), "settings": strategy.settings.as_dict()},
    )
    assessing = time.perf_counter()
    evidence = assess(
        config, simulation.returns, benchmark.returns, forecasts, annualization=ANNUALIZATION, identity=identity,
        model_specs=[model["spec"] for model in strategy.models()], decision_dates=dates, record=record_trial, deflate=not sweep_cell,
    )
    assessed = time.perf_counter() - assessing
    flags += evidence.flags
    notes[:0] = evidence.flags
    notes.extend(evidence.notes)
    if evidence.labels:
        for row in decisions:
            row["model_cutoff"] = {spec: labels[row["date"]] for spec, labels in evidence.labels.items()}
    metrics = {
        **measure(simulation),
        "benchmark": {"name": benchmark_name, **measure(benchmark)},
        "annualization": ANNUALIZATION,
        "risk_free": config.risk_free,
        "look_ahead": bool(flags),
        "look_ahead_reasons": flags,
        "fill": fill,
        "ruined": None if simulation.ruined is None else str(simulation.ruined.date()),
        **quality,
        "period": period,
        "significance": evidence.significance,
        "by_model_cutoff": evidence.by_model_cutoff,
    }
    if fold_records is not None:
        metrics["walk_forward"] = {"every": config.walk_forward, "train_window": config.train_window, "embargo": config.embargo}
        metrics["folds"] = fold_metrics(fold_records, simulation.returns, config.risk_free)
        notes.append(walk_forward_note(config, fold_records, reused=record is not None))
    return BacktestResult(
        config=config,
        strategy=strategy,
        data=data,
        fill=fill,
        train_end=train_end,
        weights=weights,
        decisions=decisions,
        simulation=simulation,
        benchmark=benchmark,
        metrics=metrics,
        notes=notes,
        timings={
            "load_s": loaded - started,
            "fit_s": fitted - loaded,
            "decide_s": decided - fitted,
            "simulate_s": simulated - decided,
            "evidence_s": assessed,
            "total_s": time.perf_counter() - started,
        },
    )


def backtest(
    strategy: str | type[Strategy] | None = None,
    tickers: str | Iterable[str] | None = None,
    *,
    ticker: str | None = None,
    config: str | Path | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    params: dict[str, Any] | None = None,
    **options: Any,
) -> Run:
    """Run a backtest from Python, with the names of `tradesim backtest`'s flags (`data=`,
    `train_end=`, `fill=`, `cost_bps=` ...; `config=` a TOML file) and the strategy's own
    parameters by name (`lookback=60`, `router="minilm"`), checked the same way. `strategy`: a
    registered name or a Strategy subclass of your own (registered or not); `data=`: a source name,
    a file or directory, or a long DataFrame of bars (date, ticker, OHLCV, optional adjusted close,
    with the names and aliases files accept; every ticker of it unless `tickers` says otherwise).
    Returns the run, in memory, or written to `out` (and read from there) when given."""
    frame = options.get("data") if isinstance(options.get("data"), pd.DataFrame) else None
    if frame is not None:
        options["data"] = IN_MEMORY
        if ticker is None and tickers is None:
            tickers = ALL_TICKERS
    if ticker is not None and tickers is not None:
        raise TradesimError("ticker and tickers: give one of them, not both")
    chosen = ticker if ticker is not None else tickers
    if chosen is not None and not isinstance(chosen, str):
        chosen = ",".join(chosen)
    run_options, strategy_params = _split_options(options)
    values = {"strategy": strategy, "tickers": chosen, "out": None if out is None else str(out), **run_options}
    resolved, strategy_class = configure(config, values, {**(params or {}), **strategy_params})
    if resolved.out:
        check_run_dir(Path(resolved.out), overwrite)
    bar = _StageBar(progress)
    try:
        result = run_backtest(resolved, strategy_class, progress=progress, on_stage=bar.stage, frame=frame)
    finally:
        bar.close()
    if resolved.out:
        return Run(write_run_directory(result, Path(resolved.out), argv=None, overwrite=overwrite))
    return Run(result=result)


def configure(
    config_path: str | Path | None, options: dict[str, Any], params: dict[str, Any] | Callable[[type], dict[str, Any]]
) -> tuple[RunConfig, type]:
    """A checked RunConfig and its strategy class from a config file (or none), run options (None:
    not given) and the strategy's parameters by name (or a function of its class giving them, for
    flags that only the class can read): what `tradesim backtest` and `tradesim.backtest()` both do
    before running."""
    file_values = read_toml(Path(config_path)) if config_path else {}
    chosen = options.get("strategy") or file_values.get("strategy")
    if not chosen:
        raise TradesimError("--strategy: no strategy given (see `tradesim strategies`)")
    strategy_class = plugins.strategy_class(chosen)
    options = {**options, "strategy": strategy_class.name}
    given = params(strategy_class) if callable(params) else params
    config = resolve(file_values, {**options, "params": given}, origin=str(config_path) if config_path else "options")
    return dataclasses.replace(config, params=strategy_class.resolve_params(config.params)), strategy_class


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    run_keys = set(KEYS) - {"strategy", "tickers", "ticker", "out", "params"}
    return {k: v for k, v in options.items() if k in run_keys}, {k: v for k, v in options.items() if k not in run_keys}


class _StageBar:
    """A progress bar over the backtest's stages (a widget in Jupyter, text in a terminal)."""

    STAGES = ("load", "fit", "decide", "simulate")

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm  # its widget imports Jupyter's machinery: only when shown

            self.bar = tqdm(total=len(self.STAGES), desc="backtest", leave=False)

    def stage(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(name)
            if name != self.STAGES[0]:
                self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
