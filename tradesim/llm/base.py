"""The one interface every language-model backend implements, and the usage it reports.

Backends do the raw work (`choose_batch`, `generate_batch`); callers use `LanguageModel`
(tradesim.llm.model), which puts the decision cache in front of them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

# Bump when the way backends turn a prompt and options into model input changes: it is part of
# every fingerprint, so old cache entries stop matching.
PROMPT_FORMAT_VERSION = 2  # 2: a Chat's system part is the system message


@dataclass(frozen=True)
class Chat:
    """A prompt in two parts: the instructions (the system message) and the data with the question
    (the user message). Chat models get both as messages; other models read them as one text."""

    system: str
    user: str

    def as_text(self) -> str:
        return f"{self.system}\n\n{self.user}" if self.system else self.user


Prompt = Union[str, Chat]


def prompt_text(prompt: Prompt) -> str:
    """The prompt as one text (a chat's system part first)."""
    return prompt if isinstance(prompt, str) else prompt.as_text()


def prompt_data(prompt: Prompt) -> str:
    """What a reader without instructions (a sentence encoder) needs: the user part of a chat."""
    return prompt if isinstance(prompt, str) else prompt.user


def prompt_key(prompt: Prompt) -> str | dict[str, str]:
    """The prompt as it enters a cache key (a plain string stays itself)."""
    return prompt if isinstance(prompt, str) else {"system": prompt.system, "user": prompt.user}


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
    def choose_batch(self, prompts: Sequence[Prompt], options: Sequence[str], descriptions: Sequence[str] | None) -> list[Choice]:
        """Probabilities of each option as the answer to each prompt (a text or a `Chat`)."""

    @abc.abstractmethod
    def generate_batch(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = ()) -> list[Generation]:
        """Greedy continuations of each prompt, cut before the first of `stop` when given."""

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length vector per text (encoders only)."""
        raise NotImplementedError(f"{self.spec} does not embed text")

    def describe(self) -> dict:
        return {"spec": self.spec, "fingerprint": self.fingerprint}


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the first occurrence of any stop sequence."""
    positions = [text.find(s) for s in stop if s and s in text]
    return text[: min(positions)] if positions else text


def normalized(log_probabilities: np.ndarray) -> np.ndarray:
    """Softmax along the last axis: log-probabilities (or logits) of options -> probabilities."""
    shifted = log_probabilities - log_probabilities.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)
