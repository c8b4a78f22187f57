"""What decides a paper account's orders, as fingerprint parts: the strategy and its parameters,
the code (every module its decisions import, read from source), the numeric libraries' versions,
the models, the data sources and the fitted state. A change to any part starts a new epoch, only
when a person accepts it."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from tradesim.config import RunConfig
from tradesim.paper.calendar import CALENDAR
from tradesim.strategy import Strategy


# ---------------------------------------------------------------------- what decides
# Where a decision is made and filled besides the strategy's own module: the session step and the
# night that runs it.
DECIDING_ROOTS = ("tradesim.engine", "tradesim.paper.account")
# Modules that only show or write what was decided (figures, pages, run directories): imported on
# the way, never followed, so a new colour in a plot is not a new epoch.
OUTPUT_ONLY = ("tradesim.plots", "tradesim.report", "tradesim.paper.report", "tradesim.runs", "tradesim.rundir")


# Libraries whose versions change numbers: a new version is a new epoch, like new code.
NUMERIC_LIBRARIES = (
    "numpy", "pandas", "scipy", "scikit-learn", "torch", "transformers", "tokenizers", "sentence-transformers",
    "exchange-calendars", "pyarrow", "gguf", "peft",
)


def deciding_modules(strategy_class: type[Strategy]) -> dict[str, Path]:
    """Every module of tradesim and of the strategy's own package (a plug-in's too) that can change
    a decision: those the strategy's module and DECIDING_ROOTS import, followed through every
    import statement (function-local ones too) to the end, read from the installed source files."""
    classes = [cls for cls in strategy_class.__mro__ if issubclass(cls, Strategy)]
    packages = {"tradesim", *(cls.__module__.partition(".")[0] for cls in classes)}
    found: dict[str, Path] = {}
    waiting = [*(cls.__module__ for cls in classes), *DECIDING_ROOTS]
    while waiting:
        name = waiting.pop()
        if name in found or name.partition(".")[0] not in packages or name in OUTPUT_ONLY:
            continue
        path = _source_of(name)
        if path is None:
            continue
        found[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        waiting += _imported_names(path, package)
        parent = name.rpartition(".")[0]
        if parent:
            waiting.append(parent)  # a package's __init__ runs before any of its modules
    return found


def _source_of(name: str) -> Path | None:
    """The installed source file of a module (None: not a module, e.g. a function named in
    `from module import function`), found without importing anything."""
    top, _, rest = name.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        return None
    if spec.submodule_search_locations is None:  # a single-file module: nothing below it
        return None if rest else Path(spec.origin)
    base = Path(spec.origin).parent.joinpath(*rest.split(".")) if rest else Path(spec.origin).parent
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_names(path: Path, package: str) -> list[str]:
    """The modules a source file imports; parsed once per content of the file (it is read each time)."""
    return list(_parsed_imports(str(path), package, path.read_bytes()))


@lru_cache(maxsize=1024)
def _parsed_imports(path: str, package: str, source: bytes) -> tuple[str, ...]:
    names = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]  # `from package import module`
    return tuple(names)


def code_hash(strategy_class: type[Strategy]) -> str:
    """sha256 over the source of every module that can change a decision (`deciding_modules`)."""
    digest = hashlib.sha256()
    for name, path in sorted(deciding_modules(strategy_class).items()):
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def library_versions() -> str:
    versions = {}
    for name in NUMERIC_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return json.dumps(versions, sort_keys=True)


def fingerprint_parts(config: RunConfig, strategy: Strategy, fitted_sha: str, dividends: str) -> dict[str, str]:
    """Everything that changes decisions, one entry per kind (a change names the entry)."""
    described = strategy.describe()
    models = sorted({(m.get("spec"), m.get("fingerprint")) for m in described.get("models", [])})
    return {
        "strategy": strategy.name,
        "parameters": json.dumps(strategy.settings.as_dict(), sort_keys=True, default=str),
        "tickers": ",".join(strategy.tickers),
        "trading": json.dumps({"fill": strategy.runtime.fill, "cost_bps": config.cost_bps, "slippage_bps": config.slippage_bps, "dividends": dividends}),
        "sources": json.dumps({"data": config.data, "news": config.news, "fundamentals": config.fundamentals, "start": config.start, "cutoff": config.cutoff}),
        "seed": str(config.seed),
        "code": code_hash(type(strategy)),
        "libraries": library_versions(),
        "models": json.dumps(models),
        "templates": json.dumps({k: v for k, v in described.items() if "template" in k}, sort_keys=True, default=str),
        "fitted_state": fitted_sha,
        "calendar": CALENDAR,
    }


def changed_parts(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    """Entries that differ; models only when this run used any (they load on first use)."""
    return [key for key in current if stored.get(key) != current[key] and not (key == "models" and current[key] == "[]")]
