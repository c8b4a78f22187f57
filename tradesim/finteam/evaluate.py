"""`tradesim evaluate`: one table per run, every method on the same splits.

For a FinTeamExperts build: TF-IDF + logistic regression, the frozen base encoder + logistic
regression, the base fine-tuned end to end without roles (a budget of steps), the team, and the
team without each role. For any model spec (`hf:`, `openai:`, `smollm2`, `minilm`): zero-shot prompt
scoring, `choose` over the label words, through the decision cache.

Metrics: accuracy, weighted F1, macro F1, MCC (scikit-learn). FOMC is reported as the mean and
spread over its three seeds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.finteam.backbone import Backbone, content_hash, texts_hash
from tradesim.finteam.tasks import TASKS, Split, load_splits

COLUMNS = ("fpb", "fpb-flare", "fiqa-sa", "fomc", "acl18")
HEADINGS = {"fpb": "FPB", "fpb-flare": "FPB (FLARE)", "fiqa-sa": "FiQA-SA", "fomc": "FOMC (3 seeds)", "acl18": "ACL18"}
INSTRUCTIONS = {
    "fpb": "Analyze the sentiment of this sentence from financial news. Answer with one word: Negative, Neutral or Positive.",
    "fiqa-sa": "Analyze the sentiment of this financial post or headline. Answer with one word: Negative, Neutral or Positive.",
    "fomc": "Classify this sentence from the Federal Reserve as hawkish, dovish or neutral on monetary policy. Answer with one word: Dovish, Hawkish or Neutral.",
    "acl18": "Below are the tweets and the last five sessions of a stock's prices (percent changes). Will the stock's price rise or fall at the next session? Answer with one word: Rise or Fall.",
}
DESCRIPTIONS = {
    "fpb": ("Negative: bad news, losses, decline.", "Neutral: a plain statement of fact.", "Positive: good news, gains, growth."),
    "fomc": ("Dovish: easier monetary policy, lower rates.", "Hawkish: tighter monetary policy, higher rates, inflation concern.", "Neutral: neither hawkish nor dovish."),
    "acl18": ("Fall: the stock has been going down; the price will fall.", "Rise: the stock has been going up; the price will rise."),
}
DESCRIPTIONS["fiqa-sa"] = DESCRIPTIONS["fpb"]


def metrics(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    return {
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "weighted_f1": round(float(f1_score(labels, predicted, average="weighted", zero_division=0)), 4),
        "macro_f1": round(float(f1_score(labels, predicted, average="macro", zero_division=0)), 4),
        "mcc": round(float(matthews_corrcoef(labels, predicted)), 4),
        "examples": int(len(labels)),
    }


def tfidf_lr(split: Split) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x = vectorizer.fit_transform(split.train["text"])
    model = LogisticRegression(max_iter=2000, C=10.0).fit(x, split.train["label"])
    return model.predict(vectorizer.transform(split.test["text"]))


def features_lr(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1)).fit(train_x, train_y)
    return model.predict(test_x)


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
    from tradesim.config import tradesim_home
    from tradesim.finteam.build import FeatureStore, base_identity, length_for, progress_factory, task_features, task_hidden, team_predictions

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


def evaluate_spec(spec: str, shared: Path, tasks: tuple[str, ...], runtime, echo=print) -> dict:
    """Zero-shot prompt scoring of a model spec over the label words (the test sets only)."""
    from tradesim.llm.base import Chat

    model = runtime.load_model(spec)
    results: dict[str, dict] = {}
    for task in tasks:
        for split in load_splits(task, shared, None):
            options = [label.capitalize() for label in split.labels]
            prompts = [Chat(INSTRUCTIONS[task], f"Text: {text}\nAnswer:") for text in split.test["text"]]
            echo(f"scoring {split.variant} ({len(prompts)} prompts) with {spec} ...")
            probabilities = model.choose(prompts, options, DESCRIPTIONS[task])
            results[split.variant] = metrics(split.test["label"].to_numpy(), probabilities.argmax(1))
    return {f"{spec} (zero-shot)": results}, model.describe()


def _cell(values: list[dict], key: str) -> str:
    numbers = [v[key] for v in values]
    if len(numbers) == 1:
        return f"{numbers[0]:.3f}"
    return f"{np.mean(numbers):.3f}±{np.std(numbers):.3f}"


def results_table(results: dict[str, dict[str, dict]]) -> str:
    """Rows: methods; columns: test sets; cells: accuracy / weighted F1, then macro F1 / MCC."""
    variants = sorted({v for row in results.values() for v in row})
    present = [c for c in COLUMNS if any(v == c or (c == "fomc" and v.startswith("fomc-")) for v in variants)]
    width = max(len(m) for m in results) + 2
    lines = []
    for first, second, title in (("accuracy", "weighted_f1", "accuracy / weighted F1"), ("macro_f1", "mcc", "macro F1 / MCC")):
        lines.append(title + ":")
        lines.append(f"{'':<{width}}" + "".join(f"{HEADINGS[c]:>26}" for c in present))
        for method, row in results.items():
            cells = []
            for column in present:
                values = [m for v, m in row.items() if v == column or (column == "fomc" and v.startswith("fomc-"))]
                cells.append(f"{_cell(values, first) + ' / ' + _cell(values, second):>26}" if values else f"{'-':>26}")
            lines.append(f"{method:<{width}}" + "".join(cells))
        lines.append("")
    return "\n".join(lines).rstrip()


def write_evaluation(out: Path, results: dict, predictions: pd.DataFrame | None, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps({**meta, "results": results}, indent=2, default=str))
    if predictions is not None and not predictions.empty:
        predictions.to_parquet(out / "predictions.parquet", index=False)
    (out / "table.txt").write_text(results_table(results) + "\n")


def resolve_tasks(task: str) -> tuple[str, ...]:
    if task == "all":
        return TASKS
    names = tuple(t.strip() for t in task.split(","))
    for name in names:
        if name not in TASKS:
            raise TradesimError(f"--task: expected one of {', '.join(TASKS)} or all, got {name!r}")
    return names
