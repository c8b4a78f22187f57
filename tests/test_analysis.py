"""The analysis API and the plots, checked against what the run directory says and against
numbers computed here from the prices."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import tradesim
from fakes import FakeBackend
from helpers import synthetic_bars, write_ticker_dir
from tradesim import plots
from tradesim.errors import TradesimError
from tradesim.llm import model as model_module

FAST = {"epochs": 3, "patience": 2, "hidden": 8}
TRADEXPERT = {"experts": "market,alpha", "general_expert": "random", "top_k": 2, "n_drop": 1, "rebalance_every": 1, "market_window": 5}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A momentum, an llmoe (fake router) and a tradexpert run, written once for the module."""
    root = tmp_path_factory.mktemp("analysis")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRADESIM_HOME", str(root / "home"))
        patch.setitem(model_module.BACKENDS, "fake", lambda target, options: FakeBackend(f"fake:{target}"))
        data = write_ticker_dir(root / "bars", synthetic_bars(("AAA", "BBB", "CCC", "DDD"), sessions=320, seed=5, start="2015-01-01"))
        common = {"data": str(data), "progress": False}
        made = {
            "momentum": tradesim.backtest("momentum", "AAA,BBB,CCC,DDD", lookback=20, top_k=2, cost_bps=5, out=root / "momentum", **common),
            "llmoe": tradesim.backtest("llmoe", ticker="AAA", router="fake:1", train_end="2015-10-01", out=root / "llmoe", **FAST, **common),
            "tradexpert": tradesim.backtest("tradexpert", ["AAA", "BBB", "CCC", "DDD"], train_end="2015-10-01", fill="next-close", out=root / "tradexpert", **TRADEXPERT, **common),
        }
        yield {"root": root, "data": data, **made}


def test_a_run_directory_reads_back_as_written(runs):
    run = tradesim.open_run(runs["root"] / "momentum")
    path = run.path
    written = pd.read_csv(path / "equity.csv", index_col="date", parse_dates=True)
    assert list(run.equity.columns) == ["strategy", "benchmark"]
    np.testing.assert_array_equal(run.equity["strategy"], written["equity"])
    np.testing.assert_array_equal(run.equity["benchmark"], written["benchmark"])
    metrics = json.loads((path / "metrics.json").read_text())
    # the frames agree with the metrics empyrical computed from the same curve
    assert run.returns["strategy"].iloc[0] == 0 and run.returns["strategy"].iloc[1:].equals(written["equity"].pct_change().iloc[1:])
    assert run.drawdown["strategy"].min() == pytest.approx(metrics["max_drawdown"], rel=1e-6)
    assert run.turnover.sum() * 252 / (len(run.equity) - 1) == pytest.approx(metrics["turnover"], rel=1e-6)
    assert run.metrics["sharpe"] == metrics["sharpe"] and run.benchmark_metrics["sharpe"] == metrics["benchmark"]["sharpe"]
    assert run.metrics["ranking.rank_ic_mean"] == metrics["ranking"]["rank_ic_mean"]
    weights = pd.read_csv(path / "weights.csv")
    assert run.weights.shape == (weights["date"].nunique(), 4) and list(run.weights.columns) == ["AAA", "BBB", "CCC", "DDD"]
    assert (run.weights.sum(axis=1).round(9) <= 1).all() and run.weights.loc[weights["date"].iloc[-1], weights["ticker"].iloc[-1]] == weights["weight"].iloc[-1]
    lines = (path / "decisions.jsonl").read_text().splitlines()
    assert len(run.decisions) == len(lines) and run.decisions["date"].dtype.kind == "M"
    assert len(run.trades) == len(pd.read_csv(path / "trades.csv")) and run.metrics["n_trades"] == len(run.trades)
    assert run.config["strategy"] == "momentum" and run.config["params"]["lookback"] == 20 and run.config["cost_bps"] == 5
    assert run.tables == [] and "in memory" not in repr(run)
    # positions rebuilt from trades.csv and marked at the source's closes give the engine's exposure
    assert run.gross_exposure().iloc[1:].mean() == pytest.approx(metrics["exposure"], rel=1e-6)


