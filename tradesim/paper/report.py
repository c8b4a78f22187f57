"""A paper account's page: equity against the benchmark (and a backtest of the same days when
given), the last night's fills, corporate actions and positions, and tomorrow's orders with the
reason for each."""

from __future__ import annotations

import base64
import html
import io

import pandas as pd

from tradesim import plots
from tradesim.paper.ledger import Ledger
from tradesim.paper.reading import equity_frame, fill_comparison, fill_totals, is_broker_account, pending_orders, tracking_frame, tracking_totals


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>none</p>"
    return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:,.6g}", escape=True)


def _plot(curves: dict[str, pd.Series]) -> str:
    frame = pd.DataFrame(curves)
    kinds = [("backtest" if label.startswith("backtest") else "benchmark" if label.startswith("benchmark") else "strategy") for label in frame]
    figure = plots.equity_curves(frame, kinds, None, with_drawdown=False, log=False, size=(10, 4.5))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def account_report(ledger: Ledger, backtest: pd.Series | None = None) -> str:
    meta = ledger.meta()
    config = meta["config"]
    frame = equity_frame(ledger)
    last = ledger.last_session()
    curves = {"paper account": frame["equity"], "benchmark (equal weight, held)": frame["benchmark"]}
    if backtest is not None:
        curves["backtest of the same sessions"] = backtest
    image = f'<img alt="paper equity" src="data:image/png;base64,{_plot(curves)}">' if len(frame) else "<p>no session processed yet</p>"
    fills = pd.DataFrame(
        ledger.query("SELECT ticker, side, shares, price, fees FROM fills WHERE session = ? AND book = 'account' ORDER BY rowid", (last,)),
        columns=["ticker", "side", "shares", "price", "fees"],
    )
    actions = pd.DataFrame(
        ledger.query("SELECT ticker, kind, step, dividend, shares_before, shares_after, cash FROM actions WHERE session = ? AND book = 'account'", (last,)),
        columns=["ticker", "kind", "step", "dividend per share", "shares before", "shares after", "cash credited"],
    )
    positions = pd.DataFrame(
        ledger.query(
            "SELECT p.ticker, p.shares, b.raw_close, p.shares * b.raw_close FROM positions p JOIN bars b ON b.session = p.session AND b.ticker = p.ticker "
            "WHERE p.session = ? AND p.book = 'account' AND p.shares != 0 ORDER BY p.ticker",
            (last,),
        ),
        columns=["ticker", "shares", "close", "value"],
    )
    late = frame.index[frame["late"] == 1] if len(frame) else []
    summary = {
        "strategy": f"{config['strategy']} {config['params']}",
        "tickers": ", ".join(config["tickers"]),
        "inception": meta["inception"],
        "last processed": last or "none",
        "fills": f"{meta['fill']}, commission {config['cost_bps']:g} bps, slippage {config['slippage_bps']:g} bps; dividends {meta['dividends']}",
        "equity": f"{frame['equity'].iloc[-1]:,.2f} (benchmark {frame['benchmark'].iloc[-1]:,.2f})" if len(frame) else f"{meta['capital']:,.2f}",
        "late decisions": ", ".join(str(d.date()) for d in late) or "none",
    }
    broker = is_broker_account(ledger)
    if broker:
        summary["broker"] = f"{meta['broker']} paper account {meta['broker_account']}, orders {meta['order_timing']}"
    facts = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>tradesim paper: {html.escape(meta['name'])}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ padding: 4px 12px; border-bottom: 1px solid #ddd; text-align: left; }}
img {{ max-width: 100%; }}</style></head><body>
<h1>Paper account {html.escape(meta['name'])}</h1>
<table>{facts}</table>
<h2>Equity</h2>{image}
<h2>Fills on {html.escape(last or '-')}</h2>{_table(fills)}
<h2>Corporate actions on {html.escape(last or '-')}</h2>{_table(actions)}
<h2>Positions after the close</h2>{_table(positions)}
<h2>Orders for the next session</h2>{_table(pending_orders(ledger))}
{broker_section(ledger, backtest) if broker else ""}
</body></html>
"""


def broker_section(ledger: Ledger, backtest: pd.Series | None) -> str:
    """What the broker did against what the simulator would have done: the fills' slippage and
    cost per trade and in total, and the account against the backtest of the same sessions."""
    comparison = fill_comparison(ledger)
    totals = fill_totals(comparison)
    lines = [f"<h2>Broker fills against the simulator</h2><p>{totals['fills']} fills, {totals['traded_at_open']:,.2f} traded at the open; "
             f"slippage against the open {totals['slippage_bps']:+.2f} bps ({totals['cost_vs_open']:+,.2f}); "
             f"against the simulator's fills {totals['cost_vs_simulated']:+,.2f}; per trade {totals['slippage_bps_per_trade']:+.2f} bps, 95% interval "
             f"[{totals['slippage_bps_per_trade_interval'][0]:+.2f}, {totals['slippage_bps_per_trade_interval'][1]:+.2f}]. "
             "Alpaca's paper fills are simulated from quotes, not exchange executions.</p>"]
    if backtest is not None:
        tracked = tracking_totals(tracking_frame(ledger, backtest))
        if tracked["sessions"]:
            lines.append(f"<p>Tracking: the account ends {tracked['difference']:+,.2f} ({tracked['difference_pct']:+.3f}%) from the backtest of the same "
                         f"{tracked['sessions']} sessions; tracking error {tracked['tracking_error_annualized_pct']:.2f}% a year.</p>")
    lines.append(_table(comparison.tail(50).assign(date=comparison["date"].dt.date.astype(str)).drop(columns="client_id")))
    from tradesim.paper.orders import broker_orders_frame

    unfilled = broker_orders_frame(ledger).query("state != 'filled'")
    lines.append(f"<h3>Orders not filled in full</h3>{_table(unfilled.tail(50))}")
    return "\n".join(lines)
