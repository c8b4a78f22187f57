"""A sweep spec (TOML) and its cells.

```toml
[base]                      # any backtest option; strategy parameters in [base.params]
strategy = "momentum"
tickers = ["MSFT", "AAPL"]
[base.params]
top_k = 1

[grid]                      # lists whose product is taken: options here, parameters in [grid.params]
seed = [0, 1]
[grid.params]
lookback = [5, 20, 60]

[[zip]]                     # lists varied together (one cell per position), crossed with the grid
start = ["2013-01-01", "2014-01-01"]
train_end = ["2015-01-01", "2015-06-01"]

[walk_forward]              # optional: the walk-forward schedule of every cell
every = 60
train_window = "expanding"
embargo = 0
```

A cell is one resolved backtest configuration; its id is the hash of that configuration (not of
the output directory or the executor), so the same spec gives the same ids anywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradesim.config import KEYS, RunConfig
from tradesim.errors import TradesimError

SECTIONS = ("base", "grid", "zip", "walk_forward")
NOT_SWEPT = ("out", "ticker")  # a cell's directory is the sweep's; one spelling of the tickers
WALK_FORWARD_KEYS = {"every": "walk_forward", "train_window": "train_window", "embargo": "embargo"}


@dataclass(frozen=True)
class Cell:
    id: str
    varied: dict[str, Any]  # the values this cell takes of every key the spec varies ("params.x" for parameters)
    config: RunConfig
    strategy_class: type

    @property
    def label(self) -> str:
        return label_of(self.varied)


@dataclass(frozen=True)
class Sweep:
    path: Path
    cells: list[Cell]
    varied: list[str]
    study: str

    def cell(self, cell_id: str) -> Cell:
        return next(cell for cell in self.cells if cell.id == cell_id)


def joined(value: Any) -> Any:
    """A varied value as shown and stored: a list (tickers) as comma-separated text."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def label_of(varied: dict[str, Any]) -> str:
    return ", ".join(f"{key}={joined(value)}" for key, value in varied.items()) or "the base"


def cell_id(config: RunConfig) -> str:
    """The hash of a cell's resolved configuration, without where it is written."""
    values = {k: v for k, v in config.to_dict().items() if k != "out"}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _table(spec: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = spec.get(name, {})
    if not isinstance(value, dict):
        raise TradesimError(f"{where}: [{name}] must be a table")
    return value


def _check_keys(table: dict[str, Any], where: str) -> None:
    allowed = [k for k in KEYS if k not in NOT_SWEPT]
    for key in table:
        if key == "params":
            if not isinstance(table[key], dict):
                raise TradesimError(f"{where}.params: must be a table of strategy parameters")
            continue
        if key == "ticker":
            raise TradesimError(f"{where}: use 'tickers' (a list, or a comma-separated text) in a sweep, not 'ticker'")
        if key not in allowed:
            raise TradesimError(f"{where}: unknown key {key!r} (a backtest option: {', '.join(allowed)})")


def _axes(table: dict[str, Any], where: str) -> list[tuple[str, list[Any]]]:
    """(key, values) of a [grid] or [[zip]] table; parameters as `params.NAME`."""
    axes = []
    for key, values in table.items():
        if key == "params":
            axes += [(f"params.{name}", _values(v, f"{where}.params.{name}")) for name, v in values.items()]
        else:
            axes.append((key, _values(values, f"{where}.{key}")))
    return axes


def _values(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise TradesimError(f"{where}: expected a non-empty list of values to sweep, got {value!r}")
    return value


def _assign(values: dict[str, Any], params: dict[str, Any], key: str, value: Any) -> None:
    if key.startswith("params."):
        params[key.partition(".")[2]] = value
    else:
        values[key] = value


def load_sweep(path: Path) -> Sweep:
    """The spec's cells, each resolved and checked like a backtest's options (errors name the cell)."""
    from tradesim.backtesting import configure

    where = f"sweep {path}"
    if not path.is_file():
        raise TradesimError(f"{where}: no such file")
    try:
        spec = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TradesimError(f"{where}: not valid TOML ({error})") from None
    unknown = sorted(set(spec) - set(SECTIONS))
    if unknown:
        raise TradesimError(f"{where}: unknown section [{unknown[0]}] (a sweep spec has {', '.join(f'[{s}]' for s in SECTIONS)})")
    base, grid = _table(spec, "base", where), _table(spec, "grid", where)
    _check_keys(base, f"{where}: [base]")
    _check_keys(grid, f"{where}: [grid]")
    zips = spec.get("zip", [])
    if not isinstance(zips, list) or not all(isinstance(z, dict) for z in zips):
        raise TradesimError(f"{where}: [[zip]] must be an array of tables")
    base_values = {k: v for k, v in base.items() if k != "params"}
    base_params = dict(base.get("params", {}))
    schedule = _table(spec, "walk_forward", where)
    for key, value in schedule.items():
        if key not in WALK_FORWARD_KEYS:
            raise TradesimError(f"{where}: [walk_forward] {key!r} is unknown (expected {', '.join(WALK_FORWARD_KEYS)})")
        base_values[WALK_FORWARD_KEYS[key]] = value
    grid_axes = _axes(grid, f"{where}: [grid]")
    zip_groups = []
    for number, table in enumerate(zips):
        _check_keys(table, f"{where}: [[zip]] {number + 1}")
        axes = _axes(table, f"{where}: [[zip]] {number + 1}")
        lengths = {len(values) for _, values in axes}
        if len(lengths) > 1:
            raise TradesimError(f"{where}: [[zip]] {number + 1}: its lists have different lengths ({', '.join(f'{k}: {len(v)}' for k, v in axes)})")
        zip_groups.append([[(key, values[i]) for key, values in axes] for i in range(lengths.pop())] if axes else [[]])
    varied_keys = [key for key, _ in grid_axes] + [key for group in zip_groups for key, _ in group[0]]
    repeated = {key for key in varied_keys if varied_keys.count(key) > 1}
    if repeated:
        raise TradesimError(f"{where}: {sorted(repeated)[0]} is varied twice (in [grid] and a [[zip]], or in two [[zip]] tables)")
    grid_choices = itertools.product(*[[(key, v) for v in values] for key, values in grid_axes])
    cells, seen = [], {}
    for grid_choice, *zip_choice in itertools.product(list(grid_choices), *zip_groups):
        chosen = [*grid_choice, *(pair for group in zip_choice for pair in group)]
        values, params = dict(base_values), dict(base_params)
        for key, value in chosen:
            _assign(values, params, key, value)
        varied = {key: value for key, value in chosen}
        label = label_of(varied)
        if "tickers" in values and isinstance(values["tickers"], list):
            values["tickers"] = ",".join(map(str, values["tickers"]))
        try:
            config, strategy_class = configure(None, values, params)
        except TradesimError as error:
            raise TradesimError(f"{where}: cell {label}: {error}") from None
        identity = cell_id(config)
        if identity in seen:
            raise TradesimError(f"{where}: cells {seen[identity]} and {label} resolve to the same configuration")
        seen[identity] = label
        cells.append(Cell(identity, varied, config, strategy_class))
    digest = hashlib.sha256(",".join(sorted(seen)).encode()).hexdigest()[:12]
    study = base.get("study") or f"sweep-{digest}"
    cells = [dataclasses.replace(cell, config=dataclasses.replace(cell.config, study=study)) for cell in cells]
    return Sweep(path, cells, list(dict.fromkeys(varied_keys)), study)
