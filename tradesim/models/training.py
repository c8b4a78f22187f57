"""Training binary classifiers on feature windows: standardised inputs, seeded, early stopping.

The last part of the training rows (chronologically) is held out for early stopping; the weights
with the lowest held-out loss are kept. Runs on CUDA when present.

Fitted classifiers are stored under `$TRADESIM_HOME/models/<content hash>/`, the hash taken over
everything that determines the weights (the training rows and labels, the architecture and its
size, the training settings, the seed, the device kind, this module's version and torch's), and
loaded instead of retrained when the same hash comes again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from tradesim.config import tradesim_home


TRAINING_CODE_VERSION = 1  # bump when training changes what weights the same inputs give


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class TrainingReport:
    rows: int
    epochs: int
    best_epoch: int
    validation_loss: float


class Classifier:
    """A network plus the input scaling learned with it; predicts the probability of a rise (two
    classes: one logit) or of each class (more: one logit per class, softmax)."""

    def __init__(self, network: nn.Module, mean: np.ndarray, scale: np.ndarray, device: torch.device, report: TrainingReport, classes: int = 2):
        self.network = network
        self.mean = mean
        self.scale = scale
        self.device = device
        self.report = report
        self.classes = classes
        self.record: dict[str, Any] = {}  # its id and store, when it came through fit_or_load

    def inputs(self, x: np.ndarray) -> torch.Tensor:
        """Rows scaled as in training, on the network's device."""
        return torch.as_tensor((np.asarray(x, dtype=np.float32) - self.mean) / self.scale, device=self.device)

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.network.eval()
        with torch.no_grad():
            logits = self.network(self.inputs(x))
            return (logits.sigmoid() if self.classes == 2 else logits.softmax(-1)).cpu().numpy().astype(float)


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
    classes: int = 2,
) -> Classifier:
    """Build a network (seeded: same seed, same initial weights) and fit it to rows `x`
    (chronological) and labels `y` in {0, 1} (binary cross-entropy on one logit), or in
    {0, ..., classes - 1} when `classes` > 2 (cross-entropy on one logit per class)."""
    device = device or default_device()
    torch.manual_seed(seed)
    network = build()
    generator = torch.Generator().manual_seed(seed)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32 if classes == 2 else np.int64)
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
    loss_function = nn.BCEWithLogitsLoss() if classes == 2 else nn.CrossEntropyLoss()
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
    report = TrainingReport(rows=len(x), epochs=epoch, best_epoch=best_epoch, validation_loss=best_loss)
    return Classifier(network, mean, scale, device, report, classes)


def fit_or_load(
    build: Callable[[], nn.Module],
    x: np.ndarray,
    y: np.ndarray,
    *,
    architecture: str,
    seed: int,
    epochs: int,
    patience: int,
    device: torch.device | None = None,
    about: dict[str, Any] | None = None,
    home: Path | None = None,
    batch_size: int = 64,
    classes: int = 2,
) -> Classifier:
    """`train_classifier`, or the classifier stored before under the same content hash.

    `architecture` names what `build` makes; `about` (ticker, period, parameters...) is stored
    beside the weights and enters the hash too, so that equal hashes mean equal models."""
    device = device or default_device()
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.float32)
    settings = {
        "architecture": architecture,
        "seed": seed,
        "epochs": epochs,
        "patience": patience,
        "device": device.type,
        "code_version": TRAINING_CODE_VERSION,
        "torch": torch.__version__,
        "about": about or {},
    }
    if batch_size != 64:
        settings["batch_size"] = batch_size
    if classes != 2:
        settings["classes"] = classes
    y = y if classes == 2 else np.ascontiguousarray(y, dtype=np.int64)
    model_id = content_id(settings, x, y)
    store = model_store(model_id, home)
    if (store / "model.json").exists():
        classifier = _load(store, build, device)
        classifier.record = {"id": model_id, "path": str(store), "loaded": True, "device": str(device)}
        return classifier
    classifier = train_classifier(build, x, y, seed=seed, epochs=epochs, patience=patience, device=device, batch_size=batch_size, classes=classes)
    manifest = {**settings, "id": model_id, "rows": int(len(x)), "training": asdict(classifier.report)}

    def write(staging: Path) -> None:
        state = {name: tensor.detach().cpu() for name, tensor in classifier.network.state_dict().items()}
        torch.save(state, staging / "weights.pt")
        np.savez(staging / "scaling.npz", mean=classifier.mean, scale=classifier.scale)
        (staging / "model.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")

    save_atomically(store, write)
    classifier.record = {"id": model_id, "path": str(store), "loaded": False, "device": str(device)}
    return classifier


def content_id(settings: dict[str, Any], *arrays: np.ndarray) -> str:
    """The content hash of a fitted model: its settings (JSON) and every training array (shape and bytes)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(array.dtype.str.encode())
        digest.update(np.asarray(array.shape, dtype=np.int64).tobytes())
        digest.update(array.tobytes())
    return digest.hexdigest()


def model_store(model_id: str, home: Path | None = None) -> Path:
    """Where a fitted model with this content hash lives: `$TRADESIM_HOME/models/<id>/`."""
    return (home or tradesim_home()) / "models" / model_id


def save_atomically(store: Path, write: Callable[[Path], None], marker: str = "model.json") -> None:
    """`write` the model's files into a temporary sibling of `store`, then rename it: all or nothing."""
    store.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{store.name}.", dir=store.parent))
    try:
        write(staging)
        os.replace(staging, store)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (store / marker).exists():  # another process may have stored the same model first
            raise


def _load(store: Path, build: Callable[[], nn.Module], device: torch.device) -> Classifier:
    manifest = json.loads((store / "model.json").read_text())
    network = build()
    network.load_state_dict(torch.load(store / "weights.pt", map_location="cpu", weights_only=True))
    network.to(device).eval()
    scaling = np.load(store / "scaling.npz")
    return Classifier(network, scaling["mean"], scaling["scale"], device, TrainingReport(**manifest["training"]), manifest.get("classes", 2))
