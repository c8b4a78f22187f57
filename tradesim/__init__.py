"""tradesim: backtesting and trading simulation for mixtures of language-model experts."""

__version__ = "0.1.0"
