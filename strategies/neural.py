"""LLMoE's baselines: learned All-in All-out over a 5-session window of 11 price features.

`mlp` (one feed-forward network), `lstm` and `moe-gate` (two experts behind a learned softmax
gate); the shared machinery (labels, training, trading) is tradesim.learned.LearnedAllInAllOut.
"""

from __future__ import annotations

from tradesim.learned import LearnedAllInAllOut
from tradesim.market.data import MarketView
from tradesim.strategy import Decision


class MLPStrategy(LearnedAllInAllOut):
    name = "mlp"
    summary = "One feed-forward network on all training days (LLMoE baseline), All-in All-out."
    fitted_attributes = (*LearnedAllInAllOut.fitted_attributes, "classifier")

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

        return LSTMClassifier(len(self.input_columns), steps=5, hidden=max(2, self.settings.hidden // 2))


class MoEGateStrategy(MLPStrategy):
    name = "moe-gate"
    summary = "Two experts with a learned softmax gate on price features only (LLMoE's neural-router MoE)."

    def network(self):
        from tradesim.models.networks import GatedMixture

        return GatedMixture(len(self.input_columns), self.settings.hidden)

    def decide(self, view: MarketView) -> Decision:
        import torch

        window = self.current_window(view)
        if window is None:
            return self.trade(None, {})
        probability = float(self.classifier.predict(window)[0])
        with torch.no_grad():
            gate = self.classifier.network.gate_weights(self.classifier.inputs(window))[0].cpu().numpy()
        return self.trade(probability, {"gate": [round(float(g), 6) for g in gate]})
