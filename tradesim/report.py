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
from tradesim.metrics import RETURN_METRICS, TRADING_METRICS, format_metric

if TYPE_CHECKING:
    from tradesim.backtesting import BacktestResult


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


def equity_png(result: BacktestResult) -> bytes:
    """The run's equity against its benchmark, with drawdowns (`plots.equity_curves`), as PNG."""
    frame = pd.DataFrame({result.strategy.name: result.simulation.equity, result.metrics["benchmark"]["name"]: result.benchmark.equity})
    figure = plots.equity_curves(frame, ("strategy", "benchmark"), f"{result.strategy.name} on {', '.join(result.data.tickers)}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def report_html(result: BacktestResult, png: bytes) -> str:
    config = result.config
    rows = "\n".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>"
        for name, a, b in metrics_rows(result.metrics)
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
<table><tr><th>metric</th><th>strategy</th><th>benchmark</th></tr>
{rows}
</table>
<p>Daily returns of the equity curve, annualization {result.metrics["annualization"]}, risk-free rate {result.metrics["risk_free"]:g} a year.</p>
<h2>Equity and drawdown</h2>
<img alt="equity and drawdown against the benchmark" src="data:image/png;base64,{image}">
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
</body></html>
"""
