"""Reading finished runs: `Run` (one run directory, or a backtest in memory, as pandas objects),
`Runs` (several lined up), one decision explained, several runs compared in a table.

Opening is read-only and cheap: the equity curve and metrics are read when first asked for,
decisions and side tables (reports, comparisons, rankings) only when used. Parts that need prices
(`prices`, `realized`, `rank_ic`) read the run's data source again and refuse when it no longer
matches the fingerprint in run.json. Every frame uses the columns `strategy` and `benchmark`
(equity.csv calls the first `equity`).
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np
import pandas as pd

from tradesim import plots
from tradesim.errors import TradesimError
from tradesim.market.data import IN_MEMORY, load_market_data
from tradesim.market.features import fill_to_fill_returns
from tradesim.metrics import ANNUALIZATION, daily_rank_ic, format_metric
from tradesim.rundir import manifest

if TYPE_CHECKING:
    from tradesim.backtesting import BacktestResult
    from tradesim.market.data import MarketData

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


def explain_decision(run_dir: Path, day: str, ticker: str | None) -> str:
    """One decision of a run directory: what the strategy saw (prompt, news) and said, the action,
    and a ranking run's reports, comparisons and rank that day."""
    run = Run(run_dir)
    rows = run.decision_records()
    matching = [r for r in rows if r["date"] == day and (ticker is None or r["ticker"] == ticker.upper())]
    if not matching:
        dates = sorted({r["date"] for r in rows})
        span = f"{dates[0]}..{dates[-1]}" if dates else "none"
        where = run.path / "decisions.jsonl"
        raise TradesimError(f"--date {day}: no decision{' for ' + ticker.upper() if ticker else ''} in {where} (decisions cover {span})")
    if len(matching) > 1:
        raise TradesimError(f"--ticker: the run decides for {', '.join(r['ticker'] for r in matching)} on {day}; name one")
    row = dict(matching[0])
    lines = [f"{row.pop('date')} {row.pop('ticker')} — strategy {run.strategy}"]
    if row.pop("look_ahead", False):
        lines.append("LOOK-AHEAD: this decision used the realized next move (oracle upper bound)")
    prompt = row.pop("prompt", None)
    news = row.pop("news", None)
    if prompt:
        lines += ["", "prompt:", *("  " + line for line in prompt.splitlines())]
    if news is not None:
        lines += ["", f"news used ({len(news)}):", *(f"  {item['id']} visible {item['visible_at']}" for item in news)]
    fold = row.pop("fold", None)
    if fold is not None:
        known = {item["fold"]: item for item in run.results.get("folds") or []}.get(fold, {})
        models = ", ".join(str(m.get("id", "?"))[:12] for m in known.get("fitted_models") or [] if isinstance(m, dict)) or "none recorded"
        lines += ["", (
            f"walk-forward fold {fold}: fitted as of {known.get('train_last')} on sessions from {known.get('train_first')} "
            f"(training labels {' to '.join(known.get('training_period') or ['?'])}), tests {known.get('test_first')}..{known.get('test_last')}; "
            f"fitted models {models}"
        )]
    cutoffs = row.pop("model_cutoff", None)
    if cutoffs:
        known = run.results.get("by_model_cutoff") or {}
        words = {"before": "on or before", "near": "just after (within the embargo of)", "after": "after"}
        lines += ["", "models' training cutoffs:", *(
            f"  {spec}: decided {words[label]} its cutoff {known.get(spec, {}).get('cutoff')}"
            + (" — the model may have read what followed this day" if label != "after" else "")
            for spec, label in cutoffs.items()
        )]
    action = (row.pop("weight"), row.pop("action"))
    lines += ["", "outputs:", *(f"  {key}: {value}" for key, value in row.items())]
    fill = run.info["resolved"]["fill"]
    when = "at this session's close (same-close)" if fill == "same-close" else f"at the next session, {fill}"
    lines += ["", f"action: {action[1]} -> target weight {action[0]:g} (filled {when})"]
    lines += _side_tables(run, pd.Timestamp(day), matching[0]["ticker"])
    return "\n".join(lines)


