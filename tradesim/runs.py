"""Reading finished run directories: one decision explained, several runs compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tradesim.errors import TradesimError

COMPARED = (
    ("rank_ic_mean", "RankIC"),
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
    lines += _side_tables(Path(run_dir), day, matching[0]["ticker"])
    return "\n".join(lines)


def _side_tables(run_dir: Path, day: str, ticker: str, shown: int = 10) -> list[str]:
    """A ranking run's reports on the ticker that day, the comparisons it took part in, its rank."""
    import pandas as pd

    lines: list[str] = []
    if (run_dir / "reports.parquet").exists():
        reports = pd.read_parquet(run_dir / "reports.parquet")
        mine = reports[(reports["date"] == day) & (reports["ticker"] == ticker)]
        lines += ["", "reports:", *(f"  {row.expert}: {row.report}" for row in mine.itertuples())]
    if (run_dir / "comparisons.parquet").exists():
        comparisons = pd.read_parquet(run_dir / "comparisons.parquet")
        today = comparisons[comparisons["date"] == day]
        mine = today[(today["a"] == ticker) | (today["b"] == ticker)]
        lines += ["", f"comparisons ({len(mine)} of {len(today)} that day; P = probability the first returns more):"]
        for row in mine.head(shown).itertuples():
            other, p = (row.b, row.p_a_beats_b) if row.a == ticker else (row.a, 1 - row.p_a_beats_b)
            lines.append(f"  {ticker} vs {other}: {p:.3f} -> {'won' if p > 0.5 else 'lost' if p < 0.5 else 'even'}")
        if len(mine) > shown:
            lines.append(f"  ... {len(mine) - shown} more in comparisons.parquet")
    if (run_dir / "rankings.parquet").exists():
        rankings = pd.read_parquet(run_dir / "rankings.parquet")
        today = rankings[rankings["date"] == day]
        mine = today[today["ticker"] == ticker]
        if not mine.empty and pd.notna(mine["rank"].iloc[0]):
            row = mine.iloc[0]
            lines += ["", f"rank {int(row['rank'])} of {len(today)} (score {row['score']:.3f}; {int(row['comparisons'])} comparisons, "
                      f"{int(row['cycles'])} cycles that day){'; held' if row['held'] else ''}"]
    return lines


def run_label(run: dict[str, Any], metrics: dict[str, Any]) -> str:
    """What a run is, in a few words (its strategy, router or ranking set-up, look-ahead flag)."""
    strategy = run["strategy"]
    label = strategy["name"]
    params = strategy.get("params", {})
    if params.get("router"):
        label += f" ({params['router']}{', anonymized' if params.get('anonymize') else ''})"
    if strategy["name"] == "tradexpert":
        general = params["general_expert"] + (" + LoRA" if params.get("fine_tune") == "lora" else "")
        label += f" ({params['mode']}, {params['ranking'] if params['mode'] == 'rank' else 'rise/fall'}, {general}, experts {params['experts']})"
    if metrics.get("look_ahead"):
        label += " [LOOK-AHEAD]"
    return label


def compare_runs(run_dirs) -> str:
    from tradesim.metrics import format_metric

    header = ["run", "strategy", *(label for _, label in COMPARED)]
    table = []
    benchmark = None
    periods = set()
    for run_dir in run_dirs:
        metrics = _read_json(Path(run_dir) / "metrics.json")
        run = _read_json(Path(run_dir) / "run.json")
        label = run_label(run, metrics)
        values = {**metrics, "rank_ic_mean": metrics.get("ranking", {}).get("rank_ic_mean")}
        table.append([Path(run_dir).name, label, *(format_metric(key, values.get(key)) for key, _ in COMPARED)])
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
