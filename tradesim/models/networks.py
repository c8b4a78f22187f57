"""The networks behind the learned experts: feed-forward, LSTM, and a gated mixture of two experts."""

from __future__ import annotations

import torch
from torch import nn


class FeedForward(nn.Module):
    """Flattened feature window -> logit of a rise at the next session (or `outputs` class logits)."""

    def __init__(self, inputs: int, hidden: int = 64, dropout: float = 0.1, outputs: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(inputs, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)


class LSTMClassifier(nn.Module):
    """The same window read as a sequence of `steps` sessions of `features` each."""

    def __init__(self, inputs: int, steps: int = 5, hidden: int = 32):
        super().__init__()
        self.steps = steps
        self.lstm = nn.LSTM(inputs // steps, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(x.view(x.shape[0], self.steps, -1))
        return self.head(output[:, -1]).squeeze(-1)


class GatedMixture(nn.Module):
    """Two feed-forward experts and a softmax gate on the same features, trained jointly.

    Returns the logit of the gate-weighted rise probability, so it trains with the same loss.
    """

    def __init__(self, inputs: int, hidden: int = 64, experts: int = 2):
        super().__init__()
        self.experts = nn.ModuleList(FeedForward(inputs, hidden) for _ in range(experts))
        self.gate = nn.Sequential(nn.Linear(inputs, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, experts))

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x).softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([expert(x).sigmoid() for expert in self.experts], dim=-1)
        mixed = (self.gate_weights(x) * probabilities).sum(-1).clamp(1e-6, 1 - 1e-6)
        return torch.log(mixed) - torch.log1p(-mixed)
