"""What a finished backtest shows: the strategy-against-benchmark table printed in the terminal,
and report.html with the equity and drawdown figure."""

from __future__ import annotations

import base64
import html
import io
import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from tradesim import plots
from tradesim.evidence.significance import contains_zero
from tradesim.metrics import RETURN_METRICS, TRADING_METRICS, format_metric

if TYPE_CHECKING:
    from tradesim.backtesting import BacktestResult


FORECAST_ROWS = (("ranking", ("rank_ic_mean", "rank_ic_ir", "dates")), ("prediction", ("accuracy", "mcc", "predictions")))
# Where each metric's 95% interval lies in metrics.json's significance block.
INTERVALS = {
    "sharpe": ("sharpe", "interval"),
    "annual_return": ("annual_return", "interval"),
    "rank_ic_mean": ("rank_ic", "interval"),
    "accuracy": ("prediction", "accuracy_interval"),
    "mcc": ("prediction", "mcc_interval"),
}
HEADER = ("metric", "strategy", "95% interval", "benchmark")


def interval_text(metrics: dict[str, Any], name: str) -> str:
    """`[low, high]` of a metric, `[low, high] ~0` when it contains zero (not distinguishable from
    zero); empty without one."""
    block, key = INTERVALS.get(name, (None, None))
    found = ((metrics.get("significance") or {}).get(block) or {}).get(key) if block else None
    if not found:
        return ""
    low, high = found
    return f"[{format_metric(name, low)}, {format_metric(name, high)}]{' ~0' if contains_zero(found) else ''}"


def metrics_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Strategy (with its 95% interval) against benchmark, then what a ranking or predicting
    strategy's forecasts were worth (RankIC, accuracy: the benchmark forecasts nothing)."""
    benchmark = metrics["benchmark"]
    rows = [
        (name, format_metric(name, metrics[name]), interval_text(metrics, name), format_metric(name, benchmark[name]))
        for name in (*RETURN_METRICS, *TRADING_METRICS)
    ]
    for block, names in FORECAST_ROWS:
        if block in metrics:
            rows += [(name, format_metric(name, metrics[block][name]), interval_text(metrics, name), "") for name in names]
    return rows


def metrics_table(metrics: dict[str, Any]) -> str:
    """A short plain-text table: strategy, its 95% interval, benchmark. `~0`: the interval
    contains zero."""
    rows = [HEADER, *metrics_rows(metrics)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d:>{widths[3]}}" for a, b, c, d in rows]
    lines.insert(1, "-" * len(lines[0]))
    if any(row[2].endswith("~0") for row in rows):
        lines.append("~0: the 95% interval contains zero: not distinguishable from zero")
    return "\n".join(lines)


def equity_png(result: BacktestResult) -> bytes:
    """The run's equity against its benchmark, with drawdowns (`plots.equity_curves`), as PNG."""
    frame = pd.DataFrame({result.strategy.name: result.simulation.equity, result.metrics["benchmark"]["name"]: result.benchmark.equity})
    figure = plots.equity_curves(frame, ("strategy", "benchmark"), f"{result.strategy.name} on {', '.join(result.data.tickers)}", band=result.seed_equity)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def report_html(result: BacktestResult, png: bytes) -> str:
    config = result.config
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in metrics_rows(result.metrics)
    )
    period = result.metrics["period"]
    facts = {
        "strategy": f"{result.strategy.name} {json.dumps(result.strategy.settings.as_dict())}",
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
<table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in HEADER)}</tr>
{rows}
</table>
{evidence_html(result.metrics)}
<p>Daily returns of the equity curve, annualization {result.metrics["annualization"]}, risk-free rate {result.metrics["risk_free"]:g} a year.</p>
<h2>Equity and drawdown</h2>
<img alt="equity and drawdown against the benchmark" src="data:image/png;base64,{image}">
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
</body></html>
"""


def evidence_html(metrics: dict[str, Any]) -> str:
    """The Evidence panel: the significance block in words, the trials, and the run split at each
    model's training cutoff."""
    block = metrics.get("significance") or {}
    items = "".join(f"<li>{html.escape(line)}</li>" for line in block.get("in_words", []))
    rows = []
    for spec, split in (metrics.get("by_model_cutoff") or {}).items():
        if split.get("decisions") is None:
            rows.append(f"<tr><td>{html.escape(spec)}</td><td>unknown</td><td colspan=3>{html.escape(split['source'])}</td></tr>")
            continue
        cells = []
        for label in ("before", "near", "after"):
            part = split.get(label) or {}
            sharpe = part.get("sharpe")
            interval = part.get("sharpe_interval")
            cells.append(
                f"{split['decisions'][label]} decisions, {part.get('sessions', 0)} sessions"
                + (f", Sharpe {sharpe:.2f}" if sharpe is not None else "")
                + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
            )
        rows.append(
            f"<tr><td>{html.escape(spec)}</td><td>{html.escape(split['cutoff'])}</td>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
        )
    table = (
        "<h3>Against each model's training cutoff</h3><table><tr><th>model</th><th>cutoff</th><th>before</th><th>near</th><th>after</th></tr>"
        + "".join(rows) + "</table>"
    ) if rows else ""
    seeds = metrics.get("seeds")
    spread = ""
    if seeds:
        cells = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(format_metric(name.split('.')[-1], v['mean']))}</td>"
            f"<td>{html.escape(format_metric(name.split('.')[-1], v['std']))}</td></tr>"
            for name, v in seeds["metrics"].items()
        )
        spread = f"<h3>Across {len(seeds['seeds'])} seeds</h3><table><tr><th>metric</th><th>mean</th><th>standard deviation</th></tr>{cells}</table>"
    return f"<h2>Evidence</h2><ul>{items}</ul>{table}{spread}" if items or table or spread else ""
