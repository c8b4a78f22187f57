"""LLMoE (Liu & Lo, 2025): a language-model router picks an optimistic or a pessimistic expert.

For each decision date the router reads the last five sessions (prices, the change from the
previous close, that session's visible headlines or an explicit "no news") and labels the outlook
Optimistic or Pessimistic. Each expert is a feed-forward network trained only on the training days
the router gave its label; the chosen expert's probability of a rise drives All-in All-out.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.learned import LearnedAllInAllOut, LearnedSettings
from tradesim.llm.base import Chat
from tradesim.llm.model import BACKENDS
from tradesim.market.data import MarketView
from tradesim.market.features import fill_to_fill_returns
from tradesim.strategy import Decision, setting
from tradesim.tickers import COMPANY_NAMES

ROUTER_TEMPLATE_VERSION = "llmoe-router/3"  # 2: prices as printed on each day; 3: anonymization levels
INSTRUCTIONS = (
    "You are the router of a mixture of trading experts. Below are the last five trading sessions of one "
    "stock, oldest first: one line per session with its prices, its change from the previous close, and the "
    'headlines published for it, or "no news". Judge whether the outlook for the stock at the next session is '
    "Optimistic or Pessimistic. Answer with one word: Optimistic or Pessimistic."
)
QUESTION = "Outlook for the next session:"
REASON_REQUEST = "In one sentence, the main reason for the outlook:"
OPTIONS = ("Optimistic", "Pessimistic")
DESCRIPTIONS = (
    "Optimistic: the stock has been going up, with gains and good news; the price will rise.",
    "Pessimistic: the stock has been going down, with losses and bad news; the price will fall.",
)
# What the router is shown of the stock's identity (`--anonymize`), each level hiding more; the
# instructions say what is hidden, so every level has prompts (and cache entries) of its own.
ANONYMIZE_LEVELS = ("off", "names", "dates", "prices")
HIDDEN = {
    "names": "The stock's ticker and company name are hidden.",
    "dates": "The stock's ticker, company name and calendar dates are hidden: sessions are numbered, day 0 being the latest.",
    "prices": (
        "The stock's ticker, company name, calendar dates and price levels are hidden: sessions are numbered, day 0 being "
        "the latest; prices are rebased so that the first session closes at 100; volume is a ratio to the window's average."
    ),
}
TEMPLATE_SHA256 = hashlib.sha256(
    "\n".join((ROUTER_TEMPLATE_VERSION, INSTRUCTIONS, QUESTION, REASON_REQUEST, *DESCRIPTIONS, *HIDDEN.values())).encode()
).hexdigest()
MONTHS = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
# Calendar dates in headlines, for the strictest level: month names (May only before a day), weekdays,
# years, numeric dates, quarters.
DATES_IN_TEXT = re.compile(
    rf"\b{MONTHS}(?:\s+\d{{1,2}}(?:st|nd|rd|th)?)?(?:,?\s+'?\d{{2,4}})?\b|\bmay\s+\d{{1,2}}(?:st|nd|rd|th)?\b"
    r"|\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b|\b(?:19|20)\d{2}\b|\b\d{1,4}[/-]\d{1,2}(?:[/-]\d{1,4})?\b|\bq[1-4]\b",
    re.IGNORECASE,
)
NUMBERS_IN_TEXT = re.compile(r"\$?\d[\d,]*(?:\.\d+)?\s*%?")
CASHTAGS = re.compile(r"\$[A-Za-z][A-Za-z.]{0,5}\b")


def instructions(level: str) -> str:
    return INSTRUCTIONS if level == "off" else f"{INSTRUCTIONS} {HIDDEN[level]}"
ABLATION_ROUTERS = ("random", "always-optimistic", "always-pessimistic", "oracle")
HEADLINE_CHARS = 160
ORACLE_FLAG = "ORACLE ROUTER: labels come from the realized fill-to-fill move (look-ahead); an upper bound, not a strategy"


@dataclass
class RouterInput:
    """What the router is shown for one decision date."""

    date: pd.Timestamp
    prompt: Chat  # the instructions as the system part (shared by every prompt: prefix caching), the data as the user part
    data: str  # the sessions alone: what a model that cannot follow instructions is shown
    news: list[dict[str, str]] = field(default_factory=list)


class RouterPrompts:
    """Builds router inputs for any session of one view, from that view's bars and news only."""

    COLUMNS = ("raw_open", "raw_high", "raw_low", "raw_close", "volume", "adjustment_step")

    def __init__(self, view: MarketView, ticker: str, anonymize: str, max_headlines: int, last: int | None = None):
        """`anonymize`: one of ANONYMIZE_LEVELS; `last`: only the view's last sessions are needed (one decision: 6)."""
        self.ticker = ticker
        self.level = anonymize
        self.has_ohlc = view.has_ohlc
        bars = view.ticker_bars(ticker, last)
        self.sessions = bars.index
        self.bars = {name: bars[name].to_numpy() for name in self.COLUMNS}
        news = view.news_for(ticker, last)
        self.news_by_session: dict[pd.Timestamp, list[tuple[str, str, str]]] = {}
        for item_id, text, visible_at, session in zip(news["id"], news["text"], news["visible_at"], news["session"]):
            items = self.news_by_session.setdefault(session, [])
            if len(items) < max_headlines:
                items.append((str(item_id), text, visible_at.isoformat()))
        if anonymize != "off":
            names = [ticker, *COMPANY_NAMES.get(ticker, ())]
            if anonymize == "prices":  # every ticker and company name tradesim knows, not only this one's
                names += [*view.tickers, *COMPANY_NAMES, *(n for known in COMPANY_NAMES.values() for n in known)]
            ordered = sorted(set(names), key=len, reverse=True)
            self.names = re.compile(r"\$?\b(" + "|".join(re.escape(n) for n in ordered) + r")\b", re.IGNORECASE)

    def text(self, value: str) -> str:
        text = " ".join(str(value).split())[:HEADLINE_CHARS]
        if self.level == "off":
            return text
        text = CASHTAGS.sub("a stock", self.names.sub("the company", text))
        if self.level == "prices":
            text = DATES_IN_TEXT.sub("[date]", text)
            text = NUMBERS_IN_TEXT.sub(lambda m: m.group() if m.group().endswith("%") else "[number] ", text)
        return text

    def change(self, row: int) -> float:
        """The change from the previous printed close, corrected only by this session's own
        split/dividend step, so no later event moves it."""
        return self.bars["raw_close"][row] * self.bars["adjustment_step"][row] / self.bars["raw_close"][row - 1] - 1

    def line(self, label: str, row: int, headlines: list[str], rebase: tuple[float, float] | None = None) -> str:
        """One session as printed that day; `rebase`: (this session's close level, the window's mean
        volume) at the strictest level, where prices are an index (first close 100) and volume a ratio."""
        bar = {name: values[row] for name, values in self.bars.items()}
        scale = 1.0 if rebase is None else rebase[0] / bar["raw_close"]
        if self.has_ohlc:
            prices = f"open {bar['raw_open'] * scale:.2f} high {bar['raw_high'] * scale:.2f} low {bar['raw_low'] * scale:.2f} close {bar['raw_close'] * scale:.2f}"
            if np.isfinite(bar["volume"]):
                prices += f" volume {bar['volume']:,.0f}" if rebase is None else f" volume {bar['volume'] / rebase[1]:.2f}x average"
        else:
            prices = f"close {bar['raw_close'] * scale:.2f}"
        change = self.change(row)
        prices += f", {'up' if change >= 0 else 'down'} {abs(change):.2%}"
        news = " | ".join(headlines) if headlines else "no news"
        return f"{label}: {prices}; news: {news}"

    def at(self, date: pd.Timestamp) -> RouterInput | None:
        """The router input for `date`, or None without five sessions of history."""
        end = int(self.sessions.searchsorted(date, side="right"))
        if end < 6 or self.sessions[end - 1] != date:
            return None
        lines, used = [], []
        rows = range(end - 5, end)
        levels = 100 * np.cumprod([1.0, *(1 + self.change(row) for row in rows[1:])])
        volume = np.nanmean(self.bars["volume"][end - 5:end]) if self.has_ohlc else np.nan
        for offset, row in enumerate(rows, start=1):
            session = self.sessions[row]
            items = self.news_by_session.get(session, ())
            headlines = [self.text(text) for _, text, _ in items]
            used.extend({"id": item_id, "visible_at": visible_at} for item_id, _, visible_at in items)
            label = f"day {offset - 5}" if self.level in ("dates", "prices") else str(session.date())
            rebase = (levels[offset - 1], volume if volume > 0 else np.nan) if self.level == "prices" else None
            lines.append(self.line(label, row, headlines, rebase))
        subject = "" if self.level != "off" else f"Stock: {self.ticker}\n"
        data = subject + "\n".join(lines) + f"\n{QUESTION}"
        return RouterInput(date=date, prompt=Chat(instructions(self.level), data), data=data, news=used)