def test_the_run_in_memory_equals_the_run_written(runs):
    memory = tradesim.backtest("momentum", "AAA,BBB,CCC,DDD", lookback=20, top_k=2, cost_bps=5, data=str(runs["data"]), progress=False)
    written = runs["momentum"]
    assert memory.path is None and written.path == runs["root"] / "momentum"
    np.testing.assert_allclose(memory.equity, written.equity, rtol=1e-9)
    np.testing.assert_allclose(memory.gross_exposure(), written.gross_exposure(), rtol=1e-6)
    pd.testing.assert_frame_equal(memory.weights, written.weights, check_dtype=False)
    assert memory.metrics.equals(written.metrics) and list(memory.decisions.columns) == list(written.decisions.columns)


def test_backtest_checks_its_options_as_the_cli_does(runs, tmp_path):
    data = str(runs["data"])
    for options, expected in (
        ({"strategy": "momentum", "tickers": "AAA", "lookbak": 5}, "--lookbak: not a parameter of strategy momentum"),
        ({"strategy": "momentum", "tickers": "AAA", "fill": "tomorrow"}, "fill: expected one of"),
        ({"strategy": "momentum", "tickers": "AAA", "lookback": "many"}, "--lookback"),
        ({"strategy": "momentum", "tickers": "AAA", "ticker": "BBB"}, "ticker and tickers"),
        ({"strategy": "nope", "tickers": "AAA"}, "nope"),
        ({"tickers": "AAA"}, "--strategy: no strategy given"),
        ({"strategy": "momentum", "tickers": "AAA", "out": runs["root"] / "momentum"}, "already exists"),
    ):
        with pytest.raises(TradesimError, match=expected):
            tradesim.backtest(data=data, progress=False, **options)
    config = tmp_path / "run.toml"
    config.write_text(f'strategy = "momentum"\ntickers = "AAA,BBB"\ndata = "{data}"\n[params]\nlookback = 15\n')
    run = tradesim.backtest(config=config, lookback=25, progress=False)  # a keyword overrides the file, as a flag does
    assert run.config["params"]["lookback"] == 25 and run.tickers == ["AAA", "BBB"]


def test_opening_reads_lazily_and_writes_nothing(runs, tmp_path):
    import shutil

    copy = shutil.copytree(runs["root"] / "tradexpert", tmp_path / "run")
    (copy / "decisions.jsonl").write_text("{not json\n")  # damaged, and not read until asked for
    (copy / "comparisons.parquet").write_bytes(b"not parquet")
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in copy.iterdir()}
    run = tradesim.open_run(copy)
    assert run.metrics["sharpe"] == runs["tradexpert"].metrics["sharpe"] and len(run.equity) and len(run.weights)
    assert len(run.table("rankings")) and run.tables == ["comparisons", "rankings", "reports"]
    with pytest.raises(TradesimError, match="decisions.jsonl: line 1 is not valid JSON"):
        run.decisions
    with pytest.raises(TradesimError, match="comparisons.parquet: not a readable Parquet table"):
        run.table("comparisons")
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in copy.iterdir()} == before


def test_open_run_refuses_what_is_not_a_finished_run(tmp_path):
    with pytest.raises(TradesimError, match="no such run directory"):
        tradesim.open_run(tmp_path / "absent")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "equity.csv").write_text("date,equity,benchmark\n")
    with pytest.raises(TradesimError, match="not a finished run directory .no run.json, metrics.json"):
        tradesim.open_run(tmp_path / "half")


def test_runs_line_up_side_by_side(runs):
    lined = tradesim.open_runs([runs["root"] / "momentum", runs["momentum"], runs["llmoe"]])
    assert len(lined) == 3 and lined.labels[0] != lined.labels[1]  # the same label twice gets its directory
    assert list(lined.metrics.index[:3]) == lined.labels and lined.metrics.index[-1].startswith("benchmark")
    assert lined.metrics.loc[lined.labels[2], "sharpe"] == runs["llmoe"].metrics["sharpe"]
    np.testing.assert_array_equal(lined.equity[lined.labels[2]].dropna(), runs["llmoe"].equity["strategy"])
    assert lined.periods_differ and lined["llmoe (fake:1)"] is lined.runs[2]


