"""The models' own look-ahead: each model's training cutoff, and each decision labelled against it.

A model that read about the test period while it was trained can "predict" it from memory
(Lopez-Lira, Tang & Zhu 2025; Look-Ahead-Bench 2026). Every model spec has a cutoff: from the table
below (each with its source), from `--model-cutoff SPEC=YYYY-MM-DD` or a `[model_cutoffs]` table
in the config, or "unknown", which is said and never assumed. Stated cutoffs are often earlier than
what a model has effectively seen, so decisions within `--cutoff-embargo-days` after one are "near"
it; only those after that are "after".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

# (substring of the model spec, lower case; cutoff; source). The first match wins: specific names first.
KNOWN_CUTOFFS: tuple[tuple[str, str, str], ...] = (
    ("minilm", "2021-06-30",
     "sentence-transformers/all-MiniLM-L6-v2 model card: fine-tuned in 2021 on 1B sentence pairs (Reddit comments 2015-2018, "
     "S2ORC, PAQ, Stack Exchange ...); no cutoff is stated, so the date of its training is taken"),
    ("smollm2", "2024-06-30",
     "SmolLM2 paper (Ben Allal et al. 2025, arXiv 2502.02737): web data from FineWeb-Edu and DCLM crawls into 2024, "
     "released November 2024; no cutoff is stated, so mid-2024 is taken"),
    ("llama-3.2", "2023-12-31", "Llama 3.2 model card: data freshness December 2023"),
    ("llama-3.1", "2023-12-31", "Llama 3.1 model card: data freshness December 2023"),
    ("llama-3-70b", "2023-12-31", "Meta Llama 3 model card: 70B data cutoff December 2023"),
    ("llama-3-8b", "2023-03-31", "Meta Llama 3 model card: 8B data cutoff March 2023"),
    ("llama-2", "2022-09-30", "Llama 2 model card: pretraining data cutoff September 2022"),
    ("gpt-4o", "2023-10-31", "OpenAI model documentation: GPT-4o and GPT-4o mini knowledge cutoff October 2023"),
    ("gpt-4-turbo", "2023-12-31", "OpenAI model documentation: GPT-4 Turbo knowledge cutoff December 2023"),
    ("gpt-3.5-turbo", "2021-09-30", "OpenAI model documentation: GPT-3.5 Turbo knowledge cutoff September 2021"),
    ("phi-3", "2023-10-31", "Phi-3 model cards: offline dataset with cutoff October 2023"),
)
LABELS = ("before", "near", "after")


@dataclass(frozen=True)
class Cutoff:
    spec: str
    date: pd.Timestamp | None  # None: unknown
    source: str

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "cutoff": None if self.date is None else str(self.date.date()), "source": self.source}


def cutoff_of(spec: str, given: dict[str, str] | None = None) -> Cutoff:
    """The training cutoff of a model spec: given (exactly this spec), shipped (a known family), or unknown."""
    if given and spec in given:
        return Cutoff(spec, pd.Timestamp(given[spec]), "given (--model-cutoff or [model_cutoffs])")
    lowered = spec.lower()
    for pattern, day, source in KNOWN_CUTOFFS:
        if pattern in lowered:
            return Cutoff(spec, pd.Timestamp(day), source)
    return Cutoff(spec, None, "unknown: not in tradesim's table; give --model-cutoff SPEC=YYYY-MM-DD")


def label_dates(dates: pd.DatetimeIndex, cutoff: pd.Timestamp, embargo_days: int) -> pd.Series:
    """before (on or before the cutoff), near (within `embargo_days` after it) or after."""
    near_end = cutoff + pd.Timedelta(days=embargo_days)
    labels = ["before" if d <= cutoff else "near" if d <= near_end else "after" for d in dates]
    return pd.Series(labels, index=dates, dtype=object)


def returns_labels(decision_labels: pd.Series, returns_index: pd.DatetimeIndex) -> pd.Series:
    """Each daily return labelled like the latest decision taken before its session (the one whose
    positions earned it)."""
    positions = decision_labels.index.searchsorted(returns_index, side="left") - 1
    values = [decision_labels.iloc[p] if p >= 0 else None for p in positions]
    return pd.Series(values, index=returns_index, dtype=object)


def look_ahead_reason(cutoff: Cutoff, before_share: float, embargo_days: int) -> str:
    return (
        f"MODEL LOOK-AHEAD: {before_share:.0%} of the decisions lie on or before the training cutoff of {cutoff.spec} "
        f"({cutoff.date.date()}; {cutoff.source}): the model may have read what followed them, so results there are not "
        f"evidence of skill (metrics.json by_model_cutoff splits them; --require-post-cutoff refuses such runs; decisions "
        f"within {embargo_days} days after the cutoff count as near it)"
    )