@dataclass(frozen=True)
class LLMoESettings(LearnedSettings):
    """The settings of strategy LLMoEStrategy."""

    router: str = setting("minilm", "model spec (minilm, hf:<id or dir>, openai:<url>#<model>) or an ablation: random, always-optimistic, always-pessimistic, oracle (look-ahead upper bound)")
    router_reasons: bool = setting(False, "also generate a one-sentence reason per decision (models that can generate)")
    anonymize: str = setting(
        "off",
        "what prompts hide: names (ticker, company), dates (and calendar dates: relative sessions), prices (and price "
        "levels: rebased to 100, volume as a ratio; dates, numbers and every known name scrubbed from headlines)",
        choices=ANONYMIZE_LEVELS,
    )
    max_headlines: int = setting(5, "headlines shown per session", minimum=0)
    min_expert_days: int = setting(50, "an expert with fewer training days is trained on all of them", minimum=1)


class LLMoEStrategy(LearnedAllInAllOut):
    name = "llmoe"
    summary = "LLMoE: a language-model router picks an optimistic or pessimistic expert; All-in All-out."
    Settings = LLMoESettings
    fitted_attributes = (*LearnedAllInAllOut.fitted_attributes, "experts", "training_days")
    model = None  # the router's LanguageModel, loaded on first use
    future_returns: pd.Series | None = None  # only for the oracle, from reveal_future

    def validate(self) -> None:
        super().validate()

        router = self.settings.router
        if router not in ABLATION_ROUTERS and router.partition(":")[0] not in BACKENDS:
            raise TradesimError(
                f"--router {router!r}: expected a model spec (minilm, smollm2, hf:<id or dir>, openai:<url>#<model>) "
                f"or one of {', '.join(ABLATION_ROUTERS)}"
            )
        if self.looks_ahead:
            self.note(ORACLE_FLAG)

    @property
    def looks_ahead(self) -> bool:
        return self.settings.router == "oracle"

    @property
    def look_ahead_reason(self) -> str:
        return ORACLE_FLAG

    def reveal_future(self, data) -> None:
        bars = data.view(data.sessions[-1]).ticker_bars(self.ticker)
        self.future_returns = fill_to_fill_returns(bars, self.runtime.fill)

    def router_model(self):
        if self.model is None:
            self.model = self.runtime.load_model(self.settings.router)
        return self.model

    def route(self, inputs: list[RouterInput]) -> np.ndarray:
        """Probability of Optimistic for each input."""
        router = self.settings.router
        if router == "always-optimistic":
            return np.ones(len(inputs))
        if router == "always-pessimistic":
            return np.zeros(len(inputs))
        if router == "random":
            return np.array([np.random.default_rng([self.seed, item.date.toordinal()]).uniform() for item in inputs])
        if router == "oracle":
            realized = self.future_returns.reindex([item.date for item in inputs]).to_numpy()
            return np.where(np.isfinite(realized), (realized > 0).astype(float), np.nan)
        model = self.router_model()
        return model.choose([item.prompt for item in inputs], OPTIONS, DESCRIPTIONS)[:, 0]

    def reasons(self, inputs: list[RouterInput], optimistic: np.ndarray) -> list[str]:
        labels = [OPTIONS[0] if p >= 0.5 else OPTIONS[1] for p in optimistic]
        router = self.settings.router
        if router in ABLATION_ROUTERS:
            return [f"{router} router" for _ in inputs]
        model = self.router_model()
        if not model.can_generate:
            return [
                f"{label}: closest to the {label.lower()} description (similarity softmax {max(p, 1 - p):.2f}); {router} cannot explain"
                for label, p in zip(labels, optimistic)
            ]
        requests = [Chat(item.prompt.system, f"{item.data} {label}\n{REASON_REQUEST}") for item, label in zip(inputs, labels)]
        return model.generate(requests, max_new_tokens=40)

    def fit(self, view: MarketView) -> None:
        rows, labels = self.training_rows(view)
        self.input_columns = rows.columns
        prompts = RouterPrompts(view, self.ticker, self.settings.anonymize, self.settings.max_headlines)
        inputs = [prompts.at(date) for date in rows.index]
        if self.settings.router == "oracle":
            optimistic = labels.astype(float)  # the training labels are the realized next moves
        else:
            optimistic = self.route(inputs)
        chosen = np.where(optimistic >= 0.5, OPTIONS[0], OPTIONS[1])
        self.experts = {}
        self.training_days = {}
        for offset, label in enumerate(OPTIONS):
            mine = chosen == label
            self.training_days[label] = int(mine.sum())
            if mine.sum() < self.settings.min_expert_days:
                self.note(
                    f"the router labelled only {int(mine.sum())} training days {label}: that expert is trained on all "
                    f"{len(rows)} training days"
                )
                mine = np.ones(len(rows), dtype=bool)
            self.experts[label] = self.train(rows[mine], labels[mine], seed_offset=offset, role=f"{label.lower()} expert")

    def decide(self, view: MarketView) -> Decision:
        return self.decide_batch([view])[0]

    def decide_batch(self, views: list[MarketView]) -> list[Decision]:
        settings = self.settings
        inputs = [RouterPrompts(v, self.ticker, settings.anonymize, settings.max_headlines, last=10).at(v.date) for v in views]
        ready = [i for i, item in enumerate(inputs) if item is not None]
        optimistic = np.full(len(views), np.nan)
        optimistic[ready] = self.route([inputs[i] for i in ready])
        reasons: dict[int, str] = {}
        if settings.router_reasons and ready:
            reasons = dict(zip(ready, self.reasons([inputs[i] for i in ready], optimistic[ready])))
        decisions = []
        for index, view in enumerate(views):
            window = self.current_window(view)
            item = inputs[index]
            if item is None or window is None or not np.isfinite(optimistic[index]):
                decisions.append(self.trade(None, {"router": settings.router, "router_label": None}, "expert_probability"))
                continue
            label = OPTIONS[0] if optimistic[index] >= 0.5 else OPTIONS[1]
            log = {
                "router": settings.router,
                "router_label": label,
                "router_probability": float(max(optimistic[index], 1 - optimistic[index])),
                "reason": reasons.get(index),
                "news": item.news,
                "expert": label,
                "prompt": item.prompt.as_text(),
            }
            if self.looks_ahead:
                log["look_ahead"] = True
            probability = float(self.experts[label].predict(window)[0])
            decisions.append(self.trade(probability, log, "expert_probability"))
        return decisions

    def models(self) -> list[dict[str, Any]]:
        return [self.model.describe()] if self.model is not None else []

    @property
    def label(self) -> str:
        level = self.settings.anonymize
        return f"{self.name} ({self.settings.router}{'' if level == 'off' else f', anonymized: {level}'})"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "router_template": {"version": ROUTER_TEMPLATE_VERSION, "sha256": TEMPLATE_SHA256},
            "expert_training_days": getattr(self, "training_days", {}),
            "look_ahead": self.looks_ahead,
        }
