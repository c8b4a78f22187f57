"""Market data: sources, news, the session calendar and point-in-time views.

This package knows nothing of strategies or language models.
"""

from tradesim.market.data import MarketData, MarketView, load_market_data

__all__ = ["MarketData", "MarketView", "load_market_data"]
