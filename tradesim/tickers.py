"""Ticker names: how a list of them is read everywhere, and the company names they stand for."""

from __future__ import annotations

from typing import Iterable

from tradesim.errors import TradesimError

# Names a ticker's company goes by in headlines: what `--anonymize` removes from prompts.
COMPANY_NAMES: dict[str, tuple[str, ...]] = {
    "AAPL": ("Apple",), "AMD": ("Advanced Micro Devices", "AMD"), "AMZN": ("Amazon",), "BA": ("Boeing",),
    "BAC": ("Bank of America",), "BBY": ("Best Buy",), "C": ("Citigroup", "Citi"), "CSCO": ("Cisco",),
    "CVX": ("Chevron",), "DIS": ("Disney",), "FB": ("Facebook",), "GE": ("General Electric",),
    "GOOG": ("Google", "Alphabet"), "HD": ("Home Depot",), "INTC": ("Intel",), "JNJ": ("Johnson & Johnson",),
    "JPM": ("JPMorgan", "JP Morgan"), "KO": ("Coca-Cola", "Coke"), "LLY": ("Eli Lilly", "Lilly"),
    "MCD": ("McDonald's", "McDonalds"), "MRK": ("Merck",), "MSFT": ("Microsoft",), "ORCL": ("Oracle",),
    "PEP": ("PepsiCo", "Pepsi"), "PFE": ("Pfizer",), "PG": ("Procter & Gamble", "P&G"), "RRC": ("Range Resources",),
    "T": ("AT&T",), "UNH": ("UnitedHealth",), "V": ("Visa",), "VZ": ("Verizon",), "WFC": ("Wells Fargo",),
    "WMT": ("Walmart", "Wal-Mart"), "XOM": ("Exxon Mobil", "ExxonMobil", "Exxon"),
}


def parse_tickers(value: str | Iterable[str] | None, key: str = "tickers") -> tuple[str, ...] | None:
    """`MSFT`, `msft, aapl` or a list -> unique upper-case names in order; None stays None (all)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(t, str) for t in items):
        raise TradesimError(f"{key}: expected ticker names like MSFT or A,B,C, got {value!r}")
    tickers = tuple(dict.fromkeys(t.strip().upper() for t in items if t.strip()))
    if not tickers:
        raise TradesimError(f"{key}: expected at least one ticker")
    return tickers
