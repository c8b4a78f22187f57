"""FinTeamExperts in `tradesim evaluate`: a build's team, the team without each role, and the
baselines it must beat on the same splits (TF-IDF + logistic regression, the frozen base + logistic
regression, the base fine-tuned end to end without roles for a budget of steps). Registered in the
entry-point group `tradesim.evaluators`, so `tradesim evaluate finteam` (or a build directory) lands
here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from strategies.finteam.backbone import Backbone, content_hash, texts_hash
from strategies.finteam.build import (
    Build, BuildSettings, FeatureStore, base_identity, build, length_for, progress_factory, task_features, task_hidden, team_predictions,
)
from tradesim.config import tradesim_home
from tradesim.errors import TradesimError
from tradesim.evaluation.harness import features_lr, metrics, tfidf_lr
from tradesim.evaluation.tasks import Split, load_splits


@dataclass(frozen=True)
class FineTuneSettings:
    steps: int = 200
    batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    seed: int = 0


_TRAINED: dict[str, tuple] = {}  # the last fine-tuned model, for another test set of the same split (fpb-flare)


def fine_tuned(source: str, identity: str, split: Split, max_length: int, settings: FineTuneSettings, device: str, home: Path, progress=None) -> np.ndarray:
    """The base fine-tuned end to end (mean pooling + linear head) on the split's training part for
    a budget of steps; returns test predictions (cached under $TRADESIM_HOME/features/)."""
    trained_key = content_hash("fine-tuned", identity, max_length, settings.__dict__, texts_hash(split.train["text"]), split.train["label"].tolist())
    path = home / "features" / f"{content_hash(trained_key, texts_hash(split.test['text']))}.npy"
    if path.is_file():
        return np.load(path)
    if trained_key not in _TRAINED:
        _TRAINED.clear()
        _TRAINED[trained_key] = _fine_tune(source, split, max_length, settings, device, progress)
    backbone, head = _TRAINED[trained_key]
    torch = backbone.torch
    predicted = []
    with torch.inference_mode():
        test = split.test["text"].tolist()
        for start in range(0, len(test), 64):
            predicted.append(head(backbone.pooled(backbone.encode(test[start : start + 64]))).argmax(-1).cpu().numpy())
    result = np.concatenate(predicted)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, result)
    return result


def _fine_tune(source: str, split: Split, max_length: int, settings: FineTuneSettings, device: str, progress=None):
    backbone = Backbone(source, device=device, max_length=max_length)
    torch = backbone.torch
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    head = torch.nn.Linear(backbone.model.config.hidden_size, len(split.labels)).to(backbone.device)
    optimizer = torch.optim.AdamW(
        [{"params": backbone.model.parameters(), "lr": settings.learning_rate}, {"params": head.parameters(), "lr": settings.head_learning_rate}],
        weight_decay=0.01,
    )
    warmup = max(1, settings.steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - s / settings.steps))
    texts, labels = split.train["text"].tolist(), torch.as_tensor(split.train["label"].to_numpy().copy())
    backbone.model.train()
    for _ in range(settings.steps):
        batch = rng.integers(0, len(texts), settings.batch_size)
        logits = head(backbone.pooled(backbone.encode([texts[i] for i in batch])))
        loss = torch.nn.functional.cross_entropy(logits, labels[batch].to(backbone.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if progress is not None:
            progress.update(1)
    backbone.model.eval()
    return backbone, head


def evaluate_build(build_, shared: Path, tasks: tuple[str, ...], fine_tune: FineTuneSettings | None, device: str = "cpu", progress: bool = True, echo=print):
    """Every method on every requested task's test sets. Returns (results, team predictions)."""
    settings = build_.meta["settings"]
    missing = [t for t in tasks if t not in settings["tasks"]]
    if missing:
        raise TradesimError(f"--task {', '.join(missing)}: this build was not tuned on it (it was on {', '.join(settings['tasks'])})")
    splits = [s for task in tasks for s in load_splits(task, shared, settings["acl18_train_limit"])]
    home = tradesim_home()
    store = FeatureStore(home, device, progress)
    experts = {Path(p).name: p for p in build_.expert_dirs()}
    features = task_features(store, experts, splits, ("test",))
    below = settings["team"].get("unfreeze_top", 0)
    hidden = task_hidden(store, experts, splits, below, ("test",)) if below else None
    source, identity = base_identity(settings["backbone"])
    base = task_features(store, {identity: source}, splits, ("train", "test"))
    results: dict[str, dict[str, dict]] = {}
    predictions = []
    make_bar = progress_factory(progress)
    name_of = {"team": None, **{f"team without {role}": role for role in ("macro", "micro", "quant")}}
    for split in splits:
        labels = split.test["label"].to_numpy()
        echo(f"evaluating {split.variant} ({len(split.test)} test examples) ...")
        rows = {"TF-IDF + LR": tfidf_lr(split)}
        rows[f"frozen {settings['backbone']} + LR"] = features_lr(base[split.variant]["train"][:, 0], split.train["label"].to_numpy(), base[split.variant]["test"][:, 0])
        if fine_tune is not None and fine_tune.steps > 0:
            bar = make_bar(fine_tune.steps, f"fine-tuning {settings['backbone']} on {split.variant}")
            rows[f"fine-tuned {settings['backbone']}"] = fine_tuned(source, identity, split, length_for(split.task), fine_tune, device, home, bar)
            bar.close()
        plan = f"seed-{split.variant.split('-')[1]}" if split.task == "fomc" else next(iter(k for k in build_.meta["teams"] if "-without-" not in k))
        for label, without in name_of.items():
            team_name = plan if without is None else f"{plan}-without-{without}"
            if team_name not in build_.meta["teams"]:
                continue  # a build made with --no-ablations
            frame = team_predictions(build_, team_name, split, features[split.variant]["test"], hidden[split.variant]["test"] if hidden else None)
            rows[label] = frame["predicted"].to_numpy()
            if without is None:
                frame.insert(1, "text", split.test["text"].to_numpy())
                predictions.append(frame)
        for method, predicted in rows.items():
            results.setdefault(method, {})[split.variant] = metrics(labels, predicted)
    return results, pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame()


class Evaluator:
    """`tradesim evaluate MODEL` for MODEL `finteam` (the default build, built first if needed) or a
    build directory from `tradesim finteam build`."""

    name = "finteam"

    def claims(self, model: str) -> bool:
        return model == "finteam" or (Path(model) / "build.json").is_file()

    def evaluate(self, model: str, shared: Path, tasks: tuple[str, ...], *, baseline_steps: int, device: str, echo: Callable[[str], None]) -> tuple[dict, pd.DataFrame, dict[str, Any]]:
        built = build(BuildSettings(), shared, device=device, echo=echo) if model == "finteam" else Build.load(Path(model))
        results, predictions = evaluate_build(built, shared, tasks, FineTuneSettings(steps=baseline_steps), device=device, echo=echo)
        meta = {"model": str(built.directory), "cutoff": built.meta["cutoff"], "build": built.meta["content_hash"], "baseline_steps": baseline_steps}
        return results, predictions, meta


EVALUATOR = Evaluator()
