"""A deterministic fake language-model backend for plumbing tests."""

import hashlib

import numpy as np

from tradesim.llm.base import Backend, Choice, Generation, cut_at_stop, normalized, prompt_text


class FakeBackend(Backend):
    """Probabilities from a hash of the prompt; counts what reaches it."""

    def __init__(self, spec="fake:1", fail_after=None):
        self.spec = spec
        self.calls = []
        self.fail_after = fail_after

    @property
    def fingerprint(self):
        return f"fake-fingerprint-{self.spec}"

    def choose_batch(self, prompts, options, descriptions):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt
        self.calls.append(list(prompts))
        result = []
        for prompt in map(prompt_text, prompts):
            seed = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
            scores = np.random.default_rng(seed).normal(size=len(options))
            result.append(Choice(probabilities=normalized(scores).tolist(), prompt_tokens=len(prompt.split())))
        return result

    can_embed = True

    def embed_batch(self, texts):
        self.calls.append(list(texts))
        vectors = np.stack([np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=16) for t in texts])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def generate_batch(self, prompts, max_new_tokens, stop=()):
        self.calls.append(list(prompts))
        texts = [cut_at_stop(prompt_text(prompt)[::-1][:max_new_tokens], stop) for prompt in prompts]
        return [Generation(text=text, prompt_tokens=3, completion_tokens=max_new_tokens) for text in texts]
