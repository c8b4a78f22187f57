"""Where a sweep's cells run: in this process (`serial`), on local processes (`process`), or on a
Ray cluster (`ray`). Every executor runs the same `run_cell` on the same inputs and hands back the
cell's files; only the driver writes the sweep's directory, so a worker never leaves half a cell.

The driver loads the market data once per distinct (source, tickers, dates) and ships it: in the
task itself (serial), as a snapshot file the processes read once each (process), or through Ray's
object store (ray). A worker recomputes the data's fingerprint and refuses data that differs from
the driver's; workers never download.
"""

from __future__ import annotations

import atexit
import os
import pickle
import shutil
import socket
import tempfile
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator

from tradesim.config import RunConfig
from tradesim.errors import TradesimError

EXECUTORS = ("serial", "process", "ray")
# Ray replaces a loopback node address with the machine's external one unless this is 0; usage
# statistics are not sent. Set in the driver before Ray starts, and so in every worker it starts.
RAY_ENVIRONMENT = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass(frozen=True)
class CellTask:
    id: str
    config: RunConfig
    strategy: str  # the strategy's registered name: workers find it through the plug-in registry
    fingerprint: str  # the data's, as the driver loaded it
    data: Any = None  # the MarketData (serial), an object reference (Ray), or None with a snapshot
    snapshot: str | None = None  # a pickle of the MarketData (process)
    argv: tuple[str, ...] = ()
    # With cache shards: the driver's language-model cache as bytes (or a file of them), copied once
    # per worker process into a shard of its own; the cell's new answers go back to the driver.
    cache_snapshot: Any = None
    cache_snapshot_id: str | None = None


@dataclass(frozen=True)
class CellOutcome:
    id: str
    files: dict[str, bytes] | None  # the run directory's files; None when the cell failed
    error: str | None
    seconds: float
    worker: str
    answers: tuple = ()  # with cache shards: the entries this cell added to its worker's shard


_SNAPSHOTS: dict[str, Any] = {}  # per worker process: a snapshot is read once
_SHARDS: dict[str, list] = {}  # per worker process: snapshot id -> [its shard's path, the last row handed back]


def _shard(task: CellTask) -> Path:
    """This worker's cache shard: a copy of the driver's cache made once per process, on local disk
    (a SQLite file must not be shared over a network file system)."""
    from tradesim.llm.cache import DecisionCache

    if task.cache_snapshot_id not in _SHARDS:
        directory = tempfile.mkdtemp(prefix="tradesim-shard-")
        atexit.register(shutil.rmtree, directory, True)
        path = Path(directory) / "llm-cache.sqlite"
        snapshot = task.cache_snapshot
        path.write_bytes(Path(snapshot).read_bytes() if isinstance(snapshot, str) else snapshot)
        cache = DecisionCache(path)
        _SHARDS[task.cache_snapshot_id] = [path, cache.last_row()]
        cache.close()
    return _SHARDS[task.cache_snapshot_id][0]


def _new_answers(task: CellTask) -> tuple:
    from tradesim.llm.cache import DecisionCache

    path, last = _SHARDS[task.cache_snapshot_id]
    cache = DecisionCache(path)
    try:
        rows = cache.rows_after(last)
    finally:
        cache.close()
    if rows:
        _SHARDS[task.cache_snapshot_id][1] = rows[-1][0]
    return tuple(rows)


def fresh_fingerprint(data) -> str:
    """The data's fingerprint computed again from its arrays (not a value cached with the object)."""
    from tradesim.market.data import MarketData

    return MarketData.fingerprint.func(data)


def _task_data(task: CellTask):
    data = task.data
    if data is None:
        data = _SNAPSHOTS.get(task.snapshot)
        if data is None:
            with open(task.snapshot, "rb") as handle:
                data = _SNAPSHOTS.setdefault(task.snapshot, pickle.load(handle))
    found = fresh_fingerprint(data)
    if found != task.fingerprint:
        raise TradesimError(
            f"cell {task.id}: the market data this worker received has fingerprint {found[:12]}, the driver's is "
            f"{task.fingerprint[:12]}; refusing to run on different data"
        )
    return data


