"""The machinery learned All-in All-out strategies share: feature windows, labels that follow the
fill convention, training (or loading) the networks, and the All-in All-out decision.

`mlp`, `lstm` and `moe-gate` (LLMoE's baselines) and `llmoe` build on `LearnedAllInAllOut`.
Each trains on the sessions before `--train-end` only; a session's label is whether the fill that
follows its decision would gain up to the next fill, so the last training sessions (whose fills
lie in the test period) have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.market.data import MarketView
from tradesim.market.features import HISTORY_NEEDED, OHLC_FEATURES, fill_to_fill_returns, llmoe_features, windows
from tradesim.policies import all_in_all_out
from tradesim.strategy import Decision, Settings, Strategy, setting

@dataclass(frozen=True)
class LearnedSettings(Settings):
    """What every learned All-in All-out strategy sets: the threshold, shorting, training."""

    threshold: float = setting(0.5, "All-in when the predicted probability of a rise is at least this")
    short: bool = setting(False, "go short (-1) instead of flat when no rise is predicted")
    train_sessions: int = setting(1260, "train on at most this many sessions before --train-end (0: all)", minimum=0)
    hidden: int = setting(64, "hidden units of each network", minimum=2)
    epochs: int = setting(200, "maximum training epochs (early stopping on the last 20% of training days)", minimum=1)
    patience: int = setting(20, "epochs without improvement before training stops", minimum=1)


class LearnedAllInAllOut(Strategy):
    """Shared machinery: feature windows, training rows, device, All-in All-out decisions."""

    Settings = LearnedSettings
    fitted_attributes = ("fitted", "input_columns", "training_period")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fitted: list[dict[str, Any]] = []  # id (content hash), where stored, loaded or trained

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
        if not view.has_ohlc:
            self.note(f"the data has closes only: the features {', '.join(OHLC_FEATURES)} are 0")
        rows = windows(llmoe_features(bars))
        return rows if sessions is None else rows.tail(sessions)

    def training_rows(self, view: MarketView) -> tuple[pd.DataFrame, np.ndarray]:
        """Windows and labels of the training sessions: 1 where the fill-to-fill return that the
        session's decision could earn (known inside the view) is positive."""
        limit = self.settings.train_sessions or None
        rows = self.feature_windows(view, None if limit is None else limit + 2)
        returns = fill_to_fill_returns(view.ticker_bars(self.ticker), self.runtime.fill).reindex(rows.index)
        known = returns.notna().to_numpy()
        rows, labels = rows[known], (returns[known].to_numpy() > 0).astype(float)
        if len(rows) < 50:
            raise TradesimError(
                f"--train-end: strategy {self.name} has only {len(rows)} training sessions with complete features "
                f"before {view.date.date()} (needs at least 50 plus {HISTORY_NEEDED} of history)"
            )
        self.training_period = (str(rows.index[0].date()), str(rows.index[-1].date()))
        return rows, labels

    def network(self):
        """The network to train, built after seeding (subclasses choose the architecture)."""
        from tradesim.models.networks import FeedForward

        return FeedForward(len(self.input_columns), self.settings.hidden)

    def train(self, rows: pd.DataFrame, labels: np.ndarray, seed_offset: int = 0, role: str = "model"):
        """Fit a classifier, or load the one fitted before on exactly these rows and settings."""
        from tradesim.models.training import fit_or_load

        classifier = fit_or_load(
            self.network,
            rows.to_numpy(),
            labels,
            architecture=f"{type(self).__module__}.{type(self).__name__}.network",
            seed=self.seed + seed_offset,
            epochs=self.settings.epochs,
            patience=self.settings.patience,
            device=self.device,
            about={
                "strategy": self.name,
                "role": role,
                "ticker": self.ticker,
                "training_period": getattr(self, "training_period", None),
                "fill": self.runtime.fill,
                "hidden": self.settings.hidden,
                "inputs": list(map(str, rows.columns)),
            },
        )
        self.fitted.append(classifier.record)
        return classifier

    def current_window(self, view: MarketView) -> np.ndarray | None:
        rows = self.feature_windows(view, 1)
        if rows.empty or rows.index[-1] != view.date:
            return None
        return rows.to_numpy()

    def trade(self, probability: float | None, log: dict[str, Any], probability_key: str = "probability") -> Decision:
        """All-in All-out on the predicted probability of a rise (flat without a prediction)."""
        if probability is None:
            return Decision({self.ticker: 0.0}, {self.ticker: {**log, probability_key: None, "predicted": None}})
        rise = probability >= self.settings.threshold
        weight = all_in_all_out(rise, short=self.settings.short)
        return Decision(
            {self.ticker: weight},
            {self.ticker: {**log, probability_key: probability, "predicted": "rise" if rise else "fall"}},
            predictions={self.ticker: bool(rise)},
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fitted_models": self.fitted}
