"""The TradExpert strategy (package docstring: what it does): its settings, the experts' facts and
reports, fitting on the training period, and decisions on each rebalance date."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from strategies.tradexpert.experts import EXPERTS, Facts, gather, panel
from strategies.tradexpert.general import GeneralExpert
from strategies.tradexpert.prompts import REPORT_STOP, REPORT_TOKENS, TEMPLATE_VERSION, expert_prompt
from strategies.tradexpert.specialists import SPECIALIST_SHARE, TRAINED, Specialists, Training
from tradesim.errors import TradesimError
from tradesim.llm.model import BACKENDS, LOCAL_BACKENDS
from tradesim.market.data import MarketView
from tradesim.market.factors import FACTOR_HISTORY, compute_factors, information_coefficients, select_factors
from tradesim.market.features import fill_to_fill_returns
from tradesim.policies import rebalance_dates, top_k_dropout
from tradesim.ranking import METHODS, budget_too_small, minimum_budget, rank
from tradesim.strategy import Decision, Settings, Strategy, setting


@dataclass(frozen=True)
class TradExpertSettings(Settings):
    """The settings of strategy TradExpert."""

    mode: str = setting("rank", "rank: pairwise ranking, top-K portfolio; predict: rise/fall, All-in All-out per ticker", choices=("rank", "predict"))
    ranking: str = setting("all-pairs", "how comparisons become a ranking", choices=METHODS)
    budget: int | None = setting(None, "at most this many comparisons per decision date (budgeted ranking)", minimum=0)
    top_k: int = setting(5, "tickers held after each rebalance (rank mode)", minimum=1)
    rebalance_every: int = setting(5, "sessions between decisions, and the horizon compared or predicted", minimum=1)
    n_drop: int | None = setting(None, "replace at most this many held tickers per rebalance (qlib's TopkDropout)", minimum=0)
    general_expert: str = setting("fitted", "fitted (trained on the training period), random, or a model spec used zero-shot")
    fine_tune: str = setting("none", "lora: fine-tune the --general-expert model (hf: or smollm2) with LoRA on the training period", choices=("none", "lora"))
    lora_rank: int = setting(8, "LoRA rank (--fine-tune lora)", minimum=1)
    lora_epochs: int = setting(1, "passes over the LoRA training prompts", minimum=1)
    lora_examples: int = setting(2000, "training prompts sampled at most for LoRA (pairs in both orders, or tickers)", minimum=2)
    encoder: str = setting("minilm", "the encoder whose report embeddings the fitted General Expert reads")
    expert_model: str | None = setting(None, "a model that can generate: turns each expert's facts into its report (default: facts are the report)")
    news_model: str | None = setting(None, "the model of the News expert alone (default: --expert-model)")
    market_model: str | None = setting(None, "the model of the Market expert alone (default: --expert-model)")
    alpha_model: str | None = setting(None, "the model of the Alpha expert alone (default: --expert-model)")
    fundamental_model: str | None = setting(None, "the model of the Fundamental expert alone (default: --expert-model)")
    experts: str = setting(",".join(EXPERTS), "the experts that report (drop some for the paper's ablation)")
    alpha_factors: int = setting(8, "Alpha factors chosen on the training period by |information coefficient|", minimum=1)
    market_window: int = setting(20, "sessions the Market expert describes", minimum=5)
    news_sessions: int = setting(5, "sessions of headlines the News expert reads", minimum=1)
    max_headlines: int = setting(8, "headlines per ticker in a News report", minimum=0)
    max_market_news: int = setting(3, "market-wide headlines in a News report", minimum=0)
    train_sessions: int = setting(750, "train on at most this many sessions before --train-end (0: all)", minimum=0)
    max_pairs: int = setting(60000, "training pairs sampled at most (fitted comparator)", minimum=100)
    hidden: int = setting(64, "hidden units of the fitted General Expert", minimum=2)
    epochs: int = setting(60, "maximum training epochs (early stopping on the last 20% of training dates)", minimum=1)
    patience: int = setting(8, "epochs without improvement before training stops", minimum=1)
    market_expert: str = setting("facts", "facts, or reprogrammed: a Time-LLM reprogramming of OHLCV into --market-llm, trained to predict the movement", choices=("facts", "reprogrammed"))
    alpha_expert: str = setting("facts", "facts, or lightgbm: LightGBM over every factor scores each ticker, its top factors by contribution reported", choices=("facts", "lightgbm"))
    news_expert: str = setting("facts", "facts, or trained: a classifier over the News report's embedding predicts the movement", choices=("facts", "trained"))
    fundamental_expert: str = setting("facts", "facts, or trained: a classifier over the fundamentals predicts one of five quarter-ahead classes", choices=("facts", "trained"))
    market_llm: str = setting("smollm2", "the frozen local model the reprogrammed Market Analyst reads through (smollm2 or hf:...)")
    reprogram_window: int = setting(48, "sessions of OHLCV the reprogrammed Market Analyst reads (patches of 16, stride 8)", minimum=16)
    reprogram_layers: int = setting(6, "layers of --market-llm used (Time-LLM's llm_layers; 0: all)", minimum=0)
    prototypes: int = setting(1000, "text prototypes the reprogramming maps the vocabulary to", minimum=2)
    reprogram_epochs: int = setting(2, "training passes of the reprogramming layer (early stopping on the last 20%)", minimum=1)
    specialist_samples: int = setting(1000, "training windows sampled at most for the reprogrammed Market Analyst", minimum=20)
    lightgbm_rounds: int = setting(300, "boosting rounds at most of the LightGBM Alpha expert (early stopping on the last 20%)", minimum=10)


class TradExpert(Specialists, GeneralExpert, Strategy):
    name = "tradexpert"
    summary = "TradExpert: News, Market, Alpha and Fundamental experts report; a General Expert ranks (top-K) or predicts."
    fitted_attributes = ("fitted", "factors", "ics", "factor_table", "training_period", "specialists", "projections", "input_columns", "general")
    carried_attributes = ("held",)
    Settings = TradExpertSettings

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fitted: list[dict[str, Any]] = []
        self.models_used: dict[str, Any] = {}
        self.tables: dict[str, list[dict[str, Any]]] = {"reports": [], "comparisons": [], "rankings": []}
        self.held: set[str] = set()
        self.specialists: dict[str, dict[str, Any]] = {}  # trained expert -> what it fitted
        self._reprogrammed = None  # the reprogrammed Market Analyst, once loaded

    # ---------------------------------------------------------------- settings
    def validate(self) -> None:
        settings = self.settings
        chosen = tuple(e.strip() for e in settings.experts.split(",") if e.strip())
        unknown = [e for e in chosen if e not in EXPERTS]
        if unknown or not chosen:
            raise TradesimError(f"--experts {settings.experts!r}: expected a comma-separated subset of {', '.join(EXPERTS)}")
        self.experts = tuple(e for e in EXPERTS if e in chosen)
        if settings.mode == "rank":
            if len(self.tickers) < 2:
                raise TradesimError("--mode rank: ranking needs at least two tickers (use --mode predict for one)")
            if settings.top_k >= len(self.tickers):
                raise TradesimError(f"--top-k {settings.top_k}: must be fewer than the {len(self.tickers)} tickers ranked")
        if settings.budget is not None and settings.ranking != "budgeted":
            raise TradesimError(f"--budget: only the budgeted ranking takes a budget (--ranking {settings.ranking} compares what it must)")
        if settings.budget is not None and settings.mode == "rank":
            if settings.budget < minimum_budget(len(self.tickers), settings.top_k):
                raise TradesimError(f"--budget {settings.budget}: " + budget_too_small(len(self.tickers), settings.top_k, settings.budget))

        general = settings.general_expert
        if general not in ("fitted", "random") and general.partition(":")[0] not in BACKENDS:
            raise TradesimError(f"--general-expert {general!r}: expected fitted, random or a model spec (minilm, smollm2, hf:..., openai:...)")
        if settings.fine_tune == "lora" and general.partition(":")[0] not in LOCAL_BACKENDS:
            raise TradesimError(f"--fine-tune lora: needs --general-expert to be a local model (smollm2 or hf:...), not {general!r}")
        for key in ("encoder", "expert_model", *(f"{e}_model" for e in EXPERTS)):
            spec = getattr(settings, key)
            if spec is not None and spec.partition(":")[0] not in BACKENDS:
                raise TradesimError(f"--{key.replace('_', '-')} {spec!r}: expected a model spec (minilm, smollm2, hf:..., openai:...)")
        for expert in EXPERTS:
            if getattr(settings, f"{expert}_expert") != "facts" and expert not in self.experts:
                raise TradesimError(f"--{expert}-expert {TRAINED[expert]}: the {expert} expert is not among --experts {settings.experts}")
        if settings.market_expert == "reprogrammed" and settings.market_llm.partition(":")[0] not in LOCAL_BACKENDS:
            raise TradesimError(f"--market-llm {settings.market_llm!r}: the reprogrammed Market Analyst needs a local model (smollm2 or hf:...)")
        if settings.alpha_expert == "lightgbm":
            from tradesim.models.boosting import require_lightgbm

            require_lightgbm("--alpha-expert lightgbm")

    @property
    def needs_training(self) -> bool:
        return True

    @property
    def horizon(self) -> int:
        return self.settings.rebalance_every

    def decision_dates(self, sessions: pd.DatetimeIndex) -> pd.DatetimeIndex:
        return rebalance_dates(sessions, self.settings.rebalance_every)

    # ---------------------------------------------------------------- models
    def model(self, spec: str):
        if spec not in self.models_used:
            self.models_used[spec] = self.runtime.load_model(spec)
        return self.models_used[spec]

    def state(self) -> bytes:
        if self.settings.fine_tune == "lora":
            raise TradesimError("--fine-tune lora: the LoRA-tuned General Expert lives inside its model and cannot be stored for a paper account yet")
        return super().state()

    def models(self) -> list[dict[str, Any]]:
        return [model.describe() for model in self.models_used.values()]


    # ---------------------------------------------------------------- experts
    def facts(self, views: list[MarketView], specialists: bool = True) -> list[Facts]:
        """Every expert's facts (and reports, and trained specialists' predictions unless told not to)."""
        settings = self.settings
        gathered = [
            gather(
                view, self.experts, self.factors, self.ics, settings.market_window, settings.news_sessions,
                settings.max_headlines, settings.max_market_news,
            )
            for view in views
        ]
        for expert in self.experts:
            if self.expert_model(expert):
                self.write_reports(gathered, expert)
        if specialists and self.trained_experts():  # after the reports: the News Analyst reads what it was trained on
            self.apply_specialists(views, gathered)
        return gathered

    def expert_model(self, expert: str) -> str | None:
        return getattr(self.settings, f"{expert}_model") or self.settings.expert_model

    def write_reports(self, gathered: list[Facts], expert: str) -> None:
        """The expert's model turns its facts into its report, once per (ticker, date)."""
        spec = self.expert_model(expert)
        model = self.model(spec)
        if not model.can_generate:
            flag = f"--{expert}-model" if getattr(self.settings, f"{expert}_model") else "--expert-model"
            raise TradesimError(f"{flag} {model.spec}: this model cannot generate reports; use smollm2, an hf: or an openai: model")
        keys = [(facts, ticker) for facts in gathered for ticker in facts.tickers if expert in facts.texts[ticker]]
        prompts = [expert_prompt(expert, facts.texts[ticker][expert]) for facts, ticker in keys]
        for (facts, ticker), report in zip(keys, model.generate(prompts, max_new_tokens=REPORT_TOKENS, stop=REPORT_STOP)):
            facts.texts[ticker][expert] = report or facts.texts[ticker][expert]





    # ---------------------------------------------------------------- fitting
    def training_dates(self, view: MarketView) -> pd.DatetimeIndex:
        sessions = view.sessions[FACTOR_HISTORY + self.settings.market_window :]
        limit = self.settings.train_sessions
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
                f"returns before {view.date.date()} (needs 20, after {FACTOR_HISTORY + settings.market_window} sessions of history)"
            )
        self.factors, self.ics, history = [], {}, None
        if "alpha" in self.experts:
            history = compute_factors(panel(view, None))  # as decisions see them: one missing bar carried over
            ics = information_coefficients({k: v.loc[labelled] for k, v in history.items()}, forward.loc[labelled])
            self.factors = select_factors(ics, settings.alpha_factors)
            self.ics = {name: float(ics.loc[name, "ic_mean"]) for name in self.factors}
            self.factor_table = ics
        self.training_period = (str(labelled[0].date()), str(labelled[-1].date()))
        if settings.fine_tune == "lora":
            self.fine_tune(view, forward, labelled)
        self.specialists = {}
        if self.trained_experts():
            # stacking: the specialists fit on the earlier dates, the General Expert on the later ones
            # (one horizon between), where the specialists' predictions are out of sample
            cut = int(len(labelled) * SPECIALIST_SHARE)
            own, labelled = labelled[:cut], labelled[cut + 1 :]
            if len(labelled) < 5:
                raise TradesimError(
                    f"--train-end: trained specialists leave the General Expert only {len(labelled)} training dates "
                    f"(it fits on the last {1 - SPECIALIST_SHARE:.0%} of them; needs 5): train on more sessions"
                )
            self.fit_specialists(Training(view, bars, forward, own, self.facts([view.at(date) for date in own], specialists=False), history))
        if settings.general_expert != "fitted":
            return
        gathered = self.facts([view.at(date) for date in labelled])
        self.fit_projections(gathered)
        features = self.features(gathered)
        if settings.mode == "rank":
            rows, labels = self.pair_rows(features, forward, labelled)
        else:
            rows, labels = self.single_rows(features, forward, labelled)
        self.input_columns = rows.shape[1]
        self.general = self.train(rows, labels)











    # ---------------------------------------------------------------- deciding
    def decide(self, view: MarketView) -> Decision:
        return self.decide_batch([view])[0]

    def decide_batch(self, views: list[MarketView]) -> list[Decision]:
        gathered = self.facts(views)
        tables = self.features(gathered) if self.settings.general_expert == "fitted" else [None] * len(gathered)
        decisions = []
        for facts, table in zip(gathered, tables):
            self.record_reports(facts)
            decide = self.rank_decision if self.settings.mode == "rank" else self.predict_decision
            decisions.append(decide(facts, table))
        return decisions

    def record_reports(self, facts: Facts) -> None:
        day = str(facts.date.date())
        for ticker in facts.tickers:
            predicted = facts.predictions.get(ticker, {})
            for expert, text in facts.reports(ticker).items():
                row = {"date": day, "ticker": ticker, "expert": expert, "report": text}
                if self.specialists:
                    row["prediction"] = predicted[expert]["prediction"] if expert in predicted else None
                self.tables["reports"].append(row)

    def rank_decision(self, facts: Facts, table: pd.DataFrame | None) -> Decision:
        settings = self.settings
        day = str(facts.date.date())
        if len(facts.tickers) < 2:
            self.held = set()
            return Decision({}, {t: {"rank": None, "reason": "fewer than two tickers could be judged"} for t in self.tickers})
        ranking = rank(facts.tickers, self.comparator(facts, table), settings.ranking, k=settings.top_k, budget=settings.budget, seed=self.seed + facts.date.toordinal())
        holding = top_k_dropout(ranking.order, self.held, settings.top_k, settings.n_drop)
        self.held = set(holding)
        weights = {t: 1.0 / settings.top_k for t in holding}
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
                **self.specialist_log(facts, ticker),
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
            log[ticker] = {"rise_probability": float(p), "predicted": "rise" if rise[ticker] else "fall", **self.specialist_log(facts, ticker),
                           "news_ids": facts.news_ids.get(ticker, [])}
        for ticker in self.tickers:
            log.setdefault(ticker, {"rise_probability": None, "predicted": None})
        return Decision(weights, log, scores=dict(zip(facts.tickers, map(float, probabilities))), predictions=rise)

    def specialist_log(self, facts: Facts, ticker: str) -> dict[str, Any]:
        """The trained specialists' predictions on the ticker, for its decision row (none: nothing)."""
        predicted = facts.predictions.get(ticker)
        return {"specialists": {expert: round(p["prediction"], 6) for expert, p in predicted.items()}} if predicted else {}

    # ---------------------------------------------------------------- what the run keeps
    def side_tables(self) -> dict[str, pd.DataFrame]:
        return {name: pd.DataFrame(rows) for name, rows in self.tables.items() if rows}

    @property
    def label(self) -> str:
        settings = self.settings
        general = settings.general_expert + (" + LoRA" if settings.fine_tune == "lora" else "")
        ranking = settings.ranking if settings.mode == "rank" else "rise/fall"
        trained = set(self.trained_experts())
        experts = ",".join(f"{e}:{TRAINED[e]}" if e in trained else e for e in self.experts) if trained else settings.experts
        return f"{self.name} ({settings.mode}, {ranking}, {general}, experts {experts})"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "template": TEMPLATE_VERSION,
            "experts": list(self.experts),
            "alpha_factors": [{"name": name, "ic_mean": self.ics[name]} for name in getattr(self, "factors", [])],
            "training_period": getattr(self, "training_period", None),
            "specialists": {e: getattr(self.settings, f"{e}_expert") for e in self.experts},
            "fitted_models": self.fitted,
        }
