"""Learned All-in All-out strategies over a 5-session window of 11 price features (55 inputs).

`mlp`, `lstm` and `moe-gate` are the LLMoE paper's baselines; `llmoe` (strategies/llmoe.py) builds
on the same base. Each trains on the sessions before `--train-end` only: labels are the next
session's rise, so the last training session (whose next session is in the test period) has none.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.market.data import MarketView
from tradesim.market.features import HISTORY_NEEDED, OHLC_FEATURES, next_session_rise, price_features, windows
from tradesim.policies import all_in_all_out
from tradesim.strategy import Decision, Param, Strategy

LEARNING_PARAMS = (
    Param("threshold", float, 0.5, "All-in when the predicted probability of a rise is at least this"),
    Param("short", bool, False, "go short (-1) instead of flat when no rise is predicted"),
    Param("train_sessions", int, 1260, "train on at most this many sessions before --train-end (0: all)", minimum=0),
    Param("hidden", int, 64, "hidden units of each network", minimum=2),
    Param("epochs", int, 200, "maximum training epochs (early stopping on the last 20% of training days)", minimum=1),
    Param("patience", int, 20, "epochs without improvement before training stops", minimum=1),
)


class LearnedAllInAllOut(Strategy):
    """Shared machinery: feature windows, training rows, device, All-in All-out decisions."""

    params = LEARNING_PARAMS

    @property
    def needs_training(self) -> bool:
        return True

    @property
    def ticker(self) -> str:
        return self.tickers[0]

    def validate(self) -> None:
        if len(self.tickers) != 1:
            raise TradesimError(f"--tickers: strategy {self.name} trades one ticker All-in All-out; give --ticker")

    @property
    def device(self):
        import torch

        from tradesim.models.training import default_device

        return default_device() if self.runtime.device == "auto" else torch.device(self.runtime.device)

    def feature_windows(self, view: MarketView, sessions: int | None = None) -> pd.DataFrame:
        """Flattened 5-session feature windows, one row per session of the view (the last `sessions`)."""
        bars = view.ticker_bars(self.ticker, None if sessions is None else sessions + HISTORY_NEEDED)
        features = price_features(bars)
        if not view.has_ohlc:
            self.note(f"the data has closes only: the features {', '.join(OHLC_FEATURES)} are 0")
        rows = windows(features)
        return rows if sessions is None else rows.tail(sessions)

    def training_rows(self, view: MarketView) -> tuple[pd.DataFrame, np.ndarray]:
        """Windows and next-session labels of the training sessions (labels known inside the view)."""
        limit = self.settings["train_sessions"] or None
        rows = self.feature_windows(view, None if limit is None else limit + 1)
        labels = next_session_rise(view.ticker_bars(self.ticker)["close"]).reindex(rows.index)
        known = labels.notna().to_numpy()
        rows, labels = rows[known], labels[known].to_numpy()
        if len(rows) < 50:
            raise TradesimError(
                f"--train-end: strategy {self.name} has only {len(rows)} training sessions with complete features "
                f"before {view.date.date()} (needs at least 50 plus {HISTORY_NEEDED} of history)"
            )
        return rows, labels

    def network(self):
        """The network to train, built after seeding (subclasses choose the architecture)."""
        from tradesim.models.networks import FeedForward

        return FeedForward(len(self.input_columns), self.settings["hidden"])

    def train(self, rows: pd.DataFrame, labels: np.ndarray, seed_offset: int = 0):
        from tradesim.models.training import train_classifier

        return train_classifier(
            self.network,
            rows.to_numpy(),
            labels,
            seed=self.seed + seed_offset,
            epochs=self.settings["epochs"],
            patience=self.settings["patience"],
            device=self.device,
        )

    def current_window(self, view: MarketView) -> np.ndarray | None:
        rows = self.feature_windows(view, 1)
        if rows.empty or rows.index[-1] != view.date:
            return None
        return rows.to_numpy()

    def trade(self, probability: float | None, log: dict[str, Any], probability_key: str = "probability") -> Decision:
        """All-in All-out on the predicted probability of a rise (flat without a prediction)."""
        if probability is None:
            return Decision({self.ticker: 0.0}, {self.ticker: {**log, probability_key: None, "predicted": None}})
        rise = probability >= self.settings["threshold"]
        weight = all_in_all_out(rise, short=self.settings["short"])
        return Decision({self.ticker: weight}, {self.ticker: {**log, probability_key: probability, "predicted": "rise" if rise else "fall"}})


class MLPStrategy(LearnedAllInAllOut):
    name = "mlp"
    summary = "One feed-forward network on all training days (LLMoE baseline), All-in All-out."

    def fit(self, view: MarketView) -> None:
        rows, labels = self.training_rows(view)
        self.input_columns = rows.columns
        self.classifier = self.train(rows, labels)

    def decide(self, view: MarketView) -> Decision:
        window = self.current_window(view)
        probability = None if window is None else float(self.classifier.predict(window)[0])
        return self.trade(probability, {})


class LSTMStrategy(MLPStrategy):
    name = "lstm"
    summary = "An LSTM over the same 5-session window (LLMoE baseline), All-in All-out."

    def network(self):
        from tradesim.models.networks import LSTMClassifier

        return LSTMClassifier(len(self.input_columns), steps=5, hidden=max(2, self.settings["hidden"] // 2))


class MoEGateStrategy(MLPStrategy):
    name = "moe-gate"
    summary = "Two experts with a learned softmax gate on price features only (LLMoE's neural-router MoE)."

    def network(self):
        from tradesim.models.networks import GatedMixture

        return GatedMixture(len(self.input_columns), self.settings["hidden"])

    def decide(self, view: MarketView) -> Decision:
        import torch

        window = self.current_window(view)
        if window is None:
            return self.trade(None, {})
        probability = float(self.classifier.predict(window)[0])
        with torch.no_grad():
            gate = self.classifier.network.gate_weights(self.classifier.inputs(window))[0].cpu().numpy()
        return self.trade(probability, {"gate": [round(float(g), 6) for g in gate]})
