"""Decision passes kept for reruns that change only how they trade.

A backtest's decisions (weights, logs, scores) depend on the strategy, its settings, the data, the
dates, the fill convention, the seed, the device, the code, the numeric libraries, the files its
settings name and the models it asked; not on commission, slippage, capital, the risk-free rate or
the run directory. So a pass is stored under `$TRADESIM_HOME/decisions/<key>.pickle`, the key a
hash of everything it depends on, and a rerun with the same key simulates the stored weights
again instead of fitting and deciding: `--cost-bps 5` after a run takes seconds, with no model
call. The models are checked too: every model the pass used must still have its fingerprint.

What the key covers is what the paper accounts' identity covers, read more bluntly: the source of
every module of tradesim and of the strategy's package (any edit, not only those a decision
imports), and the bytes of every file or directory a setting names (a signals file, a model
directory). `--no-reuse-decisions` (`reuse_decisions = false`) always decides again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tradesim.config import RunConfig, tradesim_home
from tradesim.llm.weights import file_sha256
from tradesim.paper.identity import library_versions
from tradesim.strategy import Runtime, Strategy

if TYPE_CHECKING:
    from tradesim.market.data import MarketData

PASS_VERSION = 1
USAGE = ("model_calls", "cache_hits", "prompt_tokens", "completion_tokens", "model_seconds")


def _package_directories(strategy_class: type[Strategy]) -> list[Path]:
    tops = {"tradesim", *(cls.__module__.partition(".")[0] for cls in strategy_class.__mro__ if issubclass(cls, Strategy))}
    found = []
    for top in sorted(tops):
        spec = importlib.util.find_spec(top)
        if spec is None or spec.origin is None:
            continue
        found.append(Path(spec.origin) if spec.submodule_search_locations is None else Path(spec.origin).parent)
    return found


def source_digest(strategy_class: type[Strategy]) -> str:
    """sha256 over every Python source file of tradesim and of the strategy's own package(s)."""
    digest = hashlib.sha256()
    for root in _package_directories(strategy_class):
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _tree_digest(directory: Path) -> str:
    """A directory named by a setting (a model, a build): every file's path, size and mtime."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(directory)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def named_inputs(settings: dict[str, Any]) -> dict[str, str]:
    """The content of every existing file or directory a setting names (a spec's path after `hf:` too)."""
    found = {}
    for name, value in sorted(settings.items()):
        if not isinstance(value, str) or not value:
            continue
        for candidate in {value, value.partition(":")[2]} - {""}:
            path = Path(candidate).expanduser()
            try:
                if path.is_file():
                    found[f"{name}:{candidate}"] = file_sha256(path)
                elif path.is_dir():
                    found[f"{name}:{candidate}"] = _tree_digest(path)
            except OSError:
                continue
    return found


def pass_parts(config: RunConfig, strategy: Strategy, data: MarketData, fill: str) -> dict[str, Any]:
    """Everything a pass's decisions depend on."""
    settings = strategy.settings.as_dict()
    return {
        "version": PASS_VERSION,
        "strategy": strategy.name,
        "settings": settings,
        "tickers": list(data.tickers),
        "data": data.fingerprint,
        "dates": {"start": config.start, "end": config.end, "train_end": config.train_end, "cutoff": config.cutoff},
        **({"walk_forward": [config.walk_forward, config.train_window, config.embargo]} if config.walk_forward else {}),
        "fill": fill,
        "seed": config.seed,
        "device": config.device,
        "code": source_digest(type(strategy)),
        "libraries": library_versions(),
        "inputs": named_inputs(settings),
    }


def pass_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def pass_path(key: str) -> Path:
    return tradesim_home() / "decisions" / f"{key}.pickle"


def load_pass(key: str, parts: dict[str, Any], runtime: Runtime) -> dict[str, Any] | None:
    """The stored pass for `key`, when it exists, reads, was made from these parts, and every model
    it asked still has the fingerprint it had (otherwise None: decide again)."""
    try:
        record = pickle.loads(pass_path(key).read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError):
        return None
    if not isinstance(record, dict) or record.get("parts") != json.loads(json.dumps(parts, default=str)):
        return None
    for model in record["strategy"]["models"]:
        try:
            if runtime.load_model(model["spec"]).fingerprint != model["fingerprint"]:
                return None
        except Exception:  # a model that no longer loads: decide again, and say why then
            return None
    return record


def store_pass(key: str, parts: dict[str, Any], record: dict[str, Any]) -> None:
    """Keep a pass (written whole or not at all; a home that cannot be written keeps nothing)."""
    path = pass_path(key)
    record = {**record, "parts": json.loads(json.dumps(parts, default=str)), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        staging.write_bytes(pickle.dumps(record, protocol=5))
        os.replace(staging, path)
    except OSError:
        return


def strategy_record(strategy: Strategy) -> dict[str, Any]:
    """What the run directory records about the strategy of a pass."""
    return {
        "label": strategy.label,
        "horizon": strategy.horizon,
        "looks_ahead": strategy.looks_ahead,
        "look_ahead_reason": strategy.look_ahead_reason,
        "notes": list(strategy.notes),
        "describe": strategy.describe(),
        "models": strategy.models(),
        "side_tables": strategy.side_tables(),
    }


class ReplayedStrategy:
    """The strategy of a reused pass, as it was when it decided: what the run directory, the terminal
    and `Run` read about a strategy. Its models report no usage: this run asked them nothing."""

    def __init__(self, strategy: Strategy, record: dict[str, Any], key: str):
        self.name, self.settings, self.tickers, self.runtime = strategy.name, strategy.settings, strategy.tickers, strategy.runtime
        self.key, self._record = key, record
        self._strategy = record["strategy"]
        self.notes = list(self._strategy["notes"])
        self.label = self._strategy["label"]
        self.horizon = self._strategy["horizon"]
        self.looks_ahead = self._strategy["looks_ahead"]
        self.look_ahead_reason = self._strategy["look_ahead_reason"]

    def models(self) -> list[dict[str, Any]]:
        return [{**model, **{name: 0 for name in USAGE}, "model_seconds": 0.0} for model in self._strategy["models"]]

    def describe(self) -> dict[str, Any]:
        return {
            **self._strategy["describe"],
            "models": self.models(),
            "decisions_reused": {"pass": self.key, "decided_at": self._record["created_at"], "path": str(pass_path(self.key))},
        }

    def side_tables(self) -> dict[str, pd.DataFrame]:
        return {name: table.copy() for name, table in self._strategy["side_tables"].items()}