def run_cell(task: CellTask) -> CellOutcome:
    """One cell: an ordinary backtest on the shipped data, written to a scratch directory whose
    files are handed back to the driver."""
    from tradesim import plugins
    from tradesim.backtesting import run_backtest
    from tradesim.rundir import write_run_directory

    started = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        data = _task_data(task)
        shard = _shard(task) if task.cache_snapshot_id else None
        result = run_backtest(
            task.config, plugins.strategy_class(task.strategy), progress=False, market=data, sweep_cell=True, llm_cache_path=shard
        )
        with tempfile.TemporaryDirectory(prefix="tradesim-cell-") as scratch:
            out = write_run_directory(result, Path(scratch) / "cell", argv=list(task.argv))
            files = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
        answers = _new_answers(task) if shard else ()
    except TradesimError as error:
        return CellOutcome(task.id, None, str(error), time.perf_counter() - started, worker)
    except Exception as error:  # noqa: BLE001 - one broken cell must not stop the others; its traceback is kept
        detail = traceback.format_exc(limit=-3).strip().splitlines()
        return CellOutcome(task.id, None, f"{type(error).__name__}: {error} ({' | '.join(detail[-3:])})", time.perf_counter() - started, worker)
    return CellOutcome(task.id, files, None, time.perf_counter() - started, worker, answers)


def run_serial(tasks: list[CellTask], workers: int, **_: Any) -> Iterator[CellOutcome]:
    for task in tasks:
        yield run_cell(task)


def run_processes(tasks: list[CellTask], workers: int, snapshot_dir: Path, datasets: dict[str, Any], **_: Any) -> Iterator[CellOutcome]:
    """Cells on `workers` local processes (spawned: nothing of the driver's state is inherited).
    The data goes through one snapshot file per dataset, read once by each process."""
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fingerprint, data in datasets.items():
        path = snapshot_dir / f"{fingerprint[:16]}.pickle"
        if not path.exists():
            partial = path.with_name(f".{path.name}.{os.getpid()}")
            with open(partial, "wb") as handle:
                pickle.dump(data, handle, protocol=5)
            os.replace(partial, path)
        paths[fingerprint] = str(path)
    shipped = [replace(task, data=None, snapshot=paths[task.fingerprint]) for task in tasks]
    threads = max(1, default_workers() // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_share_cores, initargs=(threads,)) as pool:
        pending = {pool.submit(run_cell, task) for task in shipped}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()


def _share_cores(threads: int) -> None:
    """A worker process computes on its share of the cores (as Ray's workers do: one thread per
    CPU they hold), not on all of them at once beside the others."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))


def ray_environment() -> None:
    """What every process of a Ray cluster started from here must have (see RAY_ENVIRONMENT)."""
    for key, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def start_ray(workers: int, address: str | None):
    """Join the cluster at `address`, or start a local one with `workers` CPUs (never attaching to
    whatever cluster a bare `ray.init()` would find). Returns (ray, whether we started it)."""
    ray_environment()
    try:
        import ray
    except ImportError:
        raise TradesimError("--executor ray: Ray is not installed (pip install 'tradesim[ray]')") from None
    if ray.is_initialized():
        return ray, False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return ray, True


def run_ray(tasks: list[CellTask], workers: int, datasets: dict[str, Any], ray_address: str | None = None, **_: Any) -> Iterator[CellOutcome]:
    """Cells as Ray tasks (one CPU each); each dataset is put in the object store once."""
    ray, started = start_ray(workers, ray_address)
    try:
        references = {fingerprint: ray.put(data) for fingerprint, data in datasets.items()}
        snapshot = ray.put(tasks[0].cache_snapshot) if tasks and tasks[0].cache_snapshot is not None else None
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
        pending = [remote.remote(replace(task, data=None, cache_snapshot=None), references[task.fingerprint], snapshot) for task in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for reference in done:
                yield ray.get(reference)
    finally:
        if started:
            ray.shutdown()


def _ray_cell(task: CellTask, data, cache_snapshot) -> CellOutcome:
    return run_cell(replace(task, data=data, cache_snapshot=cache_snapshot))


def executor(name: str):
    if name not in EXECUTORS:
        raise TradesimError(f"--executor {name!r}: expected one of {', '.join(EXECUTORS)}")
    return {"serial": run_serial, "process": run_processes, "ray": run_ray}[name]


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