def _side_tables(run: Run, day: pd.Timestamp, ticker: str, shown: int = 10) -> list[str]:
    """A ranking run's reports on the ticker that day, the comparisons it took part in, its rank."""
    lines: list[str] = []
    tables = run.tables
    if "reports" in tables:
        reports = run.table("reports")
        mine = reports[(reports["date"] == day) & (reports["ticker"] == ticker)]
        lines += ["", "reports:", *(f"  {row.expert}: {row.report}" for row in mine.itertuples())]
    if "comparisons" in tables:
        comparisons = run.table("comparisons")
        today = comparisons[comparisons["date"] == day]
        mine = today[(today["a"] == ticker) | (today["b"] == ticker)]
        lines += ["", f"comparisons ({len(mine)} of {len(today)} that day; P = probability the first returns more):"]
        for row in mine.head(shown).itertuples():
            other, p = (row.b, row.p_a_beats_b) if row.a == ticker else (row.a, 1 - row.p_a_beats_b)
            lines.append(f"  {ticker} vs {other}: {p:.3f} -> {'won' if p > 0.5 else 'lost' if p < 0.5 else 'even'}")
        if len(mine) > shown:
            lines.append(f"  ... {len(mine) - shown} more in comparisons.parquet")
    if "rankings" in tables:
        rankings = run.table("rankings")
        today = rankings[rankings["date"] == day]
        mine = today[today["ticker"] == ticker]
        if not mine.empty and pd.notna(mine["rank"].iloc[0]):
            row = mine.iloc[0]
            lines += ["", f"rank {int(row['rank'])} of {len(today)} (score {row['score']:.3f}; {int(row['comparisons'])} comparisons, "
                      f"{int(row['cycles'])} cycles that day){'; held' if row['held'] else ''}"]
    return lines


def run_label(run: dict[str, Any], metrics: dict[str, Any]) -> str:
    """What a run is, in a few words: the label its strategy gave itself (its router, its ranking
    set-up; runs written before labels were recorded: the strategy's name) and the look-ahead flag."""
    strategy = run["strategy"]
    label = strategy.get("label") or strategy["name"]
    if metrics.get("look_ahead"):
        label += " [LOOK-AHEAD]"
    return label


def compare_runs(run_dirs: Iterable[str | Path], reps: int = 2000, seed: int = 0) -> str:
    """Several run directories' metrics in one plain-text table, with the first run's benchmark;
    each run's Sharpe interval and deflated Sharpe, and Hansen's SPA p-value of each run against
    the first (small: it beats the first one) on the sessions both have."""
    from tradesim.evidence.significance import spa_pvalue
    from tradesim.report import interval_text

    header = ["run", "strategy", *(label for _, label in COMPARED), "Sharpe 95%", "DSR", "SPA p vs first"]
    table = []
    benchmark = first = None
    periods = set()
    runs = [Run(path) for path in run_dirs]
    for run in runs:
        metrics = run.results
        values = {**metrics, "rank_ic_mean": metrics.get("ranking", {}).get("rank_ic_mean")}
        returns = run.daily_returns
        if first is None:
            first, spa = returns, "(first)"
        else:
            both = pd.concat([returns, first], axis=1, join="inner").dropna()
            p = spa_pvalue(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy(), reps=reps, seed=seed) if len(both) > 10 else None
            spa = "n/a" if p is None else f"{p:.3f}"
        deflated = (metrics.get("significance") or {}).get("deflated_sharpe")
        table.append([
            run.name, run.label, *(format_metric(key, values.get(key)) for key, _ in COMPARED),
            interval_text(metrics, "sharpe") or "n/a", format_metric("sharpe", deflated), spa,
        ])
        benchmark = benchmark or (metrics["benchmark"], metrics["period"])
        periods.add((metrics["period"]["first_decision"], metrics["period"]["last_session"]))
    if benchmark is not None:
        block, period = benchmark
        table.append(["", block["name"], *(format_metric(key, block.get(key)) for key, _ in COMPARED), "", "", ""])
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) if i < 2 else str(cell).rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in [header, *table]]
    lines.insert(1, "-" * len(lines[0]))
    if benchmark is not None:
        lines.append(f"(benchmark of the first run, {benchmark[1]['first_decision']}..{benchmark[1]['last_session']})")
    if len(periods) > 1:
        lines.append("warning: the runs cover different periods; their metrics are not directly comparable")
    lines.append(
        "~0: the Sharpe's 95% interval contains zero; DSR: deflated Sharpe over the trials of the run's study when it ran "
        "(`tradesim trials --study` recomputes it over all of them); SPA p: Hansen's test of the run against the first"
    )
    lines += _cutoff_comparison(runs, reps, seed)
    return "\n".join(lines)


