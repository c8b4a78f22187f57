"""Reading finished run directories: one decision explained, several runs compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tradesim.errors import TradesimError

COMPARED = (
    ("total_return", "total return"),
    ("annual_return", "annual return"),
    ("sharpe", "Sharpe"),
    ("sortino", "Sortino"),
    ("calmar", "Calmar"),
    ("max_drawdown", "max drawdown"),
    ("annual_volatility", "volatility"),
    ("n_trades", "trades"),
    ("exposure", "exposure"),
)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TradesimError(f"{path.parent}: not a finished run directory (no {path.name})") from None
    except json.JSONDecodeError as error:
        raise TradesimError(f"{path}: not valid JSON ({error})") from None


def explain_decision(run_dir: Path, day: str, ticker: str | None) -> str:
    run = _read_json(Path(run_dir) / "run.json")
    path = Path(run_dir) / "decisions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    matching = [r for r in rows if r["date"] == day and (ticker is None or r["ticker"] == ticker.upper())]
    if not matching:
        dates = sorted({r["date"] for r in rows})
        span = f"{dates[0]}..{dates[-1]}" if dates else "none"
        raise TradesimError(f"--date {day}: no decision{' for ' + ticker.upper() if ticker else ''} in {path} (decisions cover {span})")
    if len(matching) > 1:
        raise TradesimError(f"--ticker: the run decides for {', '.join(r['ticker'] for r in matching)} on {day}; name one")
    row = dict(matching[0])
    lines = [f"{row.pop('date')} {row.pop('ticker')} — strategy {run['strategy']['name']}"]
    if row.pop("look_ahead", False):
        lines.append("LOOK-AHEAD: this decision used the realized next move (oracle upper bound)")
    prompt = row.pop("prompt", None)
    news = row.pop("news", None)
    if prompt:
        lines += ["", "prompt:", *("  " + line for line in prompt.splitlines())]
    if news is not None:
        lines += ["", f"news used ({len(news)}):", *(f"  {item['id']} visible {item['visible_at']}" for item in news)]
    action = (row.pop("weight"), row.pop("action"))
    lines += ["", "outputs:", *(f"  {key}: {value}" for key, value in row.items())]
    fill = run["resolved"]["fill"]
    when = "at this session's close (same-close)" if fill == "same-close" else f"at the next session, {fill}"
    lines += ["", f"action: {action[1]} -> target weight {action[0]:g} (filled {when})"]
    return "\n".join(lines)


def compare_runs(run_dirs) -> str:
    from tradesim.metrics import format_metric

    header = ["run", "strategy", *(label for _, label in COMPARED)]
    table = []
    benchmark = None
    periods = set()
    for run_dir in run_dirs:
        metrics = _read_json(Path(run_dir) / "metrics.json")
        run = _read_json(Path(run_dir) / "run.json")
        strategy = run["strategy"]
        label = strategy["name"]
        router = strategy.get("params", {}).get("router")
        if router:
            label += f" ({router})"
        if metrics.get("look_ahead"):
            label += " [LOOK-AHEAD]"
        table.append([Path(run_dir).name, label, *(format_metric(key, metrics.get(key)) for key, _ in COMPARED)])
        benchmark = benchmark or (metrics["benchmark"], metrics["period"])
        periods.add((metrics["period"]["first_decision"], metrics["period"]["last_session"]))
    if benchmark is not None:
        block, period = benchmark
        table.append(["", block["name"], *(format_metric(key, block.get(key)) for key, _ in COMPARED)])
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) if i < 2 else str(cell).rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in [header, *table]]
    lines.insert(1, "-" * len(lines[0]))
    if benchmark is not None:
        lines.append(f"(benchmark of the first run, {benchmark[1]['first_decision']}..{benchmark[1]['last_session']})")
    if len(periods) > 1:
        lines.append("warning: the runs cover different periods; their metrics are not directly comparable")
    return "\n".join(lines)
