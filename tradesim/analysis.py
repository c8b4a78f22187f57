"""The analysis API: a backtest run as pandas objects, from its run directory or from memory.

`open_run(path)` reads a finished run directory; `open_runs([...])` lines several up;
`backtest(strategy=..., tickers=..., **options)` runs one from Python with the CLI's names and
checks. Opening is read-only and cheap: the equity curve and metrics are read when first asked
for, decisions and side tables (reports, comparisons, rankings) only when used. Parts that need
prices (`prices`, `realized`, `rank_ic`) read the run's data source again and refuse when it no
longer matches the fingerprint in run.json.

Every frame uses the columns `strategy` and `benchmark` (equity.csv calls the first `equity`).
"""

from __future__ import annotations

import dataclasses
import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.metrics import ANNUALIZATION
from tradesim.runs import run_label

if TYPE_CHECKING:
    from tradesim.backtesting import BacktestResult
    from tradesim.config import RunConfig
    from tradesim.market.data import MarketData

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
            from tradesim.report import manifest

            return manifest(self._result, None)
        return self._json("run.json")

    @cached_property
    def _metrics(self) -> dict[str, Any]:
        return self._result.metrics if self._result is not None else self._json("metrics.json")

    @property
    def name(self) -> str:
        return self.path.name if self.path else self.label

    @property
    def label(self) -> str:
        return run_label(self.info, self._metrics)

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
        return bool(self._metrics.get("look_ahead"))

    @cached_property
    def metrics(self) -> pd.Series:
        """The strategy's metrics (nested blocks as dotted names, e.g. `ranking.rank_ic_mean`)."""
        return _metric_series({k: v for k, v in self._metrics.items() if k not in RESULT_KEYS}, self.label)

    @cached_property
    def benchmark_metrics(self) -> pd.Series:
        return _metric_series({k: v for k, v in self._metrics["benchmark"].items() if k != "name"}, self._metrics["benchmark"]["name"])

    @property
    def benchmark_name(self) -> str:
        return self._metrics["benchmark"]["name"]

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
    @cached_property
    def decisions(self) -> pd.DataFrame:
        """One row per decision and ticker; what the strategy logged, nested values as dotted
        columns where they are scalar (lists such as the news used stay lists)."""
        if self._result is not None:
            rows = self._result.decisions
        else:
            rows = []
            path = self.path / "decisions.jsonl"
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise TradesimError(f"{path}: line {number} is not valid JSON ({error})") from None
        return decision_frame(rows)

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
        from tradesim.market.data import load_market_data

        config, recorded = self.info["config"], self.info["data"]
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
        from tradesim.market.features import fill_to_fill_returns

        horizon = horizon or int(self._metrics.get("ranking", self._metrics.get("prediction", {})).get("horizon", 1))
        returns = fill_to_fill_returns(self.market_data.bars, self._metrics["fill"], horizon)
        return returns.reindex(self.weights.index)

    def scores(self) -> pd.DataFrame:
        """The strategy's ranking scores, decision dates x tickers (from the `rankings` table)."""
        rankings = self.table("rankings")
        return rankings.pivot(index="date", columns="ticker", values="score").reindex(columns=self.tickers)

    def rank_ic(self) -> pd.Series:
        """RankIC per decision date (Spearman across tickers of score against realized return),
        the series whose mean metrics.json reports."""
        from tradesim.metrics import daily_rank_ic

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
            weights, bars["close"], bars["open"] if self.market_data.has_ohlc else None, fill=self._metrics["fill"],
            cost_bps=config["cost_bps"], slippage_bps=config["slippage_bps"], capital=config["capital"], start=weights.index[0],
        )

    def tearsheet(self, output: str | Path | None = None, title: str | None = None):
        """quantstats' HTML tear sheet of the strategy against its benchmark, written to `output`
        (returns its path); without `output`, quantstats' metrics table as a DataFrame."""
        try:
            import quantstats
        except ImportError:
            raise TradesimError("tearsheet: needs quantstats (pip install -e '.[notebooks]')") from None
        import logging

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
        from tradesim import plots

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


def backtest(
    strategy: str | None = None,
    tickers: str | Iterable[str] | None = None,
    *,
    ticker: str | None = None,
    config: str | Path | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    params: dict[str, Any] | None = None,
    **options: Any,
) -> Run:
    """Run a backtest from Python, with the names of `tradesim backtest`'s flags (`data=`,
    `train_end=`, `fill=`, `cost_bps=` ...; `config=` a TOML file) and the strategy's own
    parameters by name (`lookback=60`, `router="minilm"`), checked the same way. Returns the run,
    in memory, or written to `out` (and read from there) when given."""
    from tradesim.backtesting import run_backtest

    if ticker is not None and tickers is not None:
        raise TradesimError("ticker and tickers: give one of them, not both")
    chosen = ticker if ticker is not None else tickers
    if chosen is not None and not isinstance(chosen, str):
        chosen = ",".join(chosen)
    run_options, strategy_params = _split_options(options)
    values = {"strategy": strategy, "tickers": chosen, "out": None if out is None else str(out), **run_options}
    resolved, strategy_class = configure(config, values, {**(params or {}), **strategy_params})
    if resolved.out:
        from tradesim.report import check_run_dir

        check_run_dir(Path(resolved.out), overwrite)
    bar = _StageBar(progress)
    try:
        result = run_backtest(resolved, strategy_class, progress=progress, on_stage=bar.stage)
    finally:
        bar.close()
    if resolved.out:
        from tradesim.report import write_run_directory

        return Run(write_run_directory(result, Path(resolved.out), argv=None, overwrite=overwrite))
    return Run(result=result)