def test_router_labels_are_scored_against_the_next_fill_to_fill_move(runs):
    run = tradesim.open_run(runs["llmoe"].path)
    labels = run.router()
    frames = synthetic_bars(("AAA", "BBB", "CCC", "DDD"), sessions=320, seed=5, start="2015-01-01")["AAA"]
    adjusted_open = frames["Open"] * frames["Adj Close"] / frames["Close"]
    opens = pd.Series(adjusted_open.to_numpy(), index=pd.to_datetime(frames["Date"]))
    expected = (opens.shift(-2) / opens.shift(-1) - 1).reindex(labels.index)  # decided at d: open d+1 to open d+2
    np.testing.assert_allclose(labels["move"].dropna(), expected.dropna(), atol=1e-7)  # the data layer rebuilds the adjustment
    scored = labels.dropna(subset=["right"])
    assert len(scored) > 20 and set(labels["label"].dropna()) <= {"Optimistic", "Pessimistic"}
    assert (scored["right"] == ((scored["label"] == "Optimistic") == (scored["move"] > 0))).all()
    assert (labels["weight"] == run.weights["AAA"].reindex(labels.index)).all()
    with pytest.raises(TradesimError, match="no router labels"):
        runs["momentum"].router()


def test_rank_ic_over_time_is_the_series_whose_mean_the_metrics_report(runs):
    run = tradesim.open_run(runs["tradexpert"].path)
    daily = run.rank_ic()
    assert len(daily) == run.metrics["ranking.dates"] > 10
    assert daily.mean() == pytest.approx(run.metrics["ranking.rank_ic_mean"], abs=1e-12)
    assert run.tables == ["comparisons", "rankings", "reports"] and set(run.table("rankings")["ticker"]) == set(run.tickers)


def test_prices_refuse_a_source_that_changed_since_the_run(runs, tmp_path):
    import shutil

    data = shutil.copytree(runs["data"], tmp_path / "bars")
    run = tradesim.backtest("momentum", "AAA,BBB", lookback=10, data=str(data), out=tmp_path / "run", progress=False)
    reopened = tradesim.open_run(run.path)
    assert reopened.prices.shape[1] == 2
    frame = pd.read_csv(data / "AAA.csv")
    frame.loc[100, "Close"] *= 1.01  # a restated bar
    frame.to_csv(data / "AAA.csv", index=False)
    with pytest.raises(TradesimError, match="no longer matches the run"):
        tradesim.open_run(run.path).prices


# ---------------------------------------------------------------------- plots
def _line(ax, label):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def test_equity_and_drawdown_plots_draw_the_run(runs):
    run = runs["momentum"]
    figure = plots.equity(run)
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    top, bottom = figure.axes
    np.testing.assert_array_equal(_line(top, run.label).get_ydata(), run.equity["strategy"])
    np.testing.assert_array_equal(_line(top, run.benchmark_name).get_ydata(), run.equity["benchmark"])
    assert f"max {run.drawdown['strategy'].min() * 100:.1f}%" in " ".join(t.get_text() for t in bottom.get_legend().get_texts())
    given = Figure().subplots()
    assert plots.equity(run, ax=given) is given.figure and len(given.figure.axes) == 1  # the axes given, nothing more


def test_rolling_plot_is_sharpe_and_volatility_over_the_window(runs):
    run = runs["momentum"]
    figure = plots.rolling(run, window=40)
    sharpe_ax, volatility_ax = figure.axes
    returns = run.returns["strategy"].iloc[1:]
    expected = returns.rolling(40).mean() / returns.rolling(40).std() * np.sqrt(252)
    np.testing.assert_allclose(_line(sharpe_ax, run.label).get_ydata(), expected.dropna(), rtol=1e-8)
    volatility = volatility_ax.get_lines()[0].get_ydata()
    np.testing.assert_allclose(volatility, returns.rolling(40).std().dropna() * np.sqrt(252) * 100, rtol=1e-8)
    with pytest.raises(ValueError, match="fewer than the window"):
        plots.rolling(run, window=10_000)


