"""The Strategy interface: learn from the past, then decide target weights one date at a time.

A strategy never touches cash or orders. `fit` sees a view of the data strictly before
`train_end`; `decide` sees a view as of each decision date and returns target weights plus one
log row per ticker (what the strategy saw and said), which becomes `decisions.jsonl`.

A strategy's parameters are a frozen dataclass of typed fields (`Settings`, each field made with
`setting(default, help, ...)`); its command-line flags, its `[params]` checks and the listing of
`tradesim strategies` are generated from it, and `self.settings.name` reads one.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from tradesim.errors import TradesimError
from tradesim.llm import load_model
from tradesim.llm.model import LOCAL_BACKENDS
from tradesim.market.data import MarketView


@dataclass(frozen=True)
class Param:
    """One strategy parameter: settable as `--name-with-dashes VALUE` or in the config's [params]."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def coerce(self, value: Any) -> Any:
        """Check and convert a value from a flag (text) or the config file (TOML types)."""
        where = f"{self.flag} (params.{self.name})"
        if value is None:
            return None
        if self.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise TradesimError(f"{where}: expected true or false, got {value!r}")
        if self.type in (int, float):
            try:
                if isinstance(value, bool):
                    raise ValueError
                number = self.type(value)
                if self.type is int and float(value) != number:
                    raise ValueError
            except (TypeError, ValueError, OverflowError):
                raise TradesimError(f"{where}: expected {'an integer' if self.type is int else 'a number'}, got {value!r}") from None
            if not math.isfinite(number):
                raise TradesimError(f"{where}: expected a finite number, got {value!r}")
            if self.minimum is not None and number < self.minimum:
                raise TradesimError(f"{where}: expected a value >= {self.minimum:g}, got {number}")
            return number
        text = str(value)
        if self.choices and text not in self.choices:
            raise TradesimError(f"{where}: expected one of {', '.join(self.choices)}, got {text!r}")
        return text


def setting(default: Any, help: str, *, choices: tuple[str, ...] | None = None, minimum: float | None = None) -> Any:
    """One field of a strategy's Settings: its default, the help its flag shows, the allowed texts
    or the smallest number."""
    return field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum})


@dataclass(frozen=True)
class Settings:
    """Base of every strategy's settings: a frozen dataclass, one typed field per parameter."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def params_of(settings: type[Settings]) -> tuple[Param, ...]:
    """The parameters (flags, `[params]` keys) a Settings class declares."""
    hints = typing.get_type_hints(settings)
    found = []
    for item in dataclasses.fields(settings):
        kind = hints[item.name]
        choices = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if choices:  # `int | None`: an int that may be left unset
            kind = choices[0]
        if kind not in (bool, int, float, str):
            raise TypeError(f"{settings.__qualname__}.{item.name}: a setting is bool, int, float or str (or one of them | None), not {kind}")
        found.append(Param(item.name, kind, item.default, item.metadata.get("help", ""), item.metadata.get("choices"), item.metadata.get("minimum")))
    return tuple(found)


def settings_of(name: str, params: tuple[Param, ...], base: type[Settings] = Settings) -> type[Settings]:
    """A Settings class for parameters declared the older way, as a `params` tuple."""
    fields = [
        (p.name, p.type if p.default is not None else p.type | None, setting(p.default, p.help, choices=p.choices, minimum=p.minimum))
        for p in params
    ]
    return dataclasses.make_dataclass(name, fields, bases=(base,), frozen=True)


@dataclass(frozen=True)
class Runtime:
    """Run-wide settings strategies with models need: where to compute, how to use the LLM cache."""

    device: str = "auto"
    fill: str = "next-open"  # the fill convention in force: learned parts predict what it can earn
    llm_cache: str = "readwrite"
    llm_cache_path: str | None = None
    progress: bool = True

    def load_model(self, spec: str):
        """A model spec loaded with this run's device (for backends that run locally) and cache settings."""
        options = {"device": self.device} if spec.partition(":")[0] in LOCAL_BACKENDS else {}
        return load_model(spec, cache_mode=self.llm_cache, cache_path=self.llm_cache_path, progress=self.progress, **options)


@dataclass
class Decision:
    """Target weights for one decision date, and one log row per ticker explaining them."""

    weights: dict[str, float]
    log: dict[str, dict[str, Any]] = field(default_factory=dict)
    scores: dict[str, float] | None = None  # a ranking's scores (higher: expected to do better): RankIC
    predictions: dict[str, bool] | None = None  # predicted rise per ticker: accuracy and MCC


