"""FinTeamExperts (Yu & Tiwari, 2024) as a trading strategy.

The role experts of a build (`tradesim finteam build`) read each ticker's ACL18-style input — the
last 5 sessions as a FLARE table and the tweets/news visible by the decision — and a gated team
(hard within a role, soft across roles) is trained on the training period only to predict the next
move (the move the fill earns, labelled like ACL18: a rise of at least 0.55%, a fall of at least
0.5%, other days left out of training). One ticker: All-in All-out. Several: the K tickers with the
highest rise probability, equal weight. Every decision's log holds the gate's choices and weights.

The build's corpora must end before the test period: a build whose cut-off falls after
`--train-end` has read text from the test period and is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from strategies.finteam.backbone import check_unfreezable
from strategies.finteam.build import MOVEMENT_LENGTH, Build, FeatureStore, expert_tops, newest_build, stacked, team_groups
from strategies.finteam.team import TaskData, TeamSettings, predict, train_team
from tradesim.config import tradesim_home
from tradesim.errors import TradesimError
from tradesim.evaluation.flare import flare_rows, window_text
from tradesim.evaluation.tasks import ACL18_FALL, ACL18_RISE, ACL18_SESSIONS, ACL18_TWEETS, movement_text, stratified_sample
from tradesim.market.data import MarketView
from tradesim.market.features import fill_to_fill_returns
from tradesim.policies import rebalance_dates, top_k
from tradesim.strategy import Decision, Settings, Strategy, setting

TABLE_SESSIONS = 35  # enough bars for the table's inc-30 column on each of the last 5 sessions


@dataclass(frozen=True)
class FinTeamSettings(Settings):
    """The settings of strategy FinTeam."""

    team: str | None = setting(None, "a build directory from `tradesim finteam build` (its experts are used)")
    top_k: int = setting(1, "tickers held (several tickers): the K highest rise probabilities", minimum=1)
    rebalance_every: int = setting(1, "sessions between decisions", minimum=1)
    max_examples: int = setting(3000, "training examples sampled at most (stratified by label)", minimum=10)
    team_steps: int = setting(1500, "gate and head training steps", minimum=1)
    balance: float = setting(0.1, "weight of the batch-mean usage entropy (keeps experts in use)", minimum=0)
    sharpness: float = setting(0.0, "weight of the per-sample routing entropy penalty", minimum=0)
    unfreeze_top: int = setting(0, "also fine-tune each expert's top N layers with the team (BERT-like experts; 0: frozen features)", minimum=0)


class FinTeam(Strategy):
    name = "finteam"
    summary = "FinTeamExperts: macro, micro and quant role experts behind a gate predict each ticker's next move."
    Settings = FinTeamSettings

    def validate(self) -> None:
        if not self.settings.team:
            found = newest_build(tradesim_home())
            if found is None:
                raise TradesimError(
                    f"--team: strategy finteam needs a build directory, and there is no complete build under {tradesim_home() / 'models'} "
                    "(make one with `tradesim finteam build`)"
                )
            self.settings = dataclasses.replace(self.settings, team=str(found))
            self.note(f"--team not given: using the newest complete build under $TRADESIM_HOME, {found}")

        self.build = Build.load(Path(self.settings.team))
        if self.settings.unfreeze_top:
            from transformers import AutoConfig

            check_unfreezable(AutoConfig.from_pretrained(self.build.expert_dirs()[0]), self.settings.unfreeze_top)
        self.tables: dict[str, list[dict]] = {"gate": []}

    @property
    def needs_training(self) -> bool:
        return True

    def decision_dates(self, sessions: pd.DatetimeIndex) -> pd.DatetimeIndex:
        return rebalance_dates(sessions, self.settings.rebalance_every)

    # ---------------------------------------------------------------- inputs
    def store(self):
        if not hasattr(self, "_store"):
            self._store = FeatureStore(tradesim_home(), self.runtime.device, self.runtime.progress)
        return self._store

    def features(self, texts: list[str]) -> np.ndarray:
        experts = {Path(p).name: p for p in self.build.expert_dirs()}
        return stacked(self.store(), experts, MOVEMENT_LENGTH, texts)

    def hidden(self, texts: list[str]):
        """With --unfreeze-top: every expert's token states entering its top layers."""
        if not self.settings.unfreeze_top:
            return None
        return [self.store().hidden(Path(p).name, p, texts, MOVEMENT_LENGTH, self.settings.unfreeze_top) for p in self.build.expert_dirs()]

    @staticmethod
    def table(bars: pd.DataFrame) -> pd.DataFrame:
        prices = pd.DataFrame({"open": bars["raw_open"], "high": bars["raw_high"], "low": bars["raw_low"], "close": bars["raw_close"], "adj_close": bars["close"]})
        return flare_rows(prices)

    def inputs(self, view: MarketView, ticker: str, dates) -> dict[pd.Timestamp, tuple[str, list[str]]]:
        """ACL18-style text for each of `dates` (sessions of `view`): the table of the last 5
        sessions and the news counting for them, newest first. Percent changes within a window do
        not depend on adjustments made after it, so one view serves every earlier date."""
        table = self.table(view.ticker_bars(ticker))
        news = view.news_for(ticker)
        sessions = view.sessions
        result = {}
        for day in dates:
            text = window_text(table, day, ACL18_SESSIONS)
            if text is None:
                continue
            position = sessions.get_loc(day)
            window = sessions[max(0, position - ACL18_SESSIONS + 1) : position + 1]
            recent = news[news["session"].isin(window)] if len(news) else news
            recent = recent.iloc[::-1]
            texts = list(dict.fromkeys(recent["text"].astype(str)))[:ACL18_TWEETS] if len(recent) else []
            ids = [str(i) for i in recent["id"]][:ACL18_TWEETS] if len(recent) and "id" in recent else []
            result[day] = (movement_text(text, texts), ids)
        return result

    # ---------------------------------------------------------------- training
    def fit(self, view: MarketView) -> None:
        cutoff = pd.Timestamp(self.build.meta["cutoff"])
        first_test = view.date + pd.Timedelta(days=1)
        if cutoff > first_test:
            raise TradesimError(
                f"--team {self.build.directory}: its corpora run to {cutoff.date()}, after the test period starts "
                f"(--train-end {first_test.date()} or later); build one with --cutoff {first_test.date()} or earlier, or move --train-end"
            )
        rows = []
        for ticker in self.tickers:
            bars = view.ticker_bars(ticker)
            forward = fill_to_fill_returns(bars, self.runtime.fill, 1) * 100
            known = forward[(forward >= ACL18_RISE) | (forward <= ACL18_FALL)].dropna()
            for day, (text, _) in self.inputs(view, ticker, known.index).items():
                rows.append((day, ticker, text, int(known[day] >= ACL18_RISE)))
        if len(rows) < 20:
            raise TradesimError(f"finteam: only {len(rows)} training examples before {first_test.date()}; give more training data (--start, --train-end)")
        frame = pd.DataFrame(rows, columns=["date", "ticker", "text", "label"]).sort_values(["date", "ticker"]).reset_index(drop=True)
        if len(frame) > self.settings.max_examples:
            frame = stratified_sample(frame, self.settings.max_examples, self.seed)
        dates = frame["date"].sort_values().unique()
        split = dates[int(len(dates) * 0.9)]  # the last tenth of the training dates: validation
        train, valid = frame[frame["date"] < split], frame[frame["date"] >= split]
        features = self.features(frame["text"].tolist())
        hidden = self.hidden(frame["text"].tolist())
        settings = TeamSettings(
            steps=self.settings.team_steps, balance=self.settings.balance, sharpness=self.settings.sharpness, seed=self.seed,
            eval_every=max(50, self.settings.team_steps // 10), unfreeze_top=self.settings.unfreeze_top,
        )
        groups = team_groups(self.build.experts)
        data = [
            TaskData(
                "acl18", features[train.index], train["label"].to_numpy(), features[valid.index], valid["label"].to_numpy(),
                [h.take(train.index) for h in hidden] if hidden else None, [h.take(valid.index) for h in hidden] if hidden else None,
            )
        ]
        tops, config = expert_tops(self.build.expert_dirs(), settings.unfreeze_top)
        self.team, record = train_team(groups, data, {"acl18": 2}, settings, tops=tops, config=config)
        self.fitted = {
            "examples": len(frame),
            "train": len(train),
            "valid": len(valid),
            "rise_share": round(float(frame["label"].mean()), 4),
            "training_period": [str(frame["date"].min().date()), str(frame["date"].max().date())],
            "corpus_cutoff": str(cutoff.date()),
            "build": str(self.build.directory),
            "best_valid_accuracy": record["best_mean_valid_accuracy"],
        }
        self.note(f"finteam: experts' corpora end {cutoff.date()}; team trained on {len(train)} examples, validated on {len(valid)}")

    # ---------------------------------------------------------------- deciding
    def decide(self, view: MarketView) -> Decision:
        return self.decide_batch([view])[0]

    def decide_batch(self, views: list[MarketView]) -> list[Decision]:
        entries = []
        for view in views:
            for ticker in self.tickers:
                found = self.inputs(view, ticker, [view.date]).get(view.date)
                if found is not None:
                    entries.append((view.date, ticker, *found))
        probabilities = {}
        if entries:
            texts = [e[2] for e in entries]
            probs, choices, weights = predict(self.team, self.features(texts), "acl18", self.hidden(texts))
            experts = self.build.experts
            groups = self.team.groups
            for (day, ticker, _, ids), p, choice, weight in zip(entries, probs, choices, weights):
                gate = {experts[g[0]].split("/")[0]: {"expert": experts[g[c]], "weight": round(float(w), 4)} for g, c, w in zip(groups, choice, weight)}
                probabilities[(day, ticker)] = (float(p[1]), gate, ids)
                self.tables["gate"].append({"date": str(day.date()), "ticker": ticker, "rise_probability": float(p[1]), **{f"{r}_expert": v["expert"] for r, v in gate.items()}, **{f"{r}_weight": v["weight"] for r, v in gate.items()}})
        return [self.decision(view.date, probabilities) for view in views]

    def decision(self, day: pd.Timestamp, found: dict) -> Decision:
        scored = {t: found[(day, t)] for t in self.tickers if (day, t) in found}
        rise = {t: v[0] >= 0.5 for t, v in scored.items()}
        if len(self.tickers) == 1:
            weights = {t: 1.0 if rise[t] else 0.0 for t in scored}
        else:
            scores = pd.Series({t: v[0] for t, v in scored.items()}, dtype=float)
            weights = top_k(scores, self.settings.top_k).to_dict() if len(scores) else {}
        log = {}
        for ticker in self.tickers:
            if ticker not in scored:
                log[ticker] = {"rise_probability": None, "predicted": None, "reason": "fewer than 5 sessions of bars"}
                continue
            p, gate, ids = scored[ticker]
            log[ticker] = {"rise_probability": round(p, 6), "predicted": "rise" if rise[ticker] else "fall", "gate": gate, "news_ids": ids}
        return Decision(weights, log, scores={t: v[0] for t, v in scored.items()}, predictions=rise)

    def side_tables(self) -> dict[str, pd.DataFrame]:
        return {name: pd.DataFrame(rows) for name, rows in self.tables.items() if rows}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fitted": getattr(self, "fitted", None), "experts": self.build.experts, "corpus_cutoff": self.build.meta["cutoff"]}
