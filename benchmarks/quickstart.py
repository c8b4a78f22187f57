"""The quick start's backtest, cold and repeated, in one process tree.

    python benchmarks/quickstart.py

Runs `tradesim backtest --strategy llmoe --ticker MSFT` (the README's main job, on the embedded
sample) twice as child processes with a new, empty $TRADESIM_HOME: first cold (every router
prompt goes to MiniLM, both experts are trained), then repeated (answers and experts come from
the caches). Prints the wall time of each with the stages run.json records, and the import time
of the heavy libraries every run pays (measured in fresh interpreters), against the targets:
cold <= 90 s, repeated <= 5 s on 2 quiet cores. Nothing compiles on a first run any more: the
engine is plain numpy (vectorbt, with its numba kernels, is only the tests' oracle and an export).
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


def run(home: Path, out: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    subprocess.run([str(TRADESIM), *COMMAND, "--out", str(out)], env={**os.environ, "TRADESIM_HOME": str(home)}, check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    return elapsed, json.loads((out / "run.json").read_text())


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory) / "home"
        for label, out in (("cold", "cold"), ("repeated", "repeated")):
            seconds, manifest = run(home, Path(directory) / out)
            stages = ", ".join(f"{k[:-2]} {v:.2f}" for k, v in manifest["timings"].items() if k != "total_s")
            fitted = manifest["strategy"].get("fitted_models", [])
            print(
                f"{label:<9} {seconds:6.2f} s wall   ({stages} s; model calls {manifest['llm']['model_calls']}, "
                f"cache hits {manifest['llm']['cache_hits']}, experts loaded {sum(m['loaded'] for m in fitted)}/{len(fitted)})"
            )
    imports = {module: import_seconds(module) for module in ("pandas", "torch", "sklearn", "matplotlib.figure")}
    print("imports every run pays: " + ", ".join(f"{m} {s:.2f} s" for m, s in imports.items()))
    print("targets: cold <= 90 s, repeated <= 5 s")


if __name__ == "__main__":
    main()
