"""Plots of runs and paper accounts, with matplotlib.

Each function takes a `Run` (or `Runs`, `PaperAccount`), draws on the axes it is given (or on a
new figure) and returns the figure. Figures are made without pyplot's global state, so they work
headless (CI, cron) and display in Jupyter under `%matplotlib inline`. Statistics come from the
run object and empyrical; nothing here computes a result that the run does not already hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from tradesim.metrics import ANNUALIZATION

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from tradesim.paper.reading import PaperAccount
    from tradesim.runs import Run, Runs

STRATEGY, BENCHMARK, BACKTEST = "#1f5fa8", "#888888", "#d9822b"
UP, DOWN = "#2e8b57", "#c0392b"


def new_figure(rows: int = 1, height_ratios: Sequence[float] | None = None, size: tuple[float, float] = (10, 5), sharex: bool = True):
    """A figure with `rows` axes stacked (one Axes, or an array of them)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    kwargs = {"gridspec_kw": {"height_ratios": list(height_ratios)}} if height_ratios else {}
    return figure, figure.subplots(rows, 1, sharex=sharex, squeeze=True, **kwargs)


def _finish(ax: Axes, title: str | None = None, ylabel: str | None = None, legend: bool = True) -> None:
    """Title, label, legend, grid and concise dates on the x axis (every plot here is over time)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    if title:
        ax.set_title(title)
    if ylabel:
        ax.set_ylabel(ylabel)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)


STYLES = {
    "strategy": {"color": STRATEGY, "linewidth": 1.3},
    "benchmark": {"color": BENCHMARK, "linewidth": 1.0},
    "backtest": {"color": BACKTEST, "linewidth": 1.0, "linestyle": "--"},
}


def equity_curves(
    frame: pd.DataFrame, kinds: Sequence[str], title: str | None = None, ax: Axes | None = None, drawdown_ax: Axes | None = None,
    log: bool | None = None, with_drawdown: bool = True, size: tuple[float, float] = (10, 6), band: pd.DataFrame | None = None,
) -> Figure:
    """The one equity figure (runs, report.html, paper accounts): each column of `frame` a curve
    drawn as its kind (`strategy`, `benchmark`, `backtest`), log scale when the curves span more
    than ten times; with no axes given, their drawdowns in a panel under them. `band`: curves
    (one per seed) whose range is shaded behind them."""
    if ax is None:
        if with_drawdown:
            _, (ax, drawdown_ax) = new_figure(2, height_ratios=(3, 1), size=size)
        else:
            _, ax = new_figure(size=size)
    if band is not None:
        ax.fill_between(band.index, band.min(axis=1).to_numpy(), band.max(axis=1).to_numpy(), color=STYLES["strategy"]["color"],
                        alpha=0.2, label=f"{band.shape[1]} seeds (lowest to highest)")
    for (label, series), kind in zip(frame.items(), kinds):
        ax.plot(series.index, series.to_numpy(), label=label, **STYLES[kind])
    if log if log is not None else frame.max().max() > 10 * frame.min().min() > 0:
        ax.set_yscale("log")
    _finish(ax, title, "equity")
    if drawdown_ax is not None:
        drawdowns(frame, kinds, drawdown_ax)
    return ax.figure


def drawdowns(frame: pd.DataFrame, kinds: Sequence[str], ax: Axes | None = None) -> Figure:
    """Each curve's drawdown in percent under its running peak (the strategy's shaded)."""
    if ax is None:
        _, ax = new_figure(size=(10, 3))
    for (label, series), kind in zip(frame.items(), kinds):
        down = (series / series.cummax() - 1) * 100
        text = f"{label} (max {down.min():.1f}%)"
        if kind == "strategy":
            ax.fill_between(down.index, down.to_numpy(), 0, color=STYLES[kind]["color"], alpha=0.3, label=text)
        else:
            ax.plot(down.index, down.to_numpy(), label=text, **STYLES[kind])
    _finish(ax, None, "drawdown %")
    return ax.figure


def _labelled(run: Run) -> pd.DataFrame:
    return run.equity.set_axis([run.label, run.benchmark_name], axis=1)


def equity(run: Run, ax: Axes | None = None, drawdown_ax: Axes | None = None, log: bool | None = None) -> Figure:
    """Equity against the benchmark; with no axes given, the drawdown in a panel under it."""
    title = f"{run.label} on {', '.join(run.tickers[:6])}{' ...' if len(run.tickers) > 6 else ''}"
    return equity_curves(_labelled(run), ("strategy", "benchmark"), title, ax, drawdown_ax, log)


def drawdown(run: Run, ax: Axes | None = None) -> Figure:
    """The strategy's and the benchmark's drawdown, in percent under their running peaks."""
    return drawdowns(_labelled(run), ("strategy", "benchmark"), ax)


def rolling(run: Run, window: int = 63, ax: Axes | None = None, volatility_ax: Axes | None = None) -> Figure:
    """Rolling Sharpe ratio and annualized volatility over `window` sessions (empyrical)."""
    import empyrical

    if ax is None:
        figure, (ax, volatility_ax) = new_figure(2, size=(10, 5))
    returns = run.returns.iloc[1:]  # the first session has no return
    if len(returns) <= window:
        raise ValueError(f"rolling: the run has {len(returns)} returns, fewer than the window of {window}")
    for column, color in (("strategy", STRATEGY), ("benchmark", BENCHMARK)):
        series = returns[column]
        sharpe = empyrical.roll_sharpe_ratio(series, window, annualization=ANNUALIZATION)
        ax.plot(sharpe.index, np.asarray(sharpe), color=color, label=run.label if column == "strategy" else "benchmark")
        if volatility_ax is not None:
            volatility = empyrical.roll_annual_volatility(series, window, annualization=ANNUALIZATION)
            volatility_ax.plot(volatility.index, np.asarray(volatility) * 100, color=color)
    ax.axhline(0, color="black", linewidth=0.6)
    _finish(ax, f"rolling {window}-session Sharpe ratio", "Sharpe")
    if volatility_ax is not None:
        _finish(volatility_ax, f"rolling {window}-session volatility (annualized)", "volatility %", legend=False)
    return ax.figure


def monthly_returns(run: Run, ax: Axes | None = None, column: str = "strategy") -> Figure:
    """Monthly returns as a year x month heatmap, in percent (empyrical's compounding)."""
    import empyrical

    if ax is None:
        _, ax = new_figure(size=(10, 1.2 + 0.5 * run.equity.index.year.nunique()))
    monthly = empyrical.aggregate_returns(run.returns[column].iloc[1:], "monthly").unstack().reindex(columns=range(1, 13)) * 100
    limit = max(float(np.nanmax(np.abs(monthly.to_numpy()))), 1e-9)
    image = ax.imshow(monthly.to_numpy(), cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
    ax.set_yticks(range(len(monthly)), [str(year) for year in monthly.index])
    for (row, col), value in np.ndenumerate(monthly.to_numpy()):
        if np.isfinite(value):
            ax.text(col, row, f"{value:.1f}", ha="center", va="center", fontsize="small")
    ax.figure.colorbar(image, ax=ax, label="%")
    ax.set_title(f"monthly returns, {run.label if column == 'strategy' else run.benchmark_name} (%)")
    return ax.figure


def exposure(run: Run, ax: Axes | None = None, turnover_ax: Axes | None = None, drifted: bool = True) -> Figure:
    """Target gross exposure held, the exposure at each close as the prices drifted (`drifted`:
    reads the run's data source), and the turnover of each session."""
    if ax is None:
        figure, (ax, turnover_ax) = new_figure(2, height_ratios=(2, 1), size=(10, 5))
    held = run.exposure
    ax.fill_between(held.index, held.to_numpy(), step="post", color=STRATEGY, alpha=0.35, label="target gross exposure")
    if drifted:
        actual = run.gross_exposure()
        ax.plot(actual.index, actual.to_numpy(), color=STRATEGY, linewidth=1.0, label="gross exposure at the close")
    ax.axhline(run.metrics.get("exposure", np.nan), color="black", linewidth=0.8, linestyle="--", label=f"mean exposure at the closes {run.metrics.get('exposure', np.nan):.2f}")
    _finish(ax, f"exposure and turnover, {run.label}", "gross exposure")
    if turnover_ax is not None:
        turnover = run.turnover * 100
        turnover_ax.bar(turnover.index, turnover.to_numpy(), color=STRATEGY, width=1.0)
        _finish(turnover_ax, None, "turnover % of equity", legend=False)
    return ax.figure


def router_timeline(run: Run, ax: Axes | None = None, ticker: str | None = None) -> Figure:
    """The router's label on each decision date against the ticker's adjusted close, and the
    sessions the strategy was invested (LLMoE and its router ablations)."""
    if ax is None:
        _, ax = new_figure(size=(11, 4.5))
    labels = run.router(ticker)
    ticker = labels.attrs["ticker"]
    price = run.prices[ticker].loc[labels.index[0] : run.equity.index[-1]]
    ax.plot(price.index, price.to_numpy(), color="black", linewidth=1.0, label=f"{ticker} (adjusted close)")
    held = (labels["weight"] > 0).reindex(price.index).ffill().fillna(False).to_numpy(dtype=bool)
    ax.fill_between(price.index, price.min(), price.max(), where=held, step="post", color=STRATEGY, alpha=0.12, label="long (decided)")
    for label, marker, color in (("Optimistic", "^", UP), ("Pessimistic", "v", DOWN)):
        mine = labels[labels["label"] == label]
        right = mine["right"].mean() if len(mine) and mine["right"].notna().any() else np.nan
        ax.scatter(mine.index, price.reindex(mine.index).to_numpy(), marker=marker, color=color, s=22, zorder=3,
                   label=f"{label} ({len(mine)}, right {right:.0%})")
    _finish(ax, f"router labels, {run.label}", "price")
    return ax.figure


def rank_ic(run: Run, ax: Axes | None = None, window: int = 20) -> Figure:
    """RankIC per decision date, its rolling mean and its mean (the ranking strategies)."""
    if ax is None:
        _, ax = new_figure(size=(10, 4))
    daily = run.rank_ic()
    ax.bar(daily.index, daily.to_numpy(), color=np.where(daily.to_numpy() >= 0, UP, DOWN), width=1.0, alpha=0.6, label="RankIC")
    ax.plot(daily.index, daily.rolling(window, min_periods=1).mean().to_numpy(), color="black", linewidth=1.2, label=f"rolling mean ({window} dates)")
    ax.axhline(daily.mean(), color=STRATEGY, linestyle="--", linewidth=1.0, label=f"mean {daily.mean():.3f}")
    _finish(ax, f"RankIC over time, {run.label}", "Spearman")
    return ax.figure


def ranks(run: Run, ax: Axes | None = None) -> Figure:
    """Each ticker's rank on each decision date (1 = best), held names marked."""
    if ax is None:
        _, ax = new_figure(size=(11, 0.8 + 0.3 * len(run.tickers)))
    table = run.table("rankings")
    grid = table.pivot(index="ticker", columns="date", values="rank").reindex(run.tickers).astype(float)
    image = ax.imshow(grid.to_numpy(), cmap="viridis_r", aspect="auto", interpolation="nearest")
    held = table.pivot(index="ticker", columns="date", values="held").reindex(index=run.tickers, columns=grid.columns).fillna(False).astype(bool)
    rows, cols = np.nonzero(held.to_numpy())
    ax.scatter(cols, rows, marker=".", color="white", s=8, label="held")
    ax.set_yticks(range(len(grid)), list(grid.index))
    ticks = np.linspace(0, len(grid.columns) - 1, min(8, len(grid.columns))).astype(int)
    ax.set_xticks(ticks, [str(grid.columns[i].date()) for i in ticks], rotation=30, ha="right")
    ax.figure.colorbar(image, ax=ax, label="rank")
    ax.set_title(f"ranks over time, {run.label}")
    return ax.figure


def compare(runs: Runs, ax: Axes | None = None, log: bool = False) -> Figure:
    """Several runs' equity curves and the first run's benchmark."""
    if ax is None:
        _, ax = new_figure(size=(10, 5))
    frame = runs.equity
    for column in frame.columns:
        benchmark = column.startswith("benchmark")
        ax.plot(frame.index, frame[column].to_numpy(), label=column, linewidth=1.0 if benchmark else 1.2, color=BENCHMARK if benchmark else None, linestyle="--" if benchmark else "-")
    if log:
        ax.set_yscale("log")
    _finish(ax, "equity", "equity")
    return ax.figure


def paper_vs_backtest(account: PaperAccount, ax: Axes | None = None) -> Figure:
    """A paper account's equity, the backtest of the same sessions with the same fitted state,
    and the benchmark; the largest gap is in the legend."""
    if ax is None:
        _, ax = new_figure(size=(10, 4.5))
    frame = account.equity
    backtest = account.backtest
    shared = backtest.index.intersection(frame.index)
    gap = float(np.max(np.abs(frame["strategy"].reindex(shared) / backtest.reindex(shared) - 1))) if len(shared) else np.nan
    curves = pd.DataFrame({f"paper {account.name}": frame["strategy"], f"backtest (largest gap {gap:.1e})": backtest, "benchmark": frame["benchmark"]})
    equity_curves(curves, ("strategy", "backtest", "benchmark"), f"paper account {account.name}", ax, log=False)
    late = frame.index[frame["late"].astype(bool)]
    if len(late):
        ax.scatter(late, frame.loc[late, "strategy"].to_numpy(), marker="x", s=14, color=DOWN, label="late decisions (a catch-up)", zorder=3)
        _finish(ax, f"paper account {account.name}", "equity")
    return ax.figure

