"""Stage 1: each expert is its backbone further pre-trained on its own corpus, for a budget of steps.

An expert is stored under `$TRADESIM_HOME/models/<content hash>/` (the hash of the backbone's
identity, the expert's training text and the settings) with `expert.json` saying what it was
trained on; the same inputs load it instead of training again.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from strategies.finteam.backbone import Backbone, content_hash, texts_hash

EXPERT_VERSION = 2  # 2: seeded initialisation of missing head weights; a sample of the documents is tokenized


@dataclass(frozen=True)
class PretrainSettings:
    steps: int = 200
    batch_size: int = 16
    block_length: int = 128
    learning_rate: float = 2e-4
    warmup: int = 10
    lora_rank: int = 0  # causal backbones: 0 trains every weight, > 0 trains a LoRA adapter (merged)
    held_out_blocks: int = 32
    seed: int = 0


def expert_hash(base_identity: str, key: str, train: Sequence[str], settings: PretrainSettings) -> str:
    return content_hash({"version": EXPERT_VERSION, "base": base_identity, "expert": key, "settings": asdict(settings)}, texts_hash(train))


def held_out_loss(backbone: Backbone, blocks: np.ndarray, batch_size: int, seed: int = 1234) -> float:
    """Mean loss over fixed blocks with fixed masks: the same number for the same model and text."""
    torch = backbone.torch
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(blocks), batch_size):
            batch = blocks[start : start + batch_size]
            total += float(backbone.lm_loss(batch, generator)) * len(batch)
            count += len(batch)
    return total / max(count, 1)


def pretrain(backbone: Backbone, train: Sequence[str], settings: PretrainSettings, progress=None) -> list[float]:
    """Train `backbone` in place for `settings.steps` steps on blocks sampled from `train`.
    Returns the training loss of every step."""
    torch = backbone.torch
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    blocks = backbone.blocks(enough_text(train, settings, rng), settings.block_length)
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = backbone.start_training(settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(settings.warmup, 1)) * max(0.0, 1 - step / max(settings.steps, 1))
    )
    losses = []
    order = rng.permutation(len(blocks))
    for step in range(settings.steps):
        start = (step * settings.batch_size) % len(order)
        if start + settings.batch_size > len(order):  # a new pass over the blocks in a new order
            order = rng.permutation(len(blocks))
            start = 0
        batch = blocks[order[start : start + settings.batch_size]]
        loss = backbone.lm_loss(batch, generator)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(backbone.model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(round(loss.item(), 5))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{losses[-1]:.3f}")
    backbone.stop_training()
    return losses


def enough_text(texts: Sequence[str], settings: PretrainSettings, rng, chars_per_token: float = 4.0) -> list[str]:
    """Documents in a seeded random order until they hold about twice the tokens the steps read
    (tokenizing a whole 17 M-character corpus for 200 steps would take longer than some steps)."""
    needed = 2 * settings.steps * settings.batch_size * settings.block_length * chars_per_token
    chosen, total = [], 0
    for index in rng.permutation(len(texts)):
        chosen.append(texts[index])
        total += len(texts[index])
        if total >= needed:
            break
    return chosen


def fit_expert(source: str, base_identity: str, key: str, train: Sequence[str], settings: PretrainSettings, device: str, home: Path, record: dict, progress_factory=None) -> Path:
    """The expert's directory: trained now, or found from an earlier run with the same inputs."""
    digest = expert_hash(base_identity, key, train, settings)
    directory = home / "models" / digest
    if (directory / "expert.json").is_file():
        return directory
    started = time.perf_counter()
    backbone = Backbone(source, device=device, lora_rank=settings.lora_rank)
    progress = progress_factory(settings.steps, f"stage 1 {key}") if progress_factory else None
    losses = pretrain(backbone, train, settings, progress)
    if progress is not None:
        progress.close()
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{digest[:12]}-"))
    backbone.save(staging)
    meta = {
        "expert": key,
        "content_hash": digest,
        "base": base_identity,
        "kind": backbone.kind,
        "settings": asdict(settings),
        "corpus": record,
        "training_loss_first_last": [losses[0], float(np.mean(losses[-10:]))],
        "seconds": round(time.perf_counter() - started, 1),
    }
    (staging / "losses.json").write_text(json.dumps(losses))
    (staging / "expert.json").write_text(json.dumps(meta, indent=2))
    try:
        staging.rename(directory)
    except OSError:  # another process stored the same expert first
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def loss_table(models: dict[str, str], held_out: dict[str, Sequence[str]], settings: PretrainSettings, device: str) -> dict:
    """Held-out loss of each model (the base and every expert) on each expert corpus's held-out
    text: fixed blocks, fixed masks. (For a causal backbone exp(loss) is the perplexity.)"""
    table: dict[str, dict[str, float]] = {}
    blocks = {}
    for name, source in models.items():
        backbone = Backbone(source, device=device)
        for corpus, texts in held_out.items():
            if corpus not in blocks:
                every = backbone.blocks(texts, settings.block_length)
                blocks[corpus] = every[np.unique(np.linspace(0, len(every) - 1, settings.held_out_blocks).astype(int))]
            table.setdefault(name, {})[corpus] = round(held_out_loss(backbone, blocks[corpus], settings.batch_size), 4)
    return table
