"""Sweep executors: the same grid run serially, on processes and on a local Ray, in one process.

1. 64 cells of momentum (lookback x top-K x rebalancing) on the 100 S&P tickers of
   ../shared/data/sp500 (2016-2021), decision reuse off so that every cell decides;
2. a smaller LLMoE grid (4 cells: expert training days x threshold on the embedded StockNet
   sample, router `minilm`, the offline model): the cells share their router prompts, so after
   the first cell they are cache hits.

Each executor gets its own empty $TRADESIM_HOME (no cache, stored model or decision pass of
another executor answers it). Prints each executor's wall time, its speed-up over serial (target
for processes and Ray with 2 workers: at least 1.7x on 2 cores), and its overhead per cell: the
workers' time that was not spent inside cells, per cell (process start-up, shipping the data,
Ray's task scheduling, writing the cell; with --prefetch, the dry pass and the scoring too). The
LLMoE grid also runs each parallel executor with --prefetch: without it, both workers score the
same cold prompts at once.

    python benchmarks/sweep.py [--cells 64] [--workers 2] [--executors serial,process,ray] [--no-llmoe]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

SP500 = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sp500" / "sp500_top100_daily_2012_2021.csv"

MOMENTUM = """
[base]
strategy = "momentum"
tickers = "all"
data = "{data}"
start = "2016-01-01"
reuse_decisions = false
cost_bps = 5

[grid.params]
lookback = {lookbacks}
top_k = [5, 10, 20, 50]
rebalance_every = [1, 5]
"""

LLMOE = """
[base]
strategy = "llmoe"
tickers = "MSFT"
reuse_decisions = false
[base.params]
router = "minilm"

[grid.params]
min_expert_days = [40, 60]
threshold = [0.5, 0.55]
"""


def run(spec: Path, executor: str, workers: int, root: Path, prefetch: bool) -> tuple[float, list[float], int]:
    from tradesim.sweep.sweep import run_sweep

    name = f"{executor}{'-prefetch' if prefetch else ''}-{spec.stem}"
    os.environ["TRADESIM_HOME"] = str(root / f"home-{name}")
    started = time.perf_counter()
    outcome = run_sweep(spec, root / f"out-{name}", executor_name=executor, workers=workers, prefetch_prompts=prefetch)
    wall = time.perf_counter() - started
    failed = [o for o in outcome.ran if o.files is None]
    if failed:
        raise SystemExit(f"{len(failed)} cells failed: {failed[0].error}")
    return wall, [o.seconds for o in outcome.ran], len(outcome.ran)


def report(name: str, spec: Path, executors: list[str], workers: int, root: Path) -> None:
    """`executors`: names, `+prefetch` after one to gather and score the prompts first."""
    print(f"\n{name}")
    print(f"{'executor':<17} {'workers':>7} {'cells':>5} {'wall s':>8} {'in cells s':>10} {'speed-up':>8} {'overhead/cell s':>15}")
    serial = None
    for variant in executors:
        executor, _, extra = variant.partition("+")
        used = 1 if executor == "serial" else workers
        wall, seconds, cells = run(spec, executor, used, root, prefetch=extra == "prefetch")
        serial = serial if serial is not None or variant != "serial" else wall
        speedup = f"{serial / wall:.2f}x" if serial else "n/a"
        overhead = (used * wall - sum(seconds)) / cells
        print(f"{variant:<17} {used:>7} {cells:>5} {wall:>8.1f} {sum(seconds):>10.1f} {speedup:>8} {overhead:>15.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=64, choices=(8, 16, 32, 64), help="momentum cells (lookbacks x 8)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executors", default="serial,process,ray")
    parser.add_argument("--no-llmoe", action="store_true", help="skip the LLMoE grid")
    parser.add_argument("--no-momentum", action="store_true", help="skip the momentum grid")
    args = parser.parse_args()
    from tradesim.sweep.executors import ray_environment

    ray_environment()
    executors = args.executors.split(",")
    if executors[0] != "serial":
        raise SystemExit("--executors: start with serial (the baseline of the speed-ups)")
    if not SP500.is_file():
        raise SystemExit(f"{SP500}: the S&P data of ../shared is needed")
    lookbacks = [5, 10, 20, 40, 60, 90, 120, 250][: args.cells // 8]
    with tempfile.TemporaryDirectory(prefix="tradesim-sweep-bench-") as scratch:
        root = Path(scratch)
        momentum = root / "momentum.toml"
        momentum.write_text(MOMENTUM.format(data=SP500, lookbacks=lookbacks))
        if not args.no_momentum:
            report(f"momentum: {args.cells} cells, 100 S&P tickers, 2016-01-04..2021-04-21", momentum, executors, args.workers, root)
        if not args.no_llmoe:
            llmoe = root / "llmoe.toml"
            llmoe.write_text(LLMOE)
            with_prefetch = executors + [f"{e}+prefetch" for e in executors if e != "serial"]
            report("LLMoE: 4 cells, MSFT on the embedded sample, router minilm (offline)", llmoe, with_prefetch, args.workers, root)


if __name__ == "__main__":
    main()