def test_monthly_heatmap_holds_each_months_compounded_return(runs):
    run = runs["momentum"]
    grid = np.ma.filled(plots.monthly_returns(run).axes[0].get_images()[0].get_array().astype(float), np.nan)
    returns = run.returns["strategy"].iloc[1:]
    compounded = (1 + returns).groupby([returns.index.year, returns.index.month]).prod() - 1
    years = sorted(set(returns.index.year))
    expected = np.full((len(years), 12), np.nan)
    for (year, month), value in compounded.items():
        expected[years.index(year), month - 1] = value * 100
    np.testing.assert_allclose(grid, expected, rtol=1e-9)
    assert np.isnan(grid).sum() == 12 * len(years) - len(compounded)


def test_exposure_plot_and_router_timeline(runs):
    run = runs["llmoe"]
    figure = plots.exposure(run)
    exposure_ax, turnover_ax = figure.axes
    heights = np.array([bar.get_height() for bar in turnover_ax.patches])
    np.testing.assert_allclose(heights, run.turnover * 100)
    assert set(np.round(run.exposure.unique(), 9)) <= {0.0, 1.0}  # All-in All-out
    np.testing.assert_allclose(_line(exposure_ax, "gross exposure at the close").get_ydata(), run.gross_exposure())
    timeline = plots.router_timeline(run)
    labels = run.router()
    texts = " ".join(t.get_text() for t in timeline.axes[0].get_legend().get_texts())
    for label in ("Optimistic", "Pessimistic"):
        mine = labels[labels["label"] == label]
        assert f"{label} ({len(mine)}, right {mine['right'].dropna().astype(float).mean():.0%})" in texts


def test_ranking_plots(runs):
    run = runs["tradexpert"]
    figure = plots.rank_ic(run)
    heights = np.array([bar.get_height() for bar in figure.axes[0].patches])
    np.testing.assert_allclose(heights, run.rank_ic())
    grid = plots.ranks(run).axes[0].get_images()[0].get_array()
    rankings = run.table("rankings")
    assert grid.shape == (4, rankings["date"].nunique()) and np.nanmax(grid) == 4 and np.nanmin(grid) == 1


def test_compare_plot(runs):
    lined = tradesim.open_runs([runs["momentum"], runs["llmoe"]])
    axes = plots.compare(lined).axes[0]
    np.testing.assert_array_equal(_line(axes, lined.labels[1]).get_ydata(), lined.equity[lined.labels[1]])


def test_tearsheet_is_quantstats_on_the_runs_returns(runs, tmp_path):
    pytest.importorskip("quantstats")
    run = runs["momentum"]
    table = run.tearsheet()
    assert list(table.columns) == ["Benchmark", "Strategy"]
    assert float(table.loc["Cumulative Return", "Strategy"]) == pytest.approx(run.metrics["total_return"], abs=0.006)
    page = run.tearsheet(tmp_path / "tear.html")
    assert page.exists() and run.label in page.read_text()


def test_tearsheet_measures_the_whole_benchmark_even_when_the_strategy_starts_flat(runs, tmp_path):
    pytest.importorskip("quantstats")
    dates = pd.read_csv(runs["data"] / "AAA.csv")["Date"]
    signals = tmp_path / "signals.csv"
    signals.write_text("date,ticker,weight\n" + "".join(f"{day},AAA,{0.0 if i < 60 else 1.0}\n" for i, day in enumerate(dates)))
    run = tradesim.backtest("signals", "AAA", signals=str(signals), data=str(runs["data"]), progress=False)
    assert (run.returns["strategy"].iloc[:50] == 0).all()  # the strategy waits 60 sessions before it buys
    table = run.tearsheet()
    shown = float(table.loc["Cumulative Return", "Benchmark"])
    assert shown == pytest.approx(run.benchmark_metrics["total_return"], abs=0.006)