class Strategy(abc.ABC):
    """Base of every strategy. Subclasses set `name`, `summary`, `Settings` and implement `decide`.

    (A subclass may declare a `params` tuple instead of `Settings`; its Settings class is made from it.)"""

    name: ClassVar[str]
    summary: ClassVar[str]
    Settings: ClassVar[type[Settings]] = Settings
    params: ClassVar[tuple[Param, ...]] = ()  # generated from Settings
    # What `fit` learns (stored by paper accounts, so nightly runs load it instead of refitting),
    # and what one decision hands to the next (a held portfolio), carried from night to night.
    fitted_attributes: ClassVar[tuple[str, ...]] = ()
    carried_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, tickers: tuple[str, ...], params: dict[str, Any] | None = None, seed: int = 0, runtime: Runtime | None = None
    ):
        self.tickers = tickers
        self.seed = seed
        self.runtime = runtime or Runtime()
        self.settings = self.Settings(**self.resolve_params(params or {}))
        self.notes: list[str] = []  # facts about the run the strategy wants printed and recorded
        self.validate()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Settings" in cls.__dict__:
            cls.params = params_of(cls.Settings)
        elif "params" in cls.__dict__:
            cls.Settings = settings_of(f"{cls.__name__}Settings", cls.params)

    @classmethod
    def resolve_params(cls, given: dict[str, Any]) -> dict[str, Any]:
        known = {p.name: p for p in cls.params}
        for name in given:
            if name not in known:
                names = ", ".join(p.flag for p in cls.params) or "none"
                raise TradesimError(
                    f"--{name.replace('_', '-')}: not a parameter of strategy {cls.name} (its parameters: {names})"
                )
        return {name: param.coerce(given.get(name, param.default)) for name, param in known.items()}

    def note(self, text: str) -> None:
        """Record a fact about the run once (printed, and written to run.json)."""
        if text not in self.notes:
            self.notes.append(text)

    def validate(self) -> None:
        """Reject parameter combinations that cannot work with these tickers (raise TradesimError)."""

    @property
    def needs_training(self) -> bool:
        """Whether the strategy learns from data before `train_end` (then a train_end is required)."""
        return False

    def fit(self, view: MarketView) -> None:
        """Learn from data strictly before the test period. Default: nothing to learn."""

    def state(self) -> bytes:
        """The fitted state (`fitted_attributes`), as bytes a later process can `load_state`."""
        return _pickle({name: getattr(self, name) for name in self.fitted_attributes if hasattr(self, name)})

    def load_state(self, blob: bytes) -> None:
        """Restore what `fit` learned (from `state()`), instead of fitting again."""
        for name, value in _unpickle(blob).items():
            setattr(self, name, value)

    def carried(self) -> bytes:
        """What the last decision leaves for the next one (`carried_attributes`)."""
        return _pickle({name: getattr(self, name) for name in self.carried_attributes if hasattr(self, name)})

    def restore_carried(self, blob: bytes) -> None:
        for name, value in _unpickle(blob).items():
            setattr(self, name, value)

    def decision_dates(self, sessions: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """The test-period sessions on which this strategy decides. Default: every one."""
        return sessions

    @property
    def horizon(self) -> int:
        """Sessions from one fill to the next that scores and predictions are about (and measured on)."""
        return 1

    @abc.abstractmethod
    def decide(self, view: MarketView) -> Decision:
        """Target weights as of `view.date`."""

    def decide_batch(self, views: list[MarketView]) -> list[Decision]:
        """Decide for many dates at once (each from its own view). Strategies that call models
        override this to collect every prompt first and send them as one batch."""
        return [self.decide(view) for view in views]

    @property
    def looks_ahead(self) -> bool:
        """True only for deliberate upper bounds (an oracle): the run is then flagged everywhere."""
        return False

    @property
    def look_ahead_reason(self) -> str:
        """What looks ahead, in one line (printed and recorded when `looks_ahead`)."""
        return f"strategy {self.name} looks ahead"

    def reveal_future(self, data: Any) -> None:
        """Called with the whole MarketData only when `looks_ahead` is True."""

    def models(self) -> list[dict[str, Any]]:
        """The language models used, with their usage (calls, cache hits, tokens, time)."""
        return []

    def side_tables(self) -> dict[str, pd.DataFrame]:
        """Tables too large for decisions.jsonl (reports, comparisons, rankings), written to the
        run directory as `<name>.parquet`."""
        return {}

    @property
    def label(self) -> str:
        """What the run is, in a few words, where runs are compared (default: the name)."""
        return self.name

    def describe(self) -> dict[str, Any]:
        """What run.json records about the strategy (resolved parameters, models used, its label)."""
        return {"name": self.name, "label": self.label, "params": self.settings.as_dict(), "models": self.models()}


def _pickle(values: dict[str, Any]) -> bytes:
    import pickle

    return pickle.dumps(values, protocol=5)


def _unpickle(blob: bytes) -> dict[str, Any]:
    import pickle

    return pickle.loads(blob)
