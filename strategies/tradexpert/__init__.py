"""TradExpert (Ding et al., 2024): four specialist experts report, a General Expert decides.

Every `--rebalance-every` sessions the News, Market, Alpha and Fundamental experts report on each
ticker from the data visible that day (with `--expert-model`, a language model turns each expert's
facts into its report; otherwise the facts are the report). The General Expert then either
predicts rise/fall for each ticker (`--mode predict`, All-in All-out on each, equal sleeves) or
compares tickers two at a time (`--mode rank`), asking both orders so a position bias cancels;
`tradesim.ranking` turns the comparisons into a ranking and the K best are held at equal weight.

The General Expert is `fitted` by default: a comparator (or a rise/fall classifier) trained on the
training period over the Market and Alpha numbers and the offline encoder's embeddings of the News
and Fundamental reports, labelled with realized relative returns over the horizon. Any model spec
(`minilm`, `hf:...`, `openai:...`) is used zero-shot instead, and `random` is the chance baseline.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from strategies.tradexpert.experts import EXPERTS, Facts, gather, panel
from tradesim.errors import TradesimError
from tradesim.llm.base import Chat
from tradesim.market.data import MarketView
from tradesim.market.factors import FACTOR_HISTORY, compute_factors, information_coefficients, select_factors
from tradesim.market.features import fill_to_fill_returns
from tradesim.policies import rebalance_dates, top_k_dropout
from tradesim.ranking import METHODS, both_orders, rank
from tradesim.strategy import Decision, Param, Strategy

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
EMBEDDED_EXPERTS = ("news", "fundamental")  # texts the fitted General Expert reads through the encoder
EMBEDDING_COMPONENTS = 8  # principal components kept of each embedded report


class TradExpert(Strategy):
    name = "tradexpert"
    summary = "TradExpert: News, Market, Alpha and Fundamental experts report; a General Expert ranks (top-K) or predicts."
    fitted_attributes = ("fitted", "factors", "ics", "factor_table", "training_period", "projections", "input_columns", "general")
    carried_attributes = ("held",)
    params = (
        Param("mode", str, "rank", "rank: pairwise ranking, top-K portfolio; predict: rise/fall, All-in All-out per ticker", ("rank", "predict")),
        Param("ranking", str, "all-pairs", "how comparisons become a ranking", METHODS),
        Param("budget", int, None, "at most this many comparisons per decision date (budgeted ranking)", minimum=0),
        Param("top_k", int, 5, "tickers held after each rebalance (rank mode)", minimum=1),
        Param("rebalance_every", int, 5, "sessions between decisions, and the horizon compared or predicted", minimum=1),
        Param("n_drop", int, None, "replace at most this many held tickers per rebalance (qlib's TopkDropout)", minimum=0),
        Param("general_expert", str, "fitted", "fitted (trained on the training period), random, or a model spec used zero-shot"),
        Param("fine_tune", str, "none", "lora: fine-tune the --general-expert model (hf: or smollm2) with LoRA on the training period", ("none", "lora")),
        Param("lora_rank", int, 8, "LoRA rank (--fine-tune lora)", minimum=1),
        Param("lora_epochs", int, 1, "passes over the LoRA training prompts", minimum=1),
        Param("lora_examples", int, 2000, "training prompts sampled at most for LoRA (pairs in both orders, or tickers)", minimum=2),
        Param("encoder", str, "minilm", "the encoder whose report embeddings the fitted General Expert reads"),
        Param("expert_model", str, None, "a model that can generate: turns each expert's facts into its report (default: facts are the report)"),
        *(Param(f"{expert}_model", str, None, f"the model of the {expert.capitalize()} expert alone (default: --expert-model)") for expert in EXPERTS),
        Param("experts", str, ",".join(EXPERTS), "the experts that report (drop some for the paper's ablation)"),
        Param("alpha_factors", int, 8, "Alpha factors chosen on the training period by |information coefficient|", minimum=1),
        Param("market_window", int, 20, "sessions the Market expert describes", minimum=5),
        Param("news_sessions", int, 5, "sessions of headlines the News expert reads", minimum=1),
        Param("max_headlines", int, 8, "headlines per ticker in a News report", minimum=0),
        Param("max_market_news", int, 3, "market-wide headlines in a News report", minimum=0),
        Param("train_sessions", int, 750, "train on at most this many sessions before --train-end (0: all)", minimum=0),
        Param("max_pairs", int, 60000, "training pairs sampled at most (fitted comparator)", minimum=100),
        Param("hidden", int, 64, "hidden units of the fitted General Expert", minimum=2),
        Param("epochs", int, 60, "maximum training epochs (early stopping on the last 20% of training dates)", minimum=1),
        Param("patience", int, 8, "epochs without improvement before training stops", minimum=1),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fitted: list[dict[str, Any]] = []
        self.models_used: dict[str, Any] = {}
        self.tables: dict[str, list[dict[str, Any]]] = {"reports": [], "comparisons": [], "rankings": []}
        self.held: set[str] = set()

    # ---------------------------------------------------------------- settings
    def validate(self) -> None:
        settings = self.settings
        chosen = tuple(e.strip() for e in settings["experts"].split(",") if e.strip())
        unknown = [e for e in chosen if e not in EXPERTS]
        if unknown or not chosen:
            raise TradesimError(f"--experts {settings['experts']!r}: expected a comma-separated subset of {', '.join(EXPERTS)}")
        self.experts = tuple(e for e in EXPERTS if e in chosen)
        if settings["mode"] == "rank":
            if len(self.tickers) < 2:
                raise TradesimError("--mode rank: ranking needs at least two tickers (use --mode predict for one)")
            if settings["top_k"] >= len(self.tickers):
                raise TradesimError(f"--top-k {settings['top_k']}: must be fewer than the {len(self.tickers)} tickers ranked")
        if settings["budget"] is not None and settings["ranking"] != "budgeted":
            raise TradesimError(f"--budget: only the budgeted ranking takes a budget (--ranking {settings['ranking']} compares what it must)")
        if settings["budget"] is not None and settings["mode"] == "rank":
            from tradesim.ranking import budget_too_small, minimum_budget

            if settings["budget"] < minimum_budget(len(self.tickers), settings["top_k"]):
                raise TradesimError(f"--budget {settings['budget']}: " + budget_too_small(len(self.tickers), settings["top_k"], settings["budget"]))
        from tradesim.llm.model import BACKENDS, LOCAL_BACKENDS

        general = settings["general_expert"]
        if general not in ("fitted", "random") and general.partition(":")[0] not in BACKENDS:
            raise TradesimError(f"--general-expert {general!r}: expected fitted, random or a model spec (minilm, smollm2, hf:..., openai:...)")
        if settings["fine_tune"] == "lora" and general.partition(":")[0] not in LOCAL_BACKENDS:
            raise TradesimError(f"--fine-tune lora: needs --general-expert to be a local model (smollm2 or hf:...), not {general!r}")
        for key in ("encoder", "expert_model", *(f"{e}_model" for e in EXPERTS)):
            spec = settings[key]
            if spec is not None and spec.partition(":")[0] not in BACKENDS:
                raise TradesimError(f"--{key.replace('_', '-')} {spec!r}: expected a model spec (minilm, smollm2, hf:..., openai:...)")

    @property
    def needs_training(self) -> bool:
        return True

    @property
    def horizon(self) -> int:
        return self.settings["rebalance_every"]

    def decision_dates(self, sessions: pd.DatetimeIndex) -> pd.DatetimeIndex:
        return rebalance_dates(sessions, self.settings["rebalance_every"])

    # ---------------------------------------------------------------- models
    def model(self, spec: str):
        if spec not in self.models_used:
            self.models_used[spec] = self.runtime.load_model(spec)
        return self.models_used[spec]

    def state(self) -> bytes:
        if self.settings["fine_tune"] == "lora":
            raise TradesimError("--fine-tune lora: the LoRA-tuned General Expert lives inside its model and cannot be stored for a paper account yet")
        return super().state()

    def models(self) -> list[dict[str, Any]]:
        return [model.describe() for model in self.models_used.values()]

    @property
    def device(self):
        import torch

        from tradesim.models.training import default_device

        return default_device() if self.runtime.device == "auto" else torch.device(self.runtime.device)

    # ---------------------------------------------------------------- experts
    def facts(self, views: list[MarketView]) -> list[Facts]:
        settings = self.settings
        gathered = [
            gather(
                view, self.experts, self.factors, self.ics, settings["market_window"], settings["news_sessions"],
                settings["max_headlines"], settings["max_market_news"],
            )
            for view in views
        ]
        for expert in self.experts:
            if self.expert_model(expert):
                self.write_reports(gathered, expert)
        return gathered

    def expert_model(self, expert: str) -> str | None:
        return self.settings[f"{expert}_model"] or self.settings["expert_model"]

    def write_reports(self, gathered: list[Facts], expert: str) -> None:
        """The expert's model turns its facts into its report, once per (ticker, date)."""
        spec = self.expert_model(expert)
        model = self.model(spec)
        if not model.can_generate:
            flag = f"--{expert}-model" if self.settings[f"{expert}_model"] else "--expert-model"
            raise TradesimError(f"{flag} {model.spec}: this model cannot generate reports; use smollm2, an hf: or an openai: model")
        keys = [(facts, ticker) for facts in gathered for ticker in facts.tickers if expert in facts.texts[ticker]]
        prompts = [Chat(EXPERT_INSTRUCTIONS[expert], facts.texts[ticker][expert]) for facts, ticker in keys]
        for (facts, ticker), report in zip(keys, model.generate(prompts, max_new_tokens=REPORT_TOKENS, stop=REPORT_STOP)):
            facts.texts[ticker][expert] = report or facts.texts[ticker][expert]

    @staticmethod
    def report(facts: Facts, ticker: str) -> str:
        return "\n".join(f"{expert.capitalize()} expert: {text}" for expert, text in facts.texts[ticker].items())

    # ---------------------------------------------------------------- features for the fitted General Expert
    def embedded(self, gathered: list[Facts]) -> dict[str, np.ndarray]:
        """Per embedded expert: one embedding per (date, ticker) in `gathered` order (unique texts once)."""
        result = {}
        for expert in EMBEDDED_EXPERTS:
            if expert not in self.experts:
                continue
            texts = [facts.texts[t][expert] for facts in gathered for t in facts.tickers]
            unique = list(dict.fromkeys(texts))
            vectors = self.model(self.settings["encoder"]).embed(unique) if unique else np.empty((0, 0))
            lookup = {text: row for row, text in enumerate(unique)}
            result[expert] = vectors[[lookup[t] for t in texts]] if texts else np.empty((0, 0))
        return result

    def features(self, gathered: list[Facts]) -> list[pd.DataFrame]:
        """Per date: tickers x (Market and Alpha numbers, principal components of report embeddings)."""
        numbers = [facts.numbers for facts in gathered]
        embedded = self.embedded(gathered)
        frames = []
        start = 0
        for facts, table in zip(gathered, numbers):
            stop = start + len(facts.tickers)
            parts = [table.to_numpy(dtype=float)]
            for expert, vectors in embedded.items():
                mean, components = self.projections[expert]
                parts.append((vectors[start:stop] - mean) @ components.T)
            start = stop
            columns = [*table.columns, *(f"{e}_pc{i}" for e in embedded for i in range(self.projections[e][1].shape[0]))]
            frames.append(pd.DataFrame(np.hstack(parts) if parts else np.empty((len(facts.tickers), 0)), index=facts.tickers, columns=columns))
        return frames

    def fit_projections(self, gathered: list[Facts]) -> None:
        """Principal components of each embedded expert's training reports (numpy SVD)."""
        self.projections = {}
        for expert, vectors in self.embedded(gathered).items():
            mean = vectors.mean(axis=0)
            _, _, basis = np.linalg.svd(vectors - mean, full_matrices=False)
            self.projections[expert] = (mean, basis[:EMBEDDING_COMPONENTS])

    # ---------------------------------------------------------------- fitting
    def training_dates(self, view: MarketView) -> pd.DatetimeIndex:
        sessions = view.sessions[FACTOR_HISTORY + self.settings["market_window"] :]
        limit = self.settings["train_sessions"]
        if limit:
            sessions = sessions[-limit:]
        return sessions[::-1][:: self.horizon][::-1]

    def fit(self, view: MarketView) -> None:
        settings = self.settings
        bars = {name: view.field(name) for name in ("open", "high", "low", "close", "volume")}
        forward = fill_to_fill_returns(bars, self.runtime.fill, self.horizon)  # NaN wherever the label is not yet known
        dates = self.training_dates(view)
        labelled = dates[forward.loc[dates].notna().any(axis=1).to_numpy()]
        if len(labelled) < 20:
            raise TradesimError(
                f"--train-end: strategy {self.name} has only {len(labelled)} training dates with known {self.horizon}-session "
                f"returns before {view.date.date()} (needs 20, after {FACTOR_HISTORY + settings['market_window']} sessions of history)"
            )
        self.factors, self.ics = [], {}
        if "alpha" in self.experts:
            history = compute_factors(panel(view, None))  # as decisions see them: one missing bar carried over
            ics = information_coefficients({k: v.loc[labelled] for k, v in history.items()}, forward.loc[labelled])
            self.factors = select_factors(ics, settings["alpha_factors"])
            self.ics = {name: float(ics.loc[name, "ic_mean"]) for name in self.factors}
            self.factor_table = ics
        self.training_period = (str(labelled[0].date()), str(labelled[-1].date()))
        if settings["fine_tune"] == "lora":
            self.fine_tune(view, forward, labelled)
        if settings["general_expert"] != "fitted":
            return
        gathered = self.facts([view.at(date) for date in labelled])
        self.fit_projections(gathered)
        features = self.features(gathered)
        if settings["mode"] == "rank":
            rows, labels = self.pair_rows(features, forward, labelled)
        else:
            rows, labels = self.single_rows(features, forward, labelled)
        self.input_columns = rows.shape[1]
        self.general = self.train(rows, labels)

    def fine_tune(self, view: MarketView, forward: pd.DataFrame, dates) -> None:
        """LoRA-fit the General Expert's model to answer the training prompts with their realized labels
        (A when stock A returned more over the horizon; Rise when the return was positive)."""
        from tradesim.llm.lora import LoraSettings, fine_tune

        settings = self.settings
        rng = np.random.default_rng(self.seed)
        examples: list[tuple[Facts, tuple[str, ...], int]] = []
        for facts in self.facts([view.at(date) for date in dates]):
            realized = forward.loc[facts.date]
            known = [t for t in facts.tickers if np.isfinite(realized[t])]
            if settings["mode"] == "rank":
                for i, a in enumerate(known):
                    for b in known[i + 1 :]:
                        if realized[a] != realized[b]:
                            winner = int(realized[a] < realized[b])  # 0: A did better
                            examples += [(facts, (a, b), winner), (facts, (b, a), 1 - winner)]
            else:
                examples += [(facts, (t,), int(realized[t] <= 0)) for t in known]
        if len(examples) > settings["lora_examples"]:
            examples = [examples[i] for i in sorted(rng.choice(len(examples), settings["lora_examples"], replace=False))]
        prompts = [self.pair_prompt(facts, *names) if len(names) == 2 else self.single_prompt(facts, names[0]) for facts, names, _ in examples]
        options = RANK_OPTIONS if settings["mode"] == "rank" else PREDICT_OPTIONS
        lora = LoraSettings(rank=settings["lora_rank"], alpha=2 * settings["lora_rank"], epochs=settings["lora_epochs"], seed=self.seed)
        self.fitted.append(fine_tune(self.model(settings["general_expert"]), prompts, [label for *_, label in examples], options, lora))

    def pair_prompt(self, facts: Facts, a: str, b: str) -> Chat:
        # a pair's prompt opens with stock A's reports: pairs sharing A share a prefix
        return Chat(RANK_INSTRUCTIONS.format(horizon=self.horizon), f"Stock A ({a}):\n{self.report(facts, a)}\n\nStock B ({b}):\n{self.report(facts, b)}\n\nAnswer:")

    def single_prompt(self, facts: Facts, ticker: str) -> Chat:
        return Chat(PREDICT_INSTRUCTIONS.format(horizon=self.horizon), f"Stock {ticker}:\n{self.report(facts, ticker)}\n\nAnswer:")

    def pair_rows(self, features: list[pd.DataFrame], forward: pd.DataFrame, dates) -> tuple[np.ndarray, np.ndarray]:
        """Pairs of tickers on each training date, in both orders: [a - b, a, b] -> 1 when a returned more."""
        rng = np.random.default_rng(self.seed)
        per_date = max(1, self.settings["max_pairs"] // max(1, len(dates)) // 2)
        rows, labels = [], []
        for date, table in zip(dates, features):
            realized = forward.loc[date].reindex(table.index).to_numpy(dtype=float)
            known = np.flatnonzero(np.isfinite(realized))
            values, outcome = table.to_numpy(dtype=float)[known], realized[known]
            first, second = np.triu_indices(len(known), 1)
            differ = outcome[first] != outcome[second]
            first, second = first[differ], second[differ]
            if len(first) > per_date:
                chosen = np.sort(rng.choice(len(first), per_date, replace=False))
                first, second = first[chosen], second[chosen]
            a = np.concatenate([first, second])  # both orders of every pair
            b = np.concatenate([second, first])
            rows.append(self.pair_input(values[a], values[b]))
            labels.append((outcome[a] > outcome[b]).astype(float))
        return np.vstack(rows), np.concatenate(labels)

    @staticmethod
    def pair_input(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a - b, a, b], axis=-1)

    def single_rows(self, features: list[pd.DataFrame], forward: pd.DataFrame, dates) -> tuple[np.ndarray, np.ndarray]:
        rows, labels = [], []
        for date, table in zip(dates, features):
            realized = forward.loc[date].reindex(table.index)
            known = realized.notna().to_numpy()
            rows.append(table.to_numpy()[known])
            labels.append((realized.to_numpy()[known] > 0).astype(float))
        return np.vstack(rows), np.concatenate(labels)

    def network(self):
        from tradesim.models.networks import FeedForward

        return FeedForward(self.input_columns, self.settings["hidden"])

    def train(self, rows: np.ndarray, labels: np.ndarray):
        from tradesim.models.training import fit_or_load

        settings = self.settings
        classifier = fit_or_load(
            self.network,
            rows,
            labels,
            architecture=f"{type(self).__module__}.{type(self).__name__}.network",
            seed=self.seed,
            epochs=settings["epochs"],
            patience=settings["patience"],
            device=self.device,
            batch_size=512,
            about={
                "strategy": self.name,
                "role": f"general expert ({settings['mode']})",
                "experts": list(self.experts),
                "factors": self.factors,
                "encoder": self.models_used[settings["encoder"]].fingerprint if settings["encoder"] in self.models_used else None,
                "training_period": self.training_period,
                "fill": self.runtime.fill,
                "horizon": self.horizon,
                "hidden": settings["hidden"],
                "tickers": list(self.tickers),
            },
        )
        self.fitted.append(classifier.record)
        return classifier

    # ---------------------------------------------------------------- the General Expert
    def comparator(self, facts: Facts, table: pd.DataFrame | None):
        """P(a returns more than b) for a batch of pairs, asked in both orders."""
        general = self.settings["general_expert"]
        if general == "random":
            def compare(pairs):
                return [_seeded_uniform(self.seed, facts.date, a, b) for a, b in pairs]
            return both_orders(compare)
        if general == "fitted":
            def compare(pairs):
                a = table.loc[[p[0] for p in pairs]].to_numpy()
                b = table.loc[[p[1] for p in pairs]].to_numpy()
                return self.general.predict(self.pair_input(a, b))
            return both_orders(compare)
        model = self.model(general)

        def compare(pairs):
            return model.choose([self.pair_prompt(facts, a, b) for a, b in pairs], RANK_OPTIONS, RANK_DESCRIPTIONS)[:, 0]
        return both_orders(compare)

    def rise_probabilities(self, facts: Facts, table: pd.DataFrame | None) -> np.ndarray:
        general = self.settings["general_expert"]
        if general == "random":
            return np.array([_seeded_uniform(self.seed, facts.date, t, "") for t in facts.tickers])
        if general == "fitted":
            return self.general.predict(table.loc[facts.tickers].to_numpy())
        model = self.model(general)
        return model.choose([self.single_prompt(facts, t) for t in facts.tickers], PREDICT_OPTIONS, PREDICT_DESCRIPTIONS)[:, 0]

    # ---------------------------------------------------------------- deciding
    def decide(self, view: MarketView) -> Decision:
        return self.decide_batch([view])[0]

    def decide_batch(self, views: list[MarketView]) -> list[Decision]:
        gathered = self.facts(views)
        tables = self.features(gathered) if self.settings["general_expert"] == "fitted" else [None] * len(gathered)
        decisions = []
        for facts, table in zip(gathered, tables):
            self.record_reports(facts)
            decide = self.rank_decision if self.settings["mode"] == "rank" else self.predict_decision
            decisions.append(decide(facts, table))
        return decisions

    def record_reports(self, facts: Facts) -> None:
        day = str(facts.date.date())
        for ticker in facts.tickers:
            for expert, text in facts.texts[ticker].items():
                self.tables["reports"].append({"date": day, "ticker": ticker, "expert": expert, "report": text})

    def rank_decision(self, facts: Facts, table: pd.DataFrame | None) -> Decision:
        settings = self.settings
        day = str(facts.date.date())
        if len(facts.tickers) < 2:
            self.held = set()
            return Decision({}, {t: {"rank": None, "reason": "fewer than two tickers could be judged"} for t in self.tickers})
        ranking = rank(facts.tickers, self.comparator(facts, table), settings["ranking"], k=settings["top_k"], budget=settings["budget"], seed=self.seed + facts.date.toordinal())
        holding = top_k_dropout(ranking.order, self.held, settings["top_k"], settings["n_drop"])
        self.held = set(holding)
        weights = {t: 1.0 / settings["top_k"] for t in holding}
        position = {t: i + 1 for i, t in enumerate(ranking.order)}
        for a, b, p in ranking.compared:
            self.tables["comparisons"].append({"date": day, "a": a, "b": b, "p_a_beats_b": p})
        log = {}
        for ticker in self.tickers:
            judged = ticker in position
            row = {"date": day, "ticker": ticker, "rank": position.get(ticker), "score": ranking.scores.get(ticker), "held": ticker in self.held}
            if judged:
                self.tables["rankings"].append({**row, "comparisons": ranking.comparisons, "cycles": ranking.cycles})
            log[ticker] = {
                "rank": position.get(ticker),
                "score": ranking.scores.get(ticker),
                "news_ids": facts.news_ids.get(ticker, []),
                "comparisons": ranking.comparisons,
                "cycles": ranking.cycles,
            }
        return Decision(weights, log, scores={t: ranking.scores[t] for t in facts.tickers})

    def predict_decision(self, facts: Facts, table: pd.DataFrame | None) -> Decision:
        probabilities = self.rise_probabilities(facts, table) if facts.tickers else np.empty(0)
        rise = {t: bool(p >= 0.5) for t, p in zip(facts.tickers, probabilities)}
        sleeve = 1.0 / len(self.tickers)
        weights = {t: sleeve if rise.get(t) else 0.0 for t in self.tickers}
        day = str(facts.date.date())
        log = {}
        for ticker, p in zip(facts.tickers, probabilities):
            self.tables["rankings"].append({"date": day, "ticker": ticker, "rank": None, "score": float(p), "held": rise[ticker], "comparisons": 0, "cycles": 0})
            log[ticker] = {"rise_probability": float(p), "predicted": "rise" if rise[ticker] else "fall", "news_ids": facts.news_ids.get(ticker, [])}
        for ticker in self.tickers:
            log.setdefault(ticker, {"rise_probability": None, "predicted": None})
        return Decision(weights, log, scores=dict(zip(facts.tickers, map(float, probabilities))), predictions=rise)

    # ---------------------------------------------------------------- what the run keeps
    def side_tables(self) -> dict[str, pd.DataFrame]:
        return {name: pd.DataFrame(rows) for name, rows in self.tables.items() if rows}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "template": TEMPLATE_VERSION,
            "experts": list(self.experts),
            "alpha_factors": [{"name": name, "ic_mean": self.ics[name]} for name in getattr(self, "factors", [])],
            "training_period": getattr(self, "training_period", None),
            "fitted_models": self.fitted,
        }


def _seeded_uniform(seed: int, date: pd.Timestamp, a: str, b: str) -> float:
    digest = hashlib.sha256(f"{seed}|{date.date()}|{a}|{b}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64
