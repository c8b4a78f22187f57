"""Time-LLM reprogramming (Jin et al., 2024): a frozen causal language model reads a price series.

Each sample's channels (sessions x channels, one window) are normalised per channel (instance
normalisation, as Time-LLM's RevIN), cut into patches (`patch` sessions, every `stride`, the
series padded at the end by `stride` as Time-LLM does), and each patch is embedded linearly. The
patches attend with multi-head cross-attention to `prototypes` text prototypes (a learned linear
map of the frozen model's vocabulary embeddings), are projected to the model's width, and follow
a text prefix (the window's statistics) embedded by the model's own embedding table. The frozen
model (its first `layers` layers: Time-LLM's `llm_layers`) reads the whole; the first `d_ff`
features of its last hidden states at the patch positions, flattened, give a logit through a
linear head. Only the patch embedding, the prototype map, the reprogramming attention, its output
projection and the head train; every weight of the language model stays as loaded.

Differences from Time-LLM, which forecasts values: the head classifies (the logit of a rise over
the horizon), the channels go through the model as one sequence of patches rather than one
sequence per channel, and patches are embedded by a linear map (Time-LLM: a 1-d convolution).

The trained parts are stored under `$TRADESIM_HOME/models/<content hash>/` (the hash: the language
model's fingerprint, every window, prefix and label, the settings and the code version), and
loaded when the same inputs come again.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from tradesim.errors import TradesimError
from tradesim.models.training import content_id, model_store, save_atomically

REPROGRAMMING_CODE_VERSION = 1


@dataclass(frozen=True)
class ReprogrammingSettings:
    patch: int = 16  # Time-LLM's patch length
    stride: int = 8  # and stride
    d_model: int = 32  # patch embedding width
    heads: int = 8
    d_keys: int = 16  # per head
    prototypes: int = 1000  # text prototypes mapped from the vocabulary
    d_ff: int = 32  # hidden-state features per patch the head reads
    layers: int = 6  # language-model layers used (0: all)
    dropout: float = 0.1
    epochs: int = 2
    learning_rate: float = 1e-3
    batch_size: int = 16
    patience: int = 2
    seed: int = 0


def patch_count(window: int, settings: ReprogrammingSettings) -> int:
    return (window + settings.stride - settings.patch) // settings.stride + 1


class Reprogrammer(nn.Module):
    """The trainable part: patch embedding, prototype map, reprogramming attention, output head."""

    def __init__(self, channels: int, window: int, vocabulary: int, width: int, settings: ReprogrammingSettings):
        super().__init__()
        self.settings = settings
        if window < settings.patch:
            raise ValueError(f"a window of {window} sessions is shorter than one patch ({settings.patch})")
        self.patches = channels * patch_count(window, settings)
        inner = settings.heads * settings.d_keys
        self.patch_embedding = nn.Linear(settings.patch, settings.d_model)
        self.mapping = nn.Linear(vocabulary, settings.prototypes)
        self.query = nn.Linear(settings.d_model, inner)
        self.key = nn.Linear(width, inner)
        self.value = nn.Linear(width, inner)
        self.out = nn.Linear(inner, width)
        self.dropout = nn.Dropout(settings.dropout)
        self.head = nn.Linear(settings.d_ff * self.patches, 1)

    def prototypes(self, vocabulary_embeddings: torch.Tensor) -> torch.Tensor:
        """prototypes x width: a learned linear mix of the (frozen) vocabulary embeddings."""
        return self.mapping(vocabulary_embeddings.T).T

    def forward(self, series: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """series: batch x channels x window (normalised) -> batch x patches x width."""
        s = self.settings
        padded = torch.cat([series, series[..., -1:].expand(*series.shape[:-1], s.stride)], dim=-1)
        patches = padded.unfold(-1, s.patch, s.stride)  # batch x channels x n x patch
        embedded = self.dropout(self.patch_embedding(patches)).flatten(1, 2)  # batch x patches x d_model
        batch, length, _ = embedded.shape
        query = self.query(embedded).view(batch, length, s.heads, s.d_keys)
        key = self.key(prototypes).view(-1, s.heads, s.d_keys)
        value = self.value(prototypes).view(-1, s.heads, s.d_keys)
        attention = self.dropout(torch.softmax(torch.einsum("blhe,she->bhls", query, key) / math.sqrt(s.d_keys), dim=-1))
        mixed = torch.einsum("bhls,she->blhe", attention, value).reshape(batch, length, -1)
        return self.out(mixed)


def trunk(model: nn.Module, layers: int) -> nn.Module:
    """The model's base (embeddings to last hidden state, no language-model head), keeping only its
    first `layers` transformer blocks when the architecture has one list of them (0: all)."""
    base = getattr(model, model.base_model_prefix, model)
    total = getattr(model.config, "num_hidden_layers", None)
    if not layers or total is None or layers >= total:
        return base
    for name, child in base.named_children():
        if isinstance(child, nn.ModuleList) and len(child) == total:
            shortened = copy.copy(base)
            shortened._modules = dict(base._modules)
            shortened._modules[name] = nn.ModuleList(list(child)[:layers])
            return shortened
    return base


def normalise(windows: np.ndarray) -> np.ndarray:
    """Per sample and channel: (x - mean) / std over the window (std 0: 1)."""
    mean = windows.mean(axis=-1, keepdims=True)
    std = windows.std(axis=-1, keepdims=True)
    return ((windows - mean) / np.where(std > 1e-12, std, 1.0)).astype(np.float32)


class ReprogrammedModel:
    """A frozen language model (an `HFBackend`) with a trained `Reprogrammer`: P(rise) per window."""

    def __init__(self, backend, channels: int, window: int, settings: ReprogrammingSettings):
        self.backend = backend
        self.settings = settings
        model = backend.model
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self.embedding = model.get_input_embeddings()
        self.trunk = trunk(model, settings.layers)
        vocabulary, width = self.embedding.weight.shape
        torch.manual_seed(settings.seed)
        self.layer = Reprogrammer(channels, window, vocabulary, width, settings).to(backend.device)
        self.record: dict[str, Any] = {}
        self._prototypes: torch.Tensor | None = None

    def _prefixes(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokenizer = self.backend.tokenizer
        ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        width = max(len(i) for i in ids)
        pad = tokenizer.pad_token_id
        device = self.backend.device
        tokens = torch.tensor([[pad] * (width - len(i)) + i for i in ids], device=device)
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=device)
        with torch.no_grad():
            embedded = self.embedding(tokens)
        return embedded, mask

    def logits(self, series: torch.Tensor, texts: Sequence[str], prototypes: torch.Tensor) -> torch.Tensor:
        prefix, prefix_mask = self._prefixes(texts)
        patches = self.layer(series, prototypes).to(prefix.dtype)
        embeds = torch.cat([prefix, patches], dim=1)
        mask = torch.cat([prefix_mask, torch.ones(patches.shape[:2], dtype=prefix_mask.dtype, device=prefix_mask.device)], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden = self.trunk(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False).last_hidden_state
        read = hidden[:, -patches.shape[1] :, : self.settings.d_ff].float().flatten(1)
        return self.layer.head(read).squeeze(-1)

    def _vocabulary(self) -> torch.Tensor:
        return self.embedding.weight.detach().float()

    def fit(self, windows: np.ndarray, texts: Sequence[str], labels: np.ndarray) -> dict[str, Any]:
        """Train on windows (chronological; the last fifth is held out for early stopping)."""
        s = self.settings
        device = self.backend.device
        series = torch.as_tensor(normalise(windows), device=device)
        targets = torch.as_tensor(np.asarray(labels, dtype=np.float32), device=device)
        held = max(1, len(series) // 5) if len(series) >= 10 else 0
        fit_rows = np.arange(len(series) - held)
        check_rows = np.arange(len(series) - held, len(series)) if held else fit_rows
        optimizer = torch.optim.AdamW([p for p in self.layer.parameters() if p.requires_grad], lr=s.learning_rate)
        loss_function = nn.BCEWithLogitsLoss()
        generator = np.random.default_rng(s.seed)
        vocabulary = self._vocabulary()
        best = (float("inf"), 0, copy.deepcopy(self.layer.state_dict()))
        losses = []
        for epoch in range(1, s.epochs + 1):
            self.layer.train()
            order = generator.permutation(fit_rows)
            for start in range(0, len(order), s.batch_size):
                batch = order[start : start + s.batch_size]
                optimizer.zero_grad()
                loss = loss_function(self.logits(series[batch], [texts[i] for i in batch], self.layer.prototypes(vocabulary)), targets[batch])
                loss.backward()
                optimizer.step()
            loss = self._loss(series, texts, targets, check_rows, loss_function)
            losses.append(round(loss, 6))
            if loss < best[0] - 1e-6:
                best = (loss, epoch, copy.deepcopy(self.layer.state_dict()))
            elif epoch - best[1] >= s.patience:
                break
        self.layer.load_state_dict(best[2])
        self.layer.eval()
        self._prototypes = None
        return {"epoch_losses": losses, "best_epoch": best[1], "validation_loss": round(best[0], 6)}

    def _loss(self, series, texts, targets, rows, loss_function) -> float:
        self.layer.eval()
        with torch.no_grad():
            prototypes = self.layer.prototypes(self._vocabulary())
            total = 0.0
            for start in range(0, len(rows), self.settings.batch_size):
                batch = rows[start : start + self.settings.batch_size]
                total += loss_function(self.logits(series[batch], [texts[i] for i in batch], prototypes), targets[batch]).item() * len(batch)
        return total / max(1, len(rows))

    def predict(self, windows: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """P(rise) for each window (sessions normalised as in training)."""
        if len(windows) == 0:
            return np.empty(0)
        self.layer.eval()
        series = torch.as_tensor(normalise(windows), device=self.backend.device)
        out = []
        with torch.no_grad():
            if self._prototypes is None:  # the trained map of the vocabulary, once
                self._prototypes = self.layer.prototypes(self._vocabulary())
            prototypes = self._prototypes
            for start in range(0, len(series), 4 * self.settings.batch_size):
                stop = start + 4 * self.settings.batch_size
                out.append(self.logits(series[start:stop], texts[start:stop], prototypes).sigmoid().float().cpu().numpy())
        return np.concatenate(out).astype(float)


def fit_or_load_reprogrammed(
    language_model, windows: np.ndarray, texts: Sequence[str], labels: np.ndarray, settings: ReprogrammingSettings, about: dict[str, Any]
) -> ReprogrammedModel:
    """A `ReprogrammedModel` over `language_model` (a local `LanguageModel`: smollm2 or hf:),
    trained on these windows, prefixes and labels, or the one stored before under the same hash."""
    from tradesim.llm.hf import HFBackend

    backend = language_model.backend
    if not isinstance(backend, HFBackend):
        raise TradesimError(f"{language_model.spec}: reprogramming needs a local transformers model (smollm2 or hf:...)")
    windows = np.ascontiguousarray(windows, dtype=np.float64)
    labels = np.ascontiguousarray(labels, dtype=np.float32)
    head = {
        "kind": "time-llm reprogramming",
        "base": backend.fingerprint,
        "settings": asdict(settings),
        "code_version": REPROGRAMMING_CODE_VERSION,
        "torch": torch.__version__,
        "device": backend.device.type,
        "dtype": str(backend.torch_dtype),
        "about": about,
        "prefixes": texts,
    }
    model_id = content_id(head, windows, labels)
    if (model_store(model_id) / "model.json").is_file():
        return load_reprogrammed(language_model, model_id, windows.shape[1], windows.shape[2], settings)
    store = model_store(model_id)
    model = ReprogrammedModel(backend, windows.shape[1], windows.shape[2], settings)
    started = time.perf_counter()
    training = {**model.fit(windows, texts, labels), "rows": int(len(windows)), "seconds": round(time.perf_counter() - started, 2)}
    trainable = sum(p.numel() for p in model.layer.parameters())
    frozen = sum(p.numel() for p in backend.model.parameters())
    manifest = {**{k: v for k, v in head.items() if k != "prefixes"}, "id": model_id, "training": training,
                "trainable_parameters": trainable, "frozen_parameters": frozen}

    def write(staging):
        torch.save({k: v.detach().cpu() for k, v in model.layer.state_dict().items()}, staging / "weights.pt")
        (staging / "model.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")

    save_atomically(store, write)
    model.record = {**training, "id": model_id, "path": str(store), "loaded": False}
    return model


def load_reprogrammed(language_model, model_id: str, channels: int, window: int, settings: ReprogrammingSettings) -> ReprogrammedModel:
    """The reprogramming layer stored under `model_id`, over `language_model`, which must be the
    model it was trained with (same fingerprint)."""
    store = model_store(model_id)
    if not (store / "model.json").is_file():
        raise TradesimError(f"reprogrammed Market Analyst {model_id[:12]}: not found under {store.parent} (fit it again: run the backtest)")
    manifest = json.loads((store / "model.json").read_text())
    if manifest["base"] != language_model.fingerprint:
        raise TradesimError(f"reprogrammed Market Analyst {model_id[:12]}: trained over another model than {language_model.spec} (its weights changed)")
    model = ReprogrammedModel(language_model.backend, channels, window, settings)
    model.layer.load_state_dict(torch.load(store / "weights.pt", map_location=language_model.backend.device, weights_only=True))
    model.layer.eval()
    model.record = {**manifest["training"], "id": model_id, "path": str(store), "loaded": True}
    return model