def _earned_labels(run: Run, spec: str) -> pd.Series:
    """Each of the run's daily returns labelled before / near / after the model's cutoff, like the
    decision that earned it."""
    from tradesim.evidence.cutoffs import returns_labels

    labels = {pd.Timestamp(row["date"]): row["model_cutoff"][spec] for row in run.decision_records() if spec in (row.get("model_cutoff") or {})}
    decided = pd.Series(labels, dtype=object).sort_index()
    returns = run.daily_returns
    return returns_labels(decided, returns.index).rename("label").to_frame().assign(returns=returns)


def _cutoff_comparison(runs: list[Run], reps: int, seed: int) -> list[str]:
    """Each run's Sharpe before and after its models' training cutoffs, and, for runs that share
    the first run's model (e.g. raw against anonymized prompts), the difference in differences:
    how much more the first run gains over the other before the cutoff than after it. Anonymizing
    removes some information at all times; what it removes only before the cutoff is what the
    model remembered."""
    from tradesim.evidence.significance import contains_zero, sharpe_gap_change

    lines = []
    for run in runs:
        for spec, split in (run.results.get("by_model_cutoff") or {}).items():
            if split.get("decisions") is None:
                lines.append(f"{run.name}: {spec} has no known training cutoff")
                continue
            parts = []
            for label in ("before", "after"):
                part = split.get(label) or {}
                interval = part.get("sharpe_interval")
                sharpe = part.get("sharpe")
                parts.append(f"{label}: {split['decisions'][label]} decisions, Sharpe {'n/a' if sharpe is None else f'{sharpe:.2f}'}"
                             + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""))
            lines.append(f"{run.name}: {spec} (cutoff {split['cutoff']}): " + "; ".join(parts))
    first = runs[0]
    for spec in (first.results.get("by_model_cutoff") or {}):
        for other in runs[1:]:
            if spec not in (other.results.get("by_model_cutoff") or {}) or first.results["by_model_cutoff"][spec].get("decisions") is None:
                continue
            mine = _earned_labels(first, spec)
            both = mine.join(other.daily_returns.rename("other"), how="inner").dropna()
            before, after = both[both["label"] == "before"], both[both["label"] == "after"]
            if len(before) < 3 or len(after) < 3:
                lines.append(f"{first.name} against {other.name}: too few sessions on one side of {spec}'s cutoff for a difference in differences")
                continue
            value, interval = sharpe_gap_change(
                (before["returns"].to_numpy(), before["other"].to_numpy()), (after["returns"].to_numpy(), after["other"].to_numpy()),
                annualization=ANNUALIZATION, reps=reps, seed=seed,
            )
            shown = f"{value:+.2f}" + ("" if interval is None else f" (95% interval {interval[0]:+.2f} to {interval[1]:+.2f}"
                                       + (": not distinguishable from zero)" if contains_zero(interval) else ")"))
            lines.append(
                f"difference in differences, {first.name} minus {other.name}, Sharpe gap before {spec}'s cutoff minus after it: {shown}; "
                "positive: the first run gains more where the model may remember"
            )
    return lines


