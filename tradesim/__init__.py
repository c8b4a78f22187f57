"""tradesim: backtesting and trading simulation for mixtures of language-model experts.

From Python: `tradesim.backtest(strategy=..., tickers=..., **options)` runs a backtest,
`tradesim.open_run(path)` / `open_runs([...])` read run directories, `tradesim.open_paper(name)`
reads a paper account, and `tradesim.plots` draws them.
"""

__version__ = "0.1.0"

_API = {"backtest": "backtesting", "open_run": "runs", "open_runs": "runs", "open_paper": "paper.reading", "plots": None}
__all__ = list(_API)


def __getattr__(name: str):
    """The analysis API, imported when first used (the CLI starts without pandas)."""
    import importlib

    if name not in _API:
        raise AttributeError(f"module 'tradesim' has no attribute {name!r}")
    module = importlib.import_module(f"tradesim.{_API[name] or name}")
    return module if _API[name] is None else getattr(module, name)
