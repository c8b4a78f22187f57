"""`tradesim evaluate`: one table per run, every method on the same splits.

For any model spec (`hf:`, `openai:`, `smollm2`, `minilm`): zero-shot prompt scoring, `choose`
over the label words, through the decision cache. A plug-in evaluates its own models through the
entry-point group `tradesim.evaluators` (FinTeamExperts' builds: strategies/finteam/evaluate.py),
with the baselines here (TF-IDF + logistic regression, features + logistic regression).

Metrics: accuracy, weighted F1, macro F1, MCC (scikit-learn). FOMC is reported as the mean and
spread over its three seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.evaluation.tasks import TASKS, Split, load_splits
from tradesim.llm.base import Chat

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


def evaluate_spec(spec: str, shared: Path, tasks: tuple[str, ...], runtime, echo=print) -> dict:
    """Zero-shot prompt scoring of a model spec over the label words (the test sets only)."""
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
