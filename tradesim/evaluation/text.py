"""Text utilities the evaluation harness and text-trained strategies share: normalised text (for
matching a sentence across sources), sentence splitting, word n-grams."""

from __future__ import annotations

import re
from typing import Iterable

NGRAM = 8
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"[a-z0-9]+")


def normalise(text: str) -> str:
    """Lower case, words only: 'Sampo 's stake' and "Sampo's stake" become the same text."""
    return " ".join(_WORD.findall(text.lower()))


def sentences(text: str) -> list[str]:
    return [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


def ngrams(words: list[str], n: int = NGRAM) -> Iterable[tuple[str, ...]]:
    return (tuple(words[i : i + n]) for i in range(len(words) - n + 1))
