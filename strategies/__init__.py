"""The strategy registry: every strategy a user can name with `--strategy`."""

from __future__ import annotations

from strategies.baselines import BuyAndHold, Momentum, Signals
from strategies.finteam import FinTeam
from strategies.llmoe import LLMoEStrategy
from strategies.neural import LSTMStrategy, MLPStrategy, MoEGateStrategy
from strategies.tradexpert import TradExpert
from tradesim.errors import TradesimError
from tradesim.strategy import Strategy

REGISTRY: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (LLMoEStrategy, TradExpert, FinTeam, MLPStrategy, LSTMStrategy, MoEGateStrategy, BuyAndHold, Momentum, Signals)
}


def get_strategy(name: str) -> type[Strategy]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise TradesimError(f"--strategy: unknown strategy {name!r} (available: {', '.join(REGISTRY)})") from None