def configure(
    config_path: str | Path | None, options: dict[str, Any], params: dict[str, Any] | Callable[[type], dict[str, Any]]
) -> tuple[RunConfig, type]:
    """A checked RunConfig and its strategy class from a config file (or none), run options (None:
    not given) and the strategy's parameters by name (or a function of its class giving them, for
    flags that only the class can read): what `tradesim backtest` and `tradesim.backtest()` both do
    before running."""
    from strategies import get_strategy
    from tradesim.config import read_toml, resolve

    file_values = read_toml(Path(config_path)) if config_path else {}
    name = options.get("strategy") or file_values.get("strategy")
    if not name:
        raise TradesimError("--strategy: no strategy given (see `tradesim strategies`)")
    strategy_class = get_strategy(str(name))
    given = params(strategy_class) if callable(params) else params
    config = resolve(file_values, {**options, "params": given}, origin=str(config_path) if config_path else "options")
    return dataclasses.replace(config, params=strategy_class.resolve_params(config.params)), strategy_class


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from tradesim.config import KEYS

    run_keys = set(KEYS) - {"strategy", "tickers", "ticker", "out", "params"}
    return {k: v for k, v in options.items() if k in run_keys}, {k: v for k, v in options.items() if k not in run_keys}


class _StageBar:
    """A progress bar over the backtest's stages (a widget in Jupyter, text in a terminal)."""

    STAGES = ("load", "fit", "decide", "simulate")

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(self.STAGES), desc="backtest", leave=False)

    def stage(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(name)
            if name != self.STAGES[0]:
                self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class PaperAccount:
    """A paper account's ledger as pandas objects (read when asked for; the ledger is not changed)."""

    def __init__(self, name: str, home: str | Path | None = None):
        from tradesim.paper.account import account_dir

        self.name = name
        self.directory = account_dir(name, None if home is None else Path(home))
        self._read(lambda ledger: None)  # refuses a missing or damaged ledger now, with its message

    def __repr__(self) -> str:
        return f"<PaperAccount {self.name} at {self.directory}>"

    def _read(self, read):
        from tradesim.paper.ledger import Ledger

        ledger = Ledger.open(self.directory, readonly=True)
        try:
            return read(ledger)
        finally:
            ledger.close()

    @property
    def config(self) -> dict[str, Any]:
        return self._read(lambda ledger: ledger.meta())["config"]

    @property
    def equity(self) -> pd.DataFrame:
        """Per processed session: the account's equity (`strategy`), the benchmark's, cash, whether
        the decision was late, and the epoch."""
        from tradesim.paper.account import equity_frame

        return self._read(equity_frame).rename(columns={"equity": "strategy"})

    @property
    def returns(self) -> pd.DataFrame:
        return self.equity[["strategy", "benchmark"]].pct_change().fillna(0.0)

    @property
    def fills(self) -> pd.DataFrame:
        rows = self._read(lambda ledger: ledger.query("SELECT session, book, ticker, side, shares, price, fees, order_id FROM fills ORDER BY session, rowid"))
        frame = pd.DataFrame(rows, columns=["date", "book", "ticker", "side", "shares", "price", "fees", "order_id"])
        frame["date"] = pd.to_datetime(frame["date"])
        return frame

    @property
    def orders(self) -> pd.DataFrame:
        """Tomorrow's orders, with the reason for each (what `tradesim paper orders` prints)."""
        from tradesim.paper.account import pending_orders

        return self._read(pending_orders)

    @property
    def positions(self) -> pd.DataFrame:
        """The account's shares (as printed) after each session, sessions x tickers."""
        rows = self._read(lambda ledger: ledger.query("SELECT session, ticker, shares FROM positions WHERE book = 'account'"))
        frame = pd.DataFrame(rows, columns=["date", "ticker", "shares"]).pivot(index="date", columns="ticker", values="shares")
        frame.index = pd.DatetimeIndex(frame.index, name="date")
        return frame

    @property
    def decisions(self) -> pd.DataFrame:
        """One row per decision and ticker: weight, action and the strategy's log, flattened."""
        rows = self._read(lambda ledger: ledger.query("SELECT session, ticker, weight, action, log FROM decisions ORDER BY session, ticker"))
        return decision_frame([{"date": s, "ticker": t, **json.loads(log), "weight": w, "action": a} for s, t, w, a, log in rows])

    def table(self, name: str) -> pd.DataFrame:
        """A side table kept per session (TradExpert's `rankings`, `comparisons`, `reports`)."""
        from tradesim.paper.account import side_table

        frame = self._read(lambda ledger: side_table(ledger, name))
        if frame.empty:
            raise TradesimError(f"paper account {self.name}: no side table {name!r}")
        frame["date"] = pd.to_datetime(frame["date"])
        return frame

    def status(self, now: str | None = None) -> dict[str, Any]:
        """What `tradesim paper status` shows, as a dictionary."""
        from tradesim.paper.account import parse_now, status_of

        return status_of(self.name, parse_now(now), self.directory.parent.parent)

    @cached_property
    def backtest(self) -> pd.Series:
        """`tradesim backtest` of the account's sessions with its fitted state: the equity curve the
        account should equal (it runs the backtest once, when first asked for)."""
        from tradesim.paper.account import backtest_equity

        return self._read(backtest_equity).rename("backtest")


def open_paper(name: str, home: str | Path | None = None) -> PaperAccount:
    """A paper account (`$TRADESIM_HOME/paper/NAME`, or under `home`) as a `PaperAccount`."""
    return PaperAccount(name, home)
