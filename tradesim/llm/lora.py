"""LoRA fine-tuning of an `hf:` (or `smollm2`) model as a classifier over answer options, with peft.

The model learns to answer each training prompt with its labelled option: the loss is the
cross-entropy of the options' first tokens at the answer position, which is exactly what `choose`
reads, so a fine-tuned model is used like any other through the cache. The adapter is stored under
`$TRADESIM_HOME/models/<content hash>/` (the hash of the base model's fingerprint, every prompt and
label, and the settings) and loaded when the same inputs come again; the hash becomes part of the
model's fingerprint, so a fine-tune never shares cached answers with its base or another fine-tune.
Runs on whatever device the backend runs on (a GPU for real models; tests use tiny random ones).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tradesim.config import tradesim_home
from tradesim.errors import TradesimError
from tradesim.llm.base import Prompt, prompt_key
from tradesim.llm.hf import HFBackend
from tradesim.llm.model import LanguageModel

ADAPTER_VERSION = 1


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 8
    alpha: int = 16
    epochs: int = 1
    learning_rate: float = 2e-4
    batch_size: int = 8
    seed: int = 0


def adapter_hash(base_fingerprint: str, prompts: Sequence[Prompt], labels: Sequence[int], options: Sequence[str], settings: LoraSettings) -> str:
    digest = hashlib.sha256()
    head = {"version": ADAPTER_VERSION, "base": base_fingerprint, "options": list(options), "settings": asdict(settings)}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for prompt, label in zip(prompts, labels):
        digest.update(json.dumps([prompt_key(prompt), int(label)], sort_keys=True).encode())
    return digest.hexdigest()


def fine_tune(model: LanguageModel, prompts: Sequence[Prompt], labels: Sequence[int], options: Sequence[str], settings: LoraSettings) -> dict:
    """Fit (or load) a LoRA adapter that makes `model` answer prompt i with options[labels[i]], and
    merge it into the model in place. Returns the record of the fit (hash, where, losses)."""
    backend = model.backend
    if not isinstance(backend, HFBackend):
        raise TradesimError(f"{model.spec}: LoRA fine-tuning needs a local transformers model (hf:... or smollm2)")
    if importlib.util.find_spec("peft") is None:
        raise TradesimError("LoRA fine-tuning needs the package peft (pip install 'tradesim[lora]')")
    if len(prompts) != len(labels) or not prompts:
        raise ValueError("fine_tune needs one label per prompt, and at least one prompt")
    key = adapter_hash(backend.fingerprint, prompts, labels, options, settings)
    directory = tradesim_home() / "models" / key
    record = {"role": "lora", "content_hash": key, "path": str(directory), "examples": len(prompts), **asdict(settings)}
    if (directory / "adapter_config.json").is_file():
        record.update(json.loads((directory / "training.json").read_text()), trained=False)
    else:
        started = time.perf_counter()
        losses = _train(backend, prompts, labels, options, settings)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{key[:12]}-"))
        backend.model.save_pretrained(staging)  # the adapter only
        (staging / "training.json").write_text(json.dumps({"epoch_losses": losses, "seconds": round(time.perf_counter() - started, 2)}))
        backend.model = backend.model.unload()  # back to the untouched base; the stored adapter is loaded below
        try:
            staging.rename(directory)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        record.update(epoch_losses=losses, trained=True)
    backend.apply_adapter(directory, key)
    return record


def _train(backend, prompts: Sequence[Prompt], labels: Sequence[int], options: Sequence[str], settings: LoraSettings) -> list[float]:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(settings.seed)
    rendered = [backend.render(p) for p in prompts]
    ids = [backend.encode(text) for text in rendered]
    first = [tokens[0] for tokens in backend.option_tokens(rendered[0], options)]
    if len(set(first)) != len(first):
        raise TradesimError(f"{backend.spec}: LoRA fine-tuning needs options that begin with different tokens ({', '.join(options)})")
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    backend.model = get_peft_model(backend.model, config)
    network = backend.model
    network.train()
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=settings.learning_rate)
    targets = torch.tensor(np.asarray(labels, dtype=np.int64), device=backend.device)
    option_ids = torch.tensor(first, device=backend.device)
    generator = np.random.default_rng(settings.seed)
    pad = backend.tokenizer.pad_token_id
    losses = []
    for _ in range(settings.epochs):
        order = generator.permutation(len(ids))
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in batch], device=backend.device)
            mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in batch], device=backend.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = network(input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits[:, -1, :]
            loss = torch.nn.functional.cross_entropy(logits.float()[:, option_ids], targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(round(total / len(ids), 6))
    network.eval()
    return losses
