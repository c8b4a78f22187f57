"""Running a sweep: its cells as ordinary run directories under `DIR/cells/<id>/`, resumable, and
its results: `DIR/results.parquet` (one row per cell: varied values, metrics, intervals, the
deflated Sharpe counting every cell) and `DIR/sweep.json` (the study, the probability of backtest
overfitting, the executor and timings).

A cell directory appears by one rename when all its files are written, so a cell is complete or
absent; a rerun skips complete cells. The driver alone writes `DIR`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from tradesim.config import ALL_TICKERS
from tradesim.errors import TradesimError
from tradesim.sweep.executors import CellOutcome, CellTask, default_workers, executor
from tradesim.sweep.spec import Cell, Sweep, joined, load_sweep

RESULT_METRICS = (
    "total_return", "annual_return", "sharpe", "sharpe_low", "sharpe_high", "sortino", "max_drawdown", "n_trades", "exposure",
    "accuracy", "mcc", "rank_ic_mean", "benchmark_sharpe",
)
SORTABLE = (*RESULT_METRICS, "deflated_sharpe")
SNAPSHOTS = ".snapshots"


@dataclass
class SweepOutcome:
    sweep: Sweep
    results: pd.DataFrame
    summary: dict[str, Any]
    ran: list[CellOutcome]
    skipped: int


def cell_dir(out: Path, cell_id: str) -> Path:
    return out / "cells" / cell_id


def is_complete(out: Path, cell_id: str) -> bool:
    """A cell directory exists only once all its files were written (it appears by a rename)."""
    return (cell_dir(out, cell_id) / "run.json").is_file()


def check_sweep_dir(out: Path, sweep: Sweep) -> str | None:
    """A new directory, or one a sweep wrote (resumed, or extended by a spec with other cells: a
    cell's id is its configuration, so the complete cells both specs have are reused); never
    someone else's. Returns the study the directory held before, when it was another."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise TradesimError(f"--out {out}: exists and is not a directory")
    recorded = out / "sweep.json"
    if recorded.is_file():
        study = _read_json(recorded).get("study")
        if not study:
            raise TradesimError(f"--out {out}: its sweep.json is not a tradesim sweep's; choose another directory")
        return None if study == sweep.study else study
    strangers = sorted(p.name for p in out.iterdir() if p.name not in ("cells", SNAPSHOTS))
    if strangers:
        raise TradesimError(f"--out {out}: already exists and holds {', '.join(strangers[:3])}, not a sweep of this spec; choose another directory")


def _data_key(config) -> tuple:
    return (config.data, config.tickers, config.start, config.end, config.news, config.cutoff, config.fundamentals)


def load_datasets(cells: list[Cell]) -> tuple[dict[tuple, str], dict[str, Any]]:
    """The market data of the cells, each distinct (source, tickers, dates) loaded once by the driver:
    (data key -> fingerprint, fingerprint -> MarketData)."""
    from tradesim.market.data import load_market_data

    keys: dict[tuple, str] = {}
    datasets: dict[str, Any] = {}
    for cell in cells:
        key = _data_key(cell.config)
        if key in keys:
            continue
        c = cell.config
        data = load_market_data(c.data, c.tickers or ALL_TICKERS, c.start, c.end, c.news, c.cutoff, c.fundamentals)
        keys[key] = data.fingerprint
        datasets[data.fingerprint] = data
    return keys, datasets


def write_cell(out: Path, outcome: CellOutcome) -> Path:
    """Write a finished cell's files; the directory appears by one rename (complete or absent)."""
    from tradesim.rundir import staged_directory

    target = cell_dir(out, outcome.id)
    with staged_directory(target, lambda: None) as staging:
        for name, content in outcome.files.items():
            (staging / name).write_bytes(content)
    return target


def prefetch(cells: list[Cell], keys: dict[tuple, str], datasets: dict[str, Any], echo: Callable[[str], None]) -> dict[str, Any]:
    """A dry pass of every cell in this process that gathers the prompts its models would be asked
    (answered with placeholders meanwhile, nothing of it kept but fitted models, which are content
    addressed), then each model scores its distinct prompts once, in batches, into the cache: the
    cells then run as cache hits."""
    import dataclasses

    from tradesim.backtesting import run_backtest
    from tradesim.llm.model import collecting

    started = time.perf_counter()
    failed = 0
    with collecting() as collector:
        for cell in cells:
            config = dataclasses.replace(cell.config, reuse_decisions=False)
            try:
                run_backtest(config, cell.strategy_class, progress=False, market=datasets[keys[_data_key(config)]], sweep_cell=True)
            except Exception:  # noqa: BLE001 - the placeholders may lead a cell astray; its real run decides
                failed += 1
    gathered = time.perf_counter()
    scored = collector.score()
    summary = {
        "prompts": collector.prompts, "models": scored, "dry_pass_failed": failed,
        "gather_s": round(gathered - started, 3), "score_s": round(time.perf_counter() - gathered, 3),
    }
    echo(
        f"prefetch: {collector.prompts} distinct prompts gathered from {len(cells)} cells in {gathered - started:.1f} s, scored in "
        f"{summary['score_s']:.1f} s (" + "; ".join(f"{spec}: {row['model_calls']} model calls" for spec, row in scored.items()) + ")"
        + (f"; {failed} cells failed on the placeholder answers and were not fully gathered" if failed else "")
    )
    return summary


def _cache_snapshot(out: Path, executor_name: str) -> tuple[Any, str]:
    """The driver's language-model cache as the workers' shards start from it: a file beside the
    cells (processes read it), its bytes otherwise (serial; Ray ships them through its object store)."""
    import secrets

    from tradesim.llm.cache import DecisionCache

    target = out / SNAPSHOTS / "llm-cache.sqlite"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    DecisionCache(mode="readonly").copy_to(target)
    return (str(target) if executor_name == "process" else target.read_bytes()), secrets.token_hex(8)


def run_sweep(
    spec: Path, out: Path, *, executor_name: str = "process", workers: int | None = None, ray_address: str | None = None,
    argv: list[str] | None = None, echo: Callable[[str], None] = lambda line: None, prefetch_prompts: bool = False,
    cache_shards: bool | None = None,
) -> SweepOutcome:
    """Run every cell of the spec that `out` does not hold complete, then write the results.

    `prefetch_prompts`: first gather every cell's prompts and score them once per model (`prefetch`).
    `cache_shards` (default: with Ray): workers read a snapshot of this process's language-model
    cache and write new answers to shards of their own, which the driver merges into its cache; a
    request answered two ways is reported as nondeterminism."""
    sweep = load_sweep(Path(spec))
    out = Path(out)
    before = check_sweep_dir(out, sweep)
    run = executor(executor_name)
    workers = workers or default_workers()
    if workers < 1:
        raise TradesimError(f"--workers: expected at least 1, got {workers}")
    pending = [cell for cell in sweep.cells if not is_complete(out, cell.id)]
    skipped = len(sweep.cells) - len(pending)
    started = time.perf_counter()
    keys, datasets = load_datasets(pending) if pending else ({}, {})  # bad data is refused before anything is written
    loaded = time.perf_counter()
    (out / "cells").mkdir(parents=True, exist_ok=True)
    _write_json(out / "sweep.json", {**_read_json(out / "sweep.json"), "spec": str(spec), "study": sweep.study, "cells": len(sweep.cells)})
    if before:
        echo(f"{out} held the sweep of study {before}: the complete cells this spec shares with it are reused; the results are this spec's")
    echo(f"sweep {sweep.study}: {len(sweep.cells)} cells, {skipped} complete already, {len(pending)} to run on {executor_name}"
         + ("" if executor_name == "serial" else f" ({workers} workers)"))
    prefetched = prefetch(pending, keys, datasets, echo) if prefetch_prompts and pending else None
    shards = (executor_name == "ray") if cache_shards is None else cache_shards
    snapshot, snapshot_id = _cache_snapshot(out, executor_name) if shards and pending else (None, None)
    tasks = [
        CellTask(cell.id, cell.config, cell.config.strategy, keys[_data_key(cell.config)], datasets[keys[_data_key(cell.config)]],
                 argv=tuple(argv or ()), cache_snapshot=snapshot, cache_snapshot_id=snapshot_id)
        for cell in pending
    ]
    ran = []
    merged, conflicts = 0, []
    for outcome in run(tasks, workers, snapshot_dir=out / SNAPSHOTS, datasets=datasets, ray_address=ray_address):
        ran.append(outcome)
        cell = sweep.cell(outcome.id)
        if outcome.answers:
            added, found = _merge_answers(outcome)
            merged += added
            conflicts += found
        if outcome.files is not None:
            write_cell(out, outcome)
            echo(f"[{len(ran)}/{len(tasks)}] {outcome.id} {cell.label}: done in {outcome.seconds:.1f} s")
        else:
            echo(f"[{len(ran)}/{len(tasks)}] {outcome.id} {cell.label}: FAILED: {outcome.error}")
    finished = time.perf_counter()
    shutil.rmtree(out / SNAPSHOTS, ignore_errors=True)
    failures = {o.id: o.error for o in ran if o.files is None}
    results, summary = collect_results(sweep, out, failures)
    if conflicts:
        echo(
            f"NONDETERMINISM: {len(conflicts)} language-model requests were answered two different ways (by two workers, or a worker and this cache) "
            f"(first: {conflicts[0]['model']} {conflicts[0]['kind']} {conflicts[0]['key'][:12]}); the first answer was kept (sweep.json 'llm_cache')"
        )
    summary.update({
        "prefetch": prefetched,
        "llm_cache": {"shards": shards, "merged": merged, "conflicts": conflicts} if shards else {"shards": False},
        "executor": executor_name,
        "workers": 1 if executor_name == "serial" else workers,
        "ran": len(ran),
        "skipped": skipped,
        "failed": len(failures),
        "timings": {"load_s": round(loaded - started, 3), "cells_s": round(finished - loaded, 3),
                    "cell_s": [round(o.seconds, 3) for o in ran]},
    })
    _write_results(out, results, summary)
    _write_json(out / "sweep.json", summary)
    return SweepOutcome(sweep, results, summary, ran, skipped)


def _merge_answers(outcome: CellOutcome) -> tuple[int, list[dict[str, Any]]]:
    from tradesim.llm.cache import DecisionCache

    cache = DecisionCache()
    try:
        return cache.merge(outcome.answers, origin=outcome.worker)
    finally:
        cache.close()


def collect_results(sweep: Sweep, out: Path, failures: dict[str, str] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per cell (complete, failed or missing), the complete ones recorded as the study's
    trials and their Sharpes deflated by all of them; the study's PBO."""
    from tradesim.evidence import trials
    from tradesim.runs import Run

    failures = failures or {}
    rows, runs = [], {}
    for cell in sweep.cells:
        row: dict[str, Any] = {"cell": cell.id, **{key: joined(cell.varied.get(key)) for key in sweep.varied}}
        if is_complete(out, cell.id):
            run = Run(cell_dir(out, cell.id))
            runs[cell.id] = run
            row.update(status="complete", **_metrics_row(run.results))
        else:
            row["status"] = f"failed: {failures[cell.id]}" if cell.id in failures else "missing"
        rows.append(row)
    study, description = trials.study_of(sweep.study, "", (), "", "")
    description = {**description, "sweep": str(sweep.path), "cells": len(sweep.cells)}
    identities = {cell_id: trials.trial_of(run.info["config"], run.info["data"]["fingerprint"], {"cell": cell_id}) for cell_id, run in runs.items()}
    for cell_id, run in runs.items():
        sharpe = (run.results.get("significance") or {}).get("sharpe") or {}
        trials.record(study, description, identities[cell_id], run.label, run.info["config"], run.daily_returns, sharpe.get("value"), sharpe.get("interval"))
    known = trials.trials(study)
    for row in rows:
        run = runs.get(row["cell"])
        if run is None:
            continue
        risk_free = run.info["config"]["risk_free"] / run.results["annualization"]
        deflated = trials.deflation_of(identities[row["cell"]], run.label, run.daily_returns, risk_free, known)
        row.update(deflated_sharpe=deflated["deflated_sharpe"], trials=deflated["trials"], trial_rank=deflated["rank"])
    frame = pd.DataFrame(rows)
    for key in sweep.varied:  # one type per column: `expanding` and 504 are both shown as text
        if len({type(value) for value in frame[key].dropna()}) > 1:
            frame[key] = frame[key].map(lambda value: None if value is None else str(value))
    summary: dict[str, Any] = {"spec": str(sweep.path), "study": sweep.study, "cells": len(sweep.cells), "complete": len(runs), "varied": sweep.varied}
    summary["trials"] = len(known)
    try:
        summary["pbo"] = trials.probability_of_backtest_overfitting(trials.returns_matrix(known)) if len(known) >= 2 else None
        if summary["pbo"] is None:
            summary["pbo_note"] = "fewer than 2 complete cells: no probability of backtest overfitting"
    except TradesimError as error:
        summary["pbo"] = None
        summary["pbo_note"] = str(error).removeprefix("--pbo: ")
    return frame, summary


def _metrics_row(results: dict[str, Any]) -> dict[str, Any]:
    sharpe = (results.get("significance") or {}).get("sharpe") or {}
    interval = sharpe.get("interval") or [None, None]
    return {
        "total_return": results.get("total_return"),
        "annual_return": results.get("annual_return"),
        "sharpe": results.get("sharpe"),
        "sharpe_low": interval[0],
        "sharpe_high": interval[1],
        "sortino": results.get("sortino"),
        "max_drawdown": results.get("max_drawdown"),
        "n_trades": results.get("n_trades"),
        "exposure": results.get("exposure"),
        "accuracy": (results.get("prediction") or {}).get("accuracy"),
        "mcc": (results.get("prediction") or {}).get("mcc"),
        "rank_ic_mean": (results.get("ranking") or {}).get("rank_ic_mean"),
        "benchmark_sharpe": (results.get("benchmark") or {}).get("sharpe"),
        "folds": len(results["folds"]) if "folds" in results else None,
    }


def sorted_results(results: pd.DataFrame, by: str) -> pd.DataFrame:
    if by not in SORTABLE:
        raise TradesimError(f"--sort {by!r}: expected one of {', '.join(SORTABLE)}")
    if by not in results:
        return results
    return results.sort_values(by, ascending=False, na_position="last", kind="stable")


def _write_results(out: Path, results: pd.DataFrame, summary: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(results, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"tradesim": json.dumps(summary, default=str).encode()})
    partial = out / f".results.parquet.{os.getpid()}"
    pq.write_table(table, partial)
    os.replace(partial, out / "results.parquet")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, values: dict[str, Any]) -> None:
    from tradesim.paper.ledger import write_atomically

    write_atomically(path, json.dumps(values, indent=2, default=str) + "\n")


def results_table(results: pd.DataFrame, summary: dict[str, Any], sort: str = "sharpe", limit: int | None = None) -> str:
    """The printed table: one line per cell, best first, with the Sharpe's 95% interval and the
    deflated Sharpe; then what the study's DSR and PBO say."""
    from tradesim.metrics import format_metric

    shown = sorted_results(results, sort)
    if limit:
        shown = shown.head(limit)
    varied = [key for key in summary.get("varied", []) if key in shown]
    header = ["cell", *varied, "sharpe", "95% interval", "total_return", "max_drawdown", "DSR", "status"]
    lines = []
    for row in shown.to_dict("records"):
        complete = row.get("status") == "complete"
        interval = f"[{row['sharpe_low']:.2f}, {row['sharpe_high']:.2f}]" if complete and _finite(row.get("sharpe_low")) else ""
        lines.append([
            row["cell"], *(str(row[key]) for key in varied),
            format_metric("sharpe", row.get("sharpe")) if complete else "", interval,
            format_metric("total_return", row.get("total_return")) if complete else "",
            format_metric("max_drawdown", row.get("max_drawdown")) if complete else "",
            f"{row['deflated_sharpe']:.2f}" if complete and _finite(row.get("deflated_sharpe")) else "",
            "" if complete else str(row["status"])[:60],
        ])
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) if lines else len(header[i]) for i in range(len(header))]
    text = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    text += ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines]
    best = shown[shown["status"] == "complete"].head(1)
    if len(best):
        b = best.iloc[0]
        text.append(
            f"best by {sort}: cell {b['cell']} — deflated Sharpe {b['deflated_sharpe']:.2f} counting all {int(b['trials'])} trials of study "
            f"{summary['study']} (the probability its Sharpe reflects skill, not the luck of picking the best of them)"
        )
    pbo = summary.get("pbo")
    if pbo:
        text.append(
            f"probability of backtest overfitting {pbo['pbo']:.2f} (CSCV, {pbo['splits']} blocks, {pbo['combinations']} splits of "
            f"{pbo['dates']} common dates): how often the in-sample best cell ranked at or below the median out of sample"
        )
    elif summary.get("pbo_note"):
        text.append(f"probability of backtest overfitting: n/a ({summary['pbo_note']})")
    return "\n".join(text)


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and np.isfinite(value)


def list_cells(spec: Path) -> str:
    """One line per cell: its id and varied values (nothing is run)."""
    sweep = load_sweep(Path(spec))
    lines = [f"{cell.id}  {cell.label}" for cell in sweep.cells]
    lines.append(f"{len(sweep.cells)} cells; study {sweep.study}")
    return "\n".join(lines)
