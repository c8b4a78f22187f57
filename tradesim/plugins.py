"""Plug-ins: every strategy, the package's own included, is found through the entry-point group
`tradesim.strategies` (name = the strategy's `name`, value = `module:Class`). A package of your own
registers one in its pyproject.toml:

    [project.entry-points."tradesim.strategies"]
    mine = "my_package.strategy:MyStrategy"

Two more groups let a strategy bring what it needs: `tradesim.commands` (a click command or group,
added to the `tradesim` command under its name: FinTeamExperts' `tradesim finteam build`) and
`tradesim.evaluators` (an object with `name`, `claims(model)` and `evaluate(...)`, which
`tradesim evaluate MODEL` hands the models it claims). Nothing is imported until it is asked for:
naming one strategy loads only its module.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from tradesim.errors import TradesimError
from tradesim.strategy import Strategy

GROUP = "tradesim.strategies"
COMMANDS = "tradesim.commands"
EVALUATORS = "tradesim.evaluators"


def _entry_points(group: str = GROUP) -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for point in metadata.entry_points(group=group):
        other = found.get(point.name)
        if other is not None and other.value != point.value:
            raise TradesimError(
                f"{group}: {point.name!r} is registered twice ({_origin(other)} and {_origin(point)}); uninstall one of them"
            )
        found[point.name] = point
    return found


def _origin(point: metadata.EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return f"{point.value} from {dist.name if dist is not None else 'an unknown distribution'}"


def strategy_names() -> list[str]:
    """The names a user can give to `--strategy` (nothing imported)."""
    return sorted(_entry_points())


def distributions() -> dict[str, str | None]:
    """The installed package each strategy comes from, by strategy name."""
    return {name: getattr(getattr(point, "dist", None), "name", None) for name, point in _entry_points().items()}


def _load(point: metadata.EntryPoint) -> type[Strategy]:
    try:
        loaded = point.load()
    except Exception as error:  # a broken plug-in is named, not a traceback
        raise TradesimError(f"strategy {point.name!r} ({_origin(point)}) failed to load: {type(error).__name__}: {error}") from None
    if not (isinstance(loaded, type) and issubclass(loaded, Strategy)):
        raise TradesimError(f"strategy {point.name!r} ({_origin(point)}) is not a tradesim.strategy.Strategy subclass")
    if getattr(loaded, "name", None) != point.name:
        raise TradesimError(
            f"strategy {point.name!r} ({_origin(point)}): the class is named {getattr(loaded, 'name', None)!r}; "
            "the entry point's name and the class's `name` must agree"
        )
    return loaded


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered as `name` (only its module is imported)."""
    points = _entry_points()
    if name not in points:
        available = ", ".join(sorted(points)) or f"none: is tradesim installed (pip install -e .)? no entry points in group {GROUP}"
        raise TradesimError(f"--strategy: unknown strategy {name!r} (available: {available})")
    return _load(points[name])


def strategy_class(strategy: str | type[Strategy]) -> type[Strategy]:
    """A strategy named or given as a class (a Strategy subclass, registered or not)."""
    if isinstance(strategy, type):
        if not issubclass(strategy, Strategy):
            raise TradesimError(f"strategy: {strategy.__qualname__} is not a tradesim.strategy.Strategy subclass")
        if not isinstance(getattr(strategy, "name", None), str) or not strategy.name:
            raise TradesimError(f"strategy: {strategy.__qualname__} has no `name` (a class attribute, e.g. name = 'mine')")
        return strategy
    return get_strategy(str(strategy))


def _load_object(group: str, point: metadata.EntryPoint):
    try:
        return point.load()
    except Exception as error:
        raise TradesimError(f"{group} {point.name!r} ({_origin(point)}) failed to load: {type(error).__name__}: {error}") from None


def command_names() -> list[str]:
    """The commands plug-ins add to `tradesim` (nothing imported)."""
    return sorted(_entry_points(COMMANDS))


def command(name: str):
    """The click command a plug-in registered as `name` (None: there is none)."""
    point = _entry_points(COMMANDS).get(name)
    return None if point is None else _load_object(COMMANDS, point)


def evaluators() -> dict[str, Any]:
    """The evaluators plug-ins registered, by name (each module imported)."""
    return {name: _load_object(EVALUATORS, point) for name, point in sorted(_entry_points(EVALUATORS).items())}
