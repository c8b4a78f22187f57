"""The one interface every language-model backend implements, and the usage it reports.

Backends do the raw work (`choose_batch`, `generate_batch`); callers use `LanguageModel`
(tradesim.llm.model), which puts the decision cache in front of them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Bump when the way backends turn a prompt and options into model input changes: it is part of
# every fingerprint, so old cache entries stop matching.
PROMPT_FORMAT_VERSION = 1


@dataclass
class Choice:
    """One prompt's answer to `choose`: probabilities over the options (summing to 1)."""

    probabilities: list[float]
    prompt_tokens: int


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int


class Backend(abc.ABC):
    """A model behind a spec string. Implementations are stateless per call and batch internally."""

    spec: str
    can_generate: bool = True
    reads_instructions: bool = True  # False for encoders: instructions every prompt shares only cost time
    can_embed: bool = False  # sentence encoders: one vector per text

    @property
    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Identifies the exact model and prompt formatting; part of every cache key."""

    @abc.abstractmethod
    def choose_batch(self, prompts: Sequence[str], options: Sequence[str], descriptions: Sequence[str] | None) -> list[Choice]:
        """Probabilities of each option as the answer to each prompt."""

    @abc.abstractmethod
    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int) -> list[Generation]:
        """Greedy continuations of each prompt."""

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length vector per text (encoders only)."""
        raise NotImplementedError(f"{self.spec} does not embed text")

    def describe(self) -> dict:
        return {"spec": self.spec, "fingerprint": self.fingerprint}


def normalized(log_probabilities: np.ndarray) -> np.ndarray:
    """Softmax along the last axis: log-probabilities (or logits) of options -> probabilities."""
    shifted = log_probabilities - log_probabilities.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)
