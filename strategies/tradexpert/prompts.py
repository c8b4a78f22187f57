"""TradExpert's prompts: what each specialist expert is asked to write, and what the General Expert
is asked about two stocks (rank) or one (predict), with the answer options it is scored over.
TEMPLATE_VERSION is recorded in run.json and in a paper account's fingerprint: change it with
any prompt."""

from __future__ import annotations

from strategies.tradexpert.experts import Facts
from tradesim.llm.base import Chat

TEMPLATE_VERSION = "tradexpert/2"  # 2: instructions as the system message
EXPERT_INSTRUCTIONS = {
    "news": "You are the News expert of a trading team. Summarise what these headlines mean for the stock in two sentences.",
    "market": "You are the Market expert of a trading team. Summarise what this price and volume history says about the stock in two sentences.",
    "alpha": "You are the Alpha expert of a trading team. Summarise what these factor values say about the stock's next returns in two sentences.",
    "fundamental": "You are the Fundamental expert of a trading team. Summarise the stock's fundamentals in two sentences.",
}
RANK_INSTRUCTIONS = (
    "You are the General Expert of a trading team. Below are your experts' reports on two stocks, A and B, "
    "after today's close. Which stock will have the higher return over the next {horizon} sessions? "
    "Answer with one letter: A or B."
)
PREDICT_INSTRUCTIONS = (
    "You are the General Expert of a trading team. Below are your experts' reports on one stock after today's "
    "close. Will its price rise or fall over the next {horizon} sessions? Answer with one word: Rise or Fall."
)
RANK_OPTIONS = ("A", "B")
RANK_DESCRIPTIONS = ("Stock A will return more than stock B.", "Stock B will return more than stock A.")
PREDICT_OPTIONS = ("Rise", "Fall")
PREDICT_DESCRIPTIONS = (
    "Rise: the stock has been going up, with gains and good news; the price will rise.",
    "Fall: the stock has been going down, with losses and bad news; the price will fall.",
)
REPORT_TOKENS = 80
REPORT_STOP = ("\n\n",)  # a report is one paragraph


def report(facts: Facts, ticker: str) -> str:
    """Every expert's report on one ticker, one line each."""
    return "\n".join(f"{expert.capitalize()} expert: {text}" for expert, text in facts.reports(ticker).items())


def expert_prompt(expert: str, facts_text: str) -> Chat:
    """An expert's model asked to turn its facts into its report."""
    return Chat(EXPERT_INSTRUCTIONS[expert], facts_text)


def pair_prompt(facts: Facts, a: str, b: str, horizon: int) -> Chat:
    """Which of A and B returns more over `horizon` sessions. A pair's prompt opens with stock A's
    reports, so pairs sharing A share a prefix (reused by the model backends)."""
    return Chat(RANK_INSTRUCTIONS.format(horizon=horizon), f"Stock A ({a}):\n{report(facts, a)}\n\nStock B ({b}):\n{report(facts, b)}\n\nAnswer:")


def single_prompt(facts: Facts, ticker: str, horizon: int) -> Chat:
    """Whether one stock rises or falls over `horizon` sessions."""
    return Chat(PREDICT_INSTRUCTIONS.format(horizon=horizon), f"Stock {ticker}:\n{report(facts, ticker)}\n\nAnswer:")
