"""Training binary classifiers on feature windows: standardised inputs, seeded, early stopping.

The last part of the training rows (chronologically) is held out for early stopping; the weights
with the lowest held-out loss are kept. Runs on CUDA when present.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class TrainingReport:
    rows: int
    epochs: int
    best_epoch: int
    validation_loss: float


class Classifier:
    """A network plus the input scaling learned with it; predicts the probability of a rise."""

    def __init__(self, network: nn.Module, mean: np.ndarray, scale: np.ndarray, device: torch.device, report: TrainingReport):
        self.network = network
        self.mean = mean
        self.scale = scale
        self.device = device
        self.report = report

    def inputs(self, x: np.ndarray) -> torch.Tensor:
        """Rows scaled as in training, on the network's device."""
        return torch.as_tensor((np.asarray(x, dtype=np.float32) - self.mean) / self.scale, device=self.device)

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.network.eval()
        with torch.no_grad():
            return self.network(self.inputs(x)).sigmoid().cpu().numpy().astype(float)


def train_classifier(
    build: Callable[[], nn.Module],
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    epochs: int = 200,
    patience: int = 20,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    validation_fraction: float = 0.2,
    device: torch.device | None = None,
) -> Classifier:
    """Build a network (seeded: same seed, same initial weights) and fit it to rows `x`
    (chronological) and labels `y` in {0, 1}."""
    device = device or default_device()
    torch.manual_seed(seed)
    network = build()
    generator = torch.Generator().manual_seed(seed)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    held_out = max(1, int(round(len(x) * validation_fraction))) if len(x) >= 10 else 0
    train_x = x[: len(x) - held_out]  # scaling is learned on the rows the network fits, not the held-out ones
    mean = train_x.mean(axis=0)
    scale = train_x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    scaled = torch.as_tensor((x - mean) / scale, device=device)
    labels = torch.as_tensor(y, device=device)
    fit_x, fit_y = scaled[: len(x) - held_out], labels[: len(y) - held_out]
    check_x, check_y = (scaled[len(x) - held_out :], labels[len(y) - held_out :]) if held_out else (fit_x, fit_y)

    network.to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    loss_function = nn.BCEWithLogitsLoss()
    best_loss, best_epoch, best_state, epoch = float("inf"), 0, copy.deepcopy(network.state_dict()), 0
    for epoch in range(1, epochs + 1):
        network.train()
        order = torch.randperm(len(fit_x), generator=generator).to(device)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss_function(network(fit_x[batch]), fit_y[batch]).backward()
            optimizer.step()
        network.eval()
        with torch.no_grad():
            loss = loss_function(network(check_x), check_y).item()
        if loss < best_loss - 1e-6:
            best_loss, best_epoch, best_state = loss, epoch, copy.deepcopy(network.state_dict())
        elif epoch - best_epoch >= patience:
            break
    network.load_state_dict(best_state)
    return Classifier(network, mean, scale, device, TrainingReport(rows=len(x), epochs=epoch, best_epoch=best_epoch, validation_loss=best_loss))
