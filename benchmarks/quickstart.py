"""The quick start's backtest, cold and rerun, in one process tree.

    python benchmarks/quickstart.py

Runs `tradesim backtest --strategy llmoe --ticker MSFT` (the README's main job, on the embedded
sample) as child processes with a new, empty $TRADESIM_HOME: first cold (every router prompt goes
to MiniLM, both experts are trained), then rerun with only trading parameters changed
(`--cost-bps 5 --slippage-bps 2`: the decisions of the first pass are reused, see
`tradesim.reuse`). Prints the wall time of each with the stages run.json records, and the import
time of each heavy library a run pays (each in a fresh interpreter), against issue 21's targets on
2 cores: cold <= 30 s, rerun <= 3 s; and the share of each run's time the evidence took (issue 22:
intervals, tests, the trial ledger and the cutoff split, `evidence_s` in run.json, imports of arch
and statsmodels included), against its target of at most 10%.
Nothing compiles on a first run: the engine is plain numpy (vectorbt, with its numba kernels, is
only the tests' oracle and an export).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRADESIM = Path(sys.executable).with_name("tradesim")
COMMAND = ["backtest", "--strategy", "llmoe", "--ticker", "MSFT"]
RERUN = ["--cost-bps", "5", "--slippage-bps", "2"]  # trading parameters only
HEAVY = ("pandas", "empyrical", "torch", "matplotlib.figure", "transformers", "sentence_transformers", "arch.bootstrap")


def run(home: Path, out: Path, extra: list[str]) -> tuple[float, dict]:
    started = time.perf_counter()
    subprocess.run([str(TRADESIM), *COMMAND, *extra, "--out", str(out)], env={**os.environ, "TRADESIM_HOME": str(home)}, check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    return elapsed, json.loads((out / "run.json").read_text())


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory) / "home"
        shares = []
        for label, extra in (("cold", []), ("rerun", RERUN)):
            seconds, manifest = run(home, Path(directory) / label, extra)
            shares.append((label, manifest["timings"]["evidence_s"], seconds))
            stages = ", ".join(f"{k[:-2]} {v:.2f}" for k, v in manifest["timings"].items() if k != "total_s")
            fitted = manifest["strategy"].get("fitted_models", [])
            how = ("decisions reused" if manifest["strategy"].get("decisions_reused")
                   else f"experts loaded {sum(m['loaded'] for m in fitted)}/{len(fitted)}")
            print(
                f"{label:<9} {seconds:6.2f} s wall   ({stages} s; model calls {manifest['llm']['model_calls']}, "
                f"cache hits {manifest['llm']['cache_hits']}, {how})"
            )
    for label, evidence, seconds in shares:
        print(f"evidence of the {label} run: {evidence:.2f} s of {seconds:.2f} s wall ({evidence / seconds:.1%}; target <= 10%)")
    imports = {module: import_seconds(module) for module in HEAVY}
    print("import times (each alone, fresh interpreter): " + ", ".join(f"{m} {s:.2f} s" for m, s in imports.items()))
    print("a rerun reuses the decision pass: it imports pandas, empyrical (scipy.stats, yfinance) and matplotlib (equity.png), not torch")
    print("targets: cold <= 30 s, rerun <= 3 s")


if __name__ == "__main__":
    main()
