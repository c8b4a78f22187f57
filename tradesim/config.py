"""The typed, frozen run configuration: a TOML file, overridden by command-line flags.

Unknown keys are errors (a typo must not become a silently ignored default). Strategy parameters
live in a `[params]` table and are checked against the chosen strategy's declared parameters.

```toml
strategy = "momentum"
tickers = ["MSFT", "AAPL"]
start = "2010-01-01"
train_end = "2018-01-01"
fill = "next-open"
cost_bps = 5

[params]
lookback = 60
top_k = 1
```
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradesim.errors import TradesimError
from tradesim.tickers import parse_tickers

FILL_MODES = ("next-open", "next-close", "same-close")
# What each fill convention means: the price an order fills at, and how many sessions after its
# decision. The engine's fills, paper nights and the returns learned parts predict all read this.
FILL_RULES = {"next-open": ("open", 1), "next-close": ("close", 1), "same-close": ("close", 0)}
SAME_CLOSE_FLAG = (
    "SAME-CLOSE FILLS: each decision fills at the close of its own session, as a market-on-close order that "
    "treats that close as known (the papers' convention); results are optimistic and not tradable as such"
)
CACHE_MODES = ("readwrite", "readonly", "off")
SIG_REPS_ENV = "TRADESIM_SIG_REPS"  # the default of sig_reps when neither a flag nor the config file gives it
ALL_TICKERS = "all"  # --tickers all: every ticker of the source (RunConfig.tickers is then empty)


# Where the public datasets are by default: ../shared/data beside the checkout (`--shared`).
SHARED_DEFAULT = "../shared/data"


def tradesim_home() -> Path:
    """Where tradesim keeps caches: $TRADESIM_HOME, default ~/.cache/tradesim."""
    return Path(os.environ.get("TRADESIM_HOME") or Path.home() / ".cache" / "tradesim")


@dataclass(frozen=True)
class RunConfig:
    strategy: str
    tickers: tuple[str, ...]
    data: str = "sample"
    news: str | None = None
    fundamentals: str | None = None
    start: str | None = None
    end: str | None = None
    train_end: str | None = None
    fill: str = "next-open"
    cost_bps: float = 0.0
    slippage_bps: float = 0.0
    capital: float = 100_000.0
    risk_free: float = 0.0
    max_gross: float = 1.0  # the most gross exposure (sum of |weights|) a decision may ask for
    cutoff: str = "16:00"
    seed: int = 0
    device: str = "auto"
    llm_cache: str = "readwrite"
    reuse_decisions: bool = True  # a rerun that changes only trading reuses the stored decision pass
    seeds: int = 1  # run the whole backtest with this many seeds (seed, seed+1, ...): mean and spread of every metric
    sig_reps: int = 2000  # bootstrap resamples of the significance block
    study: str | None = None  # the trial ledger's study (default: the data, tickers and test period)
    model_cutoffs: dict[str, str] = field(default_factory=dict)  # model spec -> training cutoff, beyond the shipped table
    cutoff_embargo_days: int = 90  # days after a model's stated cutoff that still count as "near" it
    require_post_cutoff: bool = False  # refuse a run whose decisions lie mostly before a model's cutoff
    walk_forward: int = 0  # learned strategies refit every this many test sessions (0: fit once, before train_end)
    train_window: int | str = "expanding"  # walk-forward training: every session before the fold, or the last K
    embargo: int = 0  # walk-forward: sessions left out between a fold's training and its first decision
    out: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["tickers"] = list(self.tickers) if self.tickers else ALL_TICKERS
        return values


KEYS = tuple(f.name for f in dataclasses.fields(RunConfig)) + ("ticker",)


def iso_date(value: Any, key: str) -> str:
    import pandas as pd

    try:
        return str(pd.Timestamp(str(value)).date())
    except (ValueError, TypeError):
        raise TradesimError(f"{key}: expected a date like 2015-06-30, got {value!r}") from None


def _number(value: Any, key: str, kind: type) -> float | int:
    if isinstance(value, bool):
        raise TradesimError(f"{key}: expected a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise TradesimError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise TradesimError(f"{key}: expected an integer, got {value!r}")
    if not math.isfinite(number):
        raise TradesimError(f"{key}: expected a finite number, got {value!r}")
    return number


def train_window(value: Any) -> int | str:
    """`expanding` (every session before the fold) or a number of sessions K >= 1."""
    if isinstance(value, str) and value.strip().lower() == "expanding":
        return "expanding"
    try:
        if isinstance(value, bool):
            raise ValueError
        sessions = int(str(value).strip()) if isinstance(value, str) else int(value)
        if sessions != float(value) or sessions < 1:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise TradesimError(f"train_window: expected expanding or a number of sessions >= 1, got {value!r}") from None
    return sessions


def model_cutoff_table(value: Any, key: str) -> dict[str, str]:
    """`{spec: date}` from a TOML table, or from `SPEC=YYYY-MM-DD` strings (`--model-cutoff`)."""
    if isinstance(value, (list, tuple)):
        pairs = {}
        for item in value:
            spec, equals, day = str(item).rpartition("=")
            if not equals or not spec:
                raise TradesimError(f"--model-cutoff {item!r}: expected SPEC=YYYY-MM-DD, e.g. hf:meta-llama/Llama-3.1-8B=2023-12-31")
            pairs[spec] = day
        value = pairs
    if not isinstance(value, dict):
        raise TradesimError(f"{key}: expected a table of model spec = date")
    return {str(spec): iso_date(day, f"{key} {spec}") for spec, day in value.items()}


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise TradesimError(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise TradesimError(f"--config {path}: not valid TOML ({exc})") from None


def resolve(file_values: dict[str, Any], overrides: dict[str, Any], origin: str = "config") -> RunConfig:
    """Merge config-file values with flag overrides (None means 'not given') into a checked RunConfig."""
    unknown = sorted(set(file_values) - set(KEYS))
    if unknown:
        raise TradesimError(f"{origin}: unknown key {unknown[0]!r} (known keys: {', '.join(KEYS)})")
    params = file_values.get("params", {})
    if not isinstance(params, dict):
        raise TradesimError(f"{origin}: 'params' must be a table of strategy parameters")
    values = {k: v for k, v in file_values.items() if k != "params"}
    if "ticker" in values and "tickers" in values:
        raise TradesimError(f"{origin}: give 'ticker' or 'tickers', not both")
    if "ticker" in values:
        values["tickers"] = values.pop("ticker")
    given = {k: v for k, v in overrides.items() if v is not None and k != "params"}
    if "model_cutoffs" in given and "model_cutoffs" in values:  # flags add to the file's table
        given["model_cutoffs"] = {
            **model_cutoff_table(values["model_cutoffs"], f"{origin}: model_cutoffs"), **model_cutoff_table(given["model_cutoffs"], "--model-cutoff")
        }
    if "tickers" in given:
        values.pop("tickers", None)
    values.update(given)
    params = {**params, **(overrides.get("params") or {})}

    if "strategy" not in values:
        raise TradesimError("--strategy: no strategy given (see `tradesim strategies`)")
    if "tickers" not in values:
        raise TradesimError("--ticker/--tickers: no ticker given")
    values["tickers"] = () if values["tickers"] == ALL_TICKERS else parse_tickers(values["tickers"], "tickers")
    for key in ("start", "end", "train_end"):
        if values.get(key) is not None:
            values[key] = iso_date(values[key], key)
    for key in ("cost_bps", "slippage_bps", "capital", "risk_free", "max_gross"):
        if key in values:
            values[key] = _number(values[key], key, float)
    if "sig_reps" not in values and os.environ.get(SIG_REPS_ENV):  # a default of one's own (quick iterations, the test suite)
        values["sig_reps"] = _number(os.environ[SIG_REPS_ENV], SIG_REPS_ENV, int)
    for key in ("seed", "seeds", "sig_reps", "cutoff_embargo_days", "walk_forward", "embargo"):
        if key in values:
            values[key] = _number(values[key], key, int)
    if "train_window" in values:
        values["train_window"] = train_window(values["train_window"])
    if "model_cutoffs" in values:
        values["model_cutoffs"] = model_cutoff_table(values["model_cutoffs"], "model_cutoffs")
    for key in ("strategy", "data", "news", "fundamentals", "fill", "cutoff", "device", "llm_cache", "study", "out"):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise TradesimError(f"{key}: expected text, got {values[key]!r}")
    for key in ("reuse_decisions", "require_post_cutoff"):
        if key in values and not isinstance(values[key], bool):
            raise TradesimError(f"{key}: expected true or false, got {values[key]!r}")
    config = RunConfig(**values, params=params)
    if config.fill not in FILL_MODES:
        raise TradesimError(f"fill: expected one of {', '.join(FILL_MODES)}, got {config.fill!r}")
    if config.llm_cache not in CACHE_MODES:
        raise TradesimError(f"llm_cache: expected one of {', '.join(CACHE_MODES)}, got {config.llm_cache!r}")
    if config.cost_bps < 0 or config.slippage_bps < 0:
        raise TradesimError("cost_bps/slippage_bps: expected a number of basis points >= 0")
    if config.capital <= 0:
        raise TradesimError(f"capital: expected a positive amount, got {config.capital:g}")
    if config.max_gross <= 0:
        raise TradesimError(f"max_gross: expected a positive gross exposure (1 for no leverage), got {config.max_gross:g}")
    if not -1 < config.risk_free <= 1:
        raise TradesimError(f"risk_free: expected an annual rate as a fraction (0.05 for 5%), got {config.risk_free:g}")
    if config.seeds < 1:
        raise TradesimError(f"seeds: expected a number of seeds >= 1, got {config.seeds}")
    if config.sig_reps < 100:
        raise TradesimError(f"sig_reps: expected at least 100 bootstrap resamples, got {config.sig_reps}")
    if config.cutoff_embargo_days < 0:
        raise TradesimError(f"cutoff_embargo_days: expected a number of days >= 0, got {config.cutoff_embargo_days}")
    if config.walk_forward < 0:
        raise TradesimError(f"walk_forward: expected a number of test sessions between refits (0: fit once), got {config.walk_forward}")
    if config.embargo < 0:
        raise TradesimError(f"embargo: expected a number of sessions >= 0, got {config.embargo}")
    if not config.walk_forward and (config.embargo or config.train_window != "expanding"):
        raise TradesimError("embargo/train_window: they shape walk-forward folds; give walk_forward N (--walk-forward) too")
    if config.start and config.end and config.start > config.end:
        raise TradesimError(f"start {config.start} is after end {config.end}")
    if config.train_end and ((config.start and config.train_end <= config.start) or (config.end and config.train_end > config.end)):
        raise TradesimError(f"train_end {config.train_end} must lie after start and no later than end")
    return config