REQUIRED = ("run.json", "metrics.json", "equity.csv")
RESULT_KEYS = ("benchmark", "annualization", "risk_free", "look_ahead", "look_ahead_reasons", "fill", "ruined", "period")


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dictionaries as dotted keys (`ranking.rank_ic_mean`); lists and scalars as they are."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _metric_series(values: dict[str, Any], name: str) -> pd.Series:
    """Scalar metrics as a Series (None: NaN); blocks of them under dotted names."""
    scalars = {k: np.nan if v is None else v for k, v in _flat(values).items() if not isinstance(v, list)}
    return pd.Series(scalars, name=name)


def decision_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Decision records (date, ticker, the strategy's log, weight, action) as one frame, nested
    values as dotted columns; lists (the news used) stay lists."""
    frame = pd.json_normalize(records) if records else pd.DataFrame(columns=["date", "ticker", "weight", "action"])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


class Run:
    """One backtest: its equity, returns, drawdown, weights, trades, decisions, metrics and config."""

    def __init__(self, path: str | Path | None = None, *, result: BacktestResult | None = None):
        if path is None and result is None:
            raise TypeError("Run needs a run directory or a BacktestResult")
        self.path = None if path is None else Path(path)
        self._result = result
        if result is None:
            missing = [name for name in REQUIRED if not (self.path / name).is_file()]
            if not self.path.is_dir():
                raise TradesimError(f"{self.path}: no such run directory")
            if missing:
                raise TradesimError(f"{self.path}: not a finished run directory (no {', '.join(missing)})")

    def __repr__(self) -> str:
        period = self.info["resolved"]
        where = f" at {self.path}" if self.path else " (in memory)"
        return f"<Run {self.label}: {period['first_decision']}..{period['last_session']}{where}>"

    # ------------------------------------------------------------------ what the run is
    def _json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except json.JSONDecodeError as error:
            raise TradesimError(f"{self.path / name}: not valid JSON ({error})") from None

    @cached_property
    def info(self) -> dict[str, Any]:
        """run.json: the command, the resolved configuration, data fingerprint, models, versions."""
        if self._result is not None:
            return manifest(self._result, None)
        return self._json("run.json")

    @cached_property
    def results(self) -> dict[str, Any]:
        """metrics.json as written: the strategy's metrics, its benchmark block, the period, the fill."""
        return self._result.metrics if self._result is not None else self._json("metrics.json")

    @property
    def name(self) -> str:
        return self.path.name if self.path else self.label

    @property
    def label(self) -> str:
        return run_label(self.info, self.results)

    @property
    def strategy(self) -> str:
        return self.info["strategy"]["name"]

    @property
    def config(self) -> dict[str, Any]:
        """The resolved configuration (the keys of a config file; `params` the strategy's)."""
        return {**self.info["config"], "params": self.info["strategy"].get("params", {})}

    @property
    def tickers(self) -> list[str]:
        return list(self.info["data"]["tickers"])

    @property
    def notes(self) -> list[str]:
        return list(self.info.get("notes", []))

    @property
    def look_ahead(self) -> bool:
        return bool(self.results.get("look_ahead"))

    @cached_property
    def metrics(self) -> pd.Series:
        """The strategy's metrics (nested blocks as dotted names, e.g. `ranking.rank_ic_mean`)."""
        return _metric_series({k: v for k, v in self.results.items() if k not in RESULT_KEYS}, self.label)

    @cached_property
    def benchmark_metrics(self) -> pd.Series:
        return _metric_series({k: v for k, v in self.results["benchmark"].items() if k != "name"}, self.results["benchmark"]["name"])

    @property
    def benchmark_name(self) -> str:
        return self.results["benchmark"]["name"]

    # ------------------------------------------------------------------ curves
    @cached_property
    def equity(self) -> pd.DataFrame:
        """Equity of the strategy and of its benchmark at each session's close."""
        if self._result is not None:
            frame = pd.DataFrame({"strategy": self._result.simulation.equity, "benchmark": self._result.benchmark.equity})
        else:
            frame = pd.read_csv(self.path / "equity.csv", index_col="date", parse_dates=True).rename(columns={"equity": "strategy"})
        frame.index = pd.DatetimeIndex(frame.index, name="date")
        return frame[["strategy", "benchmark"]]

    @property
    def returns(self) -> pd.DataFrame:
        """Daily simple returns of the equity curves (the first session is 0, as in the metrics)."""
        return self.equity.pct_change().fillna(0.0)

    @property
    def daily_returns(self) -> pd.Series:
        """The strategy's return on each session after the first: what its evidence is computed from."""
        return self.equity["strategy"].pct_change().iloc[1:]

    @property
    def drawdown(self) -> pd.DataFrame:
        """Equity against its running peak, minus one (0 at a new high, -0.2 twenty percent under)."""
        return self.equity / self.equity.cummax() - 1

    @cached_property
    def weights(self) -> pd.DataFrame:
        """Target weights, decision dates x tickers (filled at the next session under next-* fills)."""
        if self._result is not None:
            frame = self._result.weights.copy()
        else:
            long = pd.read_csv(self.path / "weights.csv", parse_dates=["date"])
            frame = long.pivot(index="date", columns="ticker", values="weight").reindex(columns=self.tickers)
        frame.index = pd.DatetimeIndex(frame.index, name="date")
        frame.columns.name = "ticker"
        return frame

    @cached_property
    def trades(self) -> pd.DataFrame:
        """One row per fill: date, ticker, side, shares, price, value, fees (and a note)."""
        if self._result is not None:
            frame = self._result.simulation.trades.copy()
        else:
            frame = pd.read_csv(self.path / "trades.csv", parse_dates=["date"])
        return frame.reset_index(drop=True)

    @property
    def exposure(self) -> pd.Series:
        """Target gross exposure (sum of |weight|) held from each decision until the next one, at
        every session of the equity curve; drift between rebalances is not included."""
        gross = self.weights.abs().sum(axis=1)
        return gross.reindex(self.equity.index.union(gross.index)).ffill().reindex(self.equity.index).fillna(0.0).rename("exposure")

    def gross_exposure(self) -> pd.Series:
        """|position value| / equity at each close, the positions rebuilt from the fills and marked at
        the adjusted closes (reads the data source; its mean after the first close is metrics.json's
        `exposure`)."""
        if self._result is not None:
            return self._result.simulation.gross_exposure.rename("gross_exposure")
        trades, index = self.trades, self.equity.index
        if trades.empty:
            return pd.Series(0.0, index=index, name="gross_exposure")
        signed = trades["shares"].where(trades["side"] == "buy", -trades["shares"])
        held = signed.groupby([trades["date"], trades["ticker"]]).sum().unstack(fill_value=0.0).reindex(index, fill_value=0.0).cumsum()
        value = (held * self.prices.reindex(index=index, columns=held.columns)).abs().sum(axis=1)
        return (value / self.equity["strategy"]).rename("gross_exposure")

    @property
    def turnover(self) -> pd.Series:
        """One-way turnover each session: half the traded value over the equity at the close
        before (its annualized mean is metrics.json's `turnover`)."""
        equity = self.equity["strategy"]
        traded = self.trades.groupby("date")["value"].sum().reindex(equity.index, fill_value=0.0) if len(self.trades) else equity * 0.0
        return (traded / equity.shift(1).fillna(equity.iloc[0]) / 2).rename("turnover")

    # ------------------------------------------------------------------ decisions and side tables
    def decision_records(self) -> list[dict[str, Any]]:
        """decisions.jsonl as written: one dictionary per decision and ticker."""
        if self._result is not None:
            return list(self._result.decisions)
        rows = []
        path = self.path / "decisions.jsonl"
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise TradesimError(f"{path}: line {number} is not valid JSON ({error})") from None
        return rows

    @cached_property
    def decisions(self) -> pd.DataFrame:
        """One row per decision and ticker; what the strategy logged, nested values as dotted
        columns where they are scalar (lists such as the news used stay lists)."""
        return decision_frame(self.decision_records())

    @property
    def tables(self) -> list[str]:
        """Names of the side tables the strategy wrote (reports, comparisons, rankings ...)."""
        if self._result is not None:
            return sorted(self._result.strategy.side_tables())
        return sorted(p.stem for p in self.path.glob("*.parquet"))

    def table(self, name: str) -> pd.DataFrame:
        """One side table (`rankings`, `comparisons`, `reports`, ...), read when asked for."""
        held = self._result.strategy.side_tables() if self._result is not None else None
        names = sorted(held) if held is not None else self.tables
        if name not in names:
            raise TradesimError(f"{self.name}: no side table {name!r} (this run has: {', '.join(names) or 'none'})")
        if held is not None:
            frame = held[name]
        else:
            try:
                frame = pd.read_parquet(self.path / f"{name}.parquet")
            except (OSError, ValueError) as error:
                raise TradesimError(f"{self.path / name}.parquet: not a readable Parquet table ({error})") from None
        frame = frame.copy()
        if "date" in frame:
            frame["date"] = pd.to_datetime(frame["date"])
        return frame

    # ------------------------------------------------------------------ what needs prices again
    @cached_property
    def market_data(self) -> MarketData:
        """The run's market data, loaded again from its source and checked against its fingerprint."""
        if self._result is not None:
            return self._result.data
        config, recorded = self.info["config"], self.info["data"]
        if config["data"] == IN_MEMORY:
            raise TradesimError(f"{self.path}: the run's bars were a DataFrame handed to tradesim.backtest(); they cannot be read back")
        data = load_market_data(config["data"], recorded["tickers"], config["start"], config["end"], config["news"], config["cutoff"], config["fundamentals"])
        if data.fingerprint != recorded["fingerprint"]:
            raise TradesimError(
                f"{self.path}: the data source {config['data']!r} no longer matches the run (fingerprint "
                f"{data.fingerprint[:12]}, the run used {recorded['fingerprint'][:12]}); prices cannot be read back"
            )
        return data

    @property
    def prices(self) -> pd.DataFrame:
        """Adjusted closes of the run's tickers, sessions x tickers."""
        return self.market_data.bars["close"]

    def realized(self, horizon: int | None = None) -> pd.DataFrame:
        """Per decision date, the fill-to-fill return a position decided then earned over `horizon`
        sessions (default: the strategy's), decision dates x tickers."""
        horizon = horizon or int(self.results.get("ranking", self.results.get("prediction", {})).get("horizon", 1))
        returns = fill_to_fill_returns(self.market_data.bars, self.results["fill"], horizon)
        return returns.reindex(self.weights.index)

    def scores(self) -> pd.DataFrame:
        """The strategy's ranking scores, decision dates x tickers (from the `rankings` table)."""
        rankings = self.table("rankings")
        return rankings.pivot(index="date", columns="ticker", values="score").reindex(columns=self.tickers)

    def rank_ic(self) -> pd.Series:
        """RankIC per decision date (Spearman across tickers of score against realized return),
        the series whose mean metrics.json reports."""
        scores = self.scores()
        return daily_rank_ic(scores, self.realized().reindex(scores.index)).rename("rank_ic")

    def router(self, ticker: str | None = None) -> pd.DataFrame:
        """The router's label on each decision date (LLMoE and its router ablations) with its
        probability, the target weight, the next fill-to-fill move and whether the label was right
        (Optimistic before a rise, Pessimistic before a fall; NaN without a label or a move)."""
        decisions = self.decisions
        if "router_label" not in decisions:
            raise TradesimError(f"{self.name}: strategy {self.strategy} has no router labels (LLMoE and its router ablations do)")
        ticker = (ticker or self.tickers[0]).upper()
        mine = decisions[decisions["ticker"] == ticker].set_index("date")
        move = self.realized(1)[ticker].reindex(mine.index)
        label = mine["router_label"]
        right = ((label == "Optimistic") & (move > 0)) | ((label == "Pessimistic") & (move < 0))
        frame = pd.DataFrame({
            "label": label,
            "probability": mine.get("router_probability"),
            "weight": mine["weight"],
            "move": move,
            "right": right.astype(object).where(label.notna() & move.notna()),
        })
        frame.attrs["ticker"] = ticker
        return frame

    # ------------------------------------------------------------------ tear sheets and plots
    def to_vectorbt(self):
        """The run as a vectorbt Portfolio (the `vectorbt` extra): its weights over its data, with its
        fill, costs and capital; its `value()` is the run's equity curve."""
        from tradesim.vectorbt_export import to_vectorbt

        bars, config = self.market_data.bars, self.info["config"]
        weights = self.weights
        return to_vectorbt(
            weights, bars["close"], bars["open"] if self.market_data.has_ohlc else None, fill=self.results["fill"],
            cost_bps=config["cost_bps"], slippage_bps=config["slippage_bps"], capital=config["capital"], start=weights.index[0],
        )

    def tearsheet(self, output: str | Path | None = None, title: str | None = None):
        """quantstats' HTML tear sheet of the strategy against its benchmark, written to `output`
        (returns its path); without `output`, quantstats' metrics table as a DataFrame."""
        try:
            import quantstats
        except ImportError:
            raise TradesimError("tearsheet: needs quantstats (pip install -e '.[notebooks]')") from None
        logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # quantstats asks for Arial
        returns = self.returns
        # match_dates=False: quantstats would otherwise cut both series to the strategy's first
        # non-zero return, and the benchmark it shows would not be the one metrics.json measured.
        if output is None:
            return quantstats.reports.metrics(
                returns["strategy"], returns["benchmark"], display=False, periods_per_year=ANNUALIZATION, match_dates=False
            )
        quantstats.reports.html(
            returns["strategy"], returns["benchmark"], output=str(output), title=title or self.label, periods_per_year=ANNUALIZATION, match_dates=False
        )
        return Path(output)

    def plot(self, ax=None):
        """Equity against the benchmark, with the drawdown under it (`tradesim.plots.equity`)."""
        return plots.equity(self, ax=ax)


class Runs:
    """Several runs lined up: their equity curves and metrics side by side, one column or row each."""

    def __init__(self, runs: Iterable[Run]):
        self.runs = list(runs)
        if not self.runs:
            raise TradesimError("open_runs: no run given")
        labels = [run.label for run in self.runs]
        labels = [label if labels.count(label) == 1 else f"{label} [{run.name}]" for label, run in zip(labels, self.runs)]
        self.labels = [label if labels.count(label) == 1 else f"{label} #{labels[:i].count(label) + 1}" for i, label in enumerate(labels)]

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs)

    def __getitem__(self, key: int | str) -> Run:
        if isinstance(key, str):
            return self.runs[self.labels.index(key)]
        return self.runs[key]

    @property
    def periods_differ(self) -> bool:
        return len({(r.info["resolved"]["first_decision"], r.info["resolved"]["last_session"]) for r in self.runs}) > 1

    @property
    def equity(self) -> pd.DataFrame:
        """Each run's equity (columns: labels) and the first run's benchmark."""
        frame = pd.concat([run.equity["strategy"].rename(label) for run, label in zip(self.runs, self.labels)], axis=1)
        frame[f"benchmark: {self.runs[0].benchmark_name}"] = self.runs[0].equity["benchmark"]
        return frame

    @property
    def returns(self) -> pd.DataFrame:
        return pd.concat([run.returns["strategy"].rename(label) for run, label in zip(self.runs, self.labels)], axis=1)

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per run (and one for the first run's benchmark), one column per metric."""
        rows = [run.metrics.rename(label) for run, label in zip(self.runs, self.labels)]
        rows.append(self.runs[0].benchmark_metrics.rename(f"benchmark: {self.runs[0].benchmark_name}"))
        return pd.DataFrame(rows)


def open_run(path: str | Path) -> Run:
    """A finished run directory as a `Run` (read-only; nothing is loaded until it is used)."""
    return Run(path)


def open_runs(paths: Iterable[str | Path | Run]) -> Runs:
    """Several run directories (or runs) lined up for comparison."""
    return Runs(p if isinstance(p, Run) else Run(p) for p in paths)
