"""`hf:<hub id or local dir>`: a causal language model through transformers.

`choose` scores, it does not generate: one forward pass per batch, log-probabilities of the options
at the answer position, logits computed for the last position(s) only. When two options share
their first token, the options' full token sequences are scored instead. Batches are left-padded
with explicit position ids, so a prompt scores the same alone or in any batch. Prompts that share
a long token prefix (the fixed instructions; in pair prompts also the first stock's reports) are
batched together and run that prefix once per batch, reusing its key/value cache. Prompts may be
`Chat`s: the system part becomes the chat template's system message.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Sequence

import numpy as np

from tradesim.errors import TradesimError
from tradesim.llm.base import PROMPT_FORMAT_VERSION, Backend, Chat, Choice, Generation, Prompt, cut_at_stop, normalized, prompt_text
from tradesim.llm.weights import state_digest, weights_digest

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}


def resolve_device(device: str = "auto", dtype: str = "auto"):
    """`auto`: CUDA in bf16 where available, else CPU in fp32; either can be overridden."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TradesimError(f"device {device}: CUDA is not available on this machine")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise TradesimError(f"dtype {dtype!r}: expected auto, float32, bfloat16 or float16")
    return torch.device(device), getattr(torch, DTYPES[dtype])


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub (or the mirror in HF_ENDPOINT) answers a TCP connection at all."""
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        return False
    from urllib.parse import urlparse

    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load(target: str, loader, **kwargs):
    """Load from the local files first; go to the hub only when it is reachable."""
    try:
        return loader(target, local_files_only=True, **kwargs)
    except OSError as local_error:
        if not hub_reachable():
            reason = local_error
        else:
            try:
                return loader(target, **kwargs)
            except OSError as hub_error:
                reason = hub_error
    first_line = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    raise TradesimError(
        f"hf:{target}: weights not found on this machine and the hub could not provide them ({first_line[:160]}); "
        f"download them where there is network (`huggingface-cli download {target}`) or pass hf:/path/to/local/model"
    ) from None


class HFBackend(Backend):
    def __init__(
        self,
        target: str,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        prefix_reuse: bool = True,
        min_prefix_tokens: int = 16,
        gguf_file: str | None = None,
        spec: str | None = None,
    ):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        if not target:
            raise TradesimError("model spec hf:: expected hf:<hub id or local dir>")
        path = Path(target).expanduser()
        looks_local = target.startswith(("/", ".", "~")) or path.exists()
        if looks_local and not path.is_dir():
            raise TradesimError(f"hf:{target}: no such model directory")
        self.target = str(path) if looks_local else target
        self.spec = spec or f"hf:{target}"
        self.device, self.torch_dtype = resolve_device(device, dtype)
        self.batch_size = batch_size
        self.prefix_reuse = prefix_reuse
        self.min_prefix_tokens = min_prefix_tokens
        gguf = {"gguf_file": gguf_file} if gguf_file else {}  # a GGUF file: dequantized into a transformers model
        self.tokenizer = _load(self.target, AutoTokenizer.from_pretrained, **gguf)
        self.model = _load(self.target, AutoModelForCausalLM.from_pretrained, dtype=self.torch_dtype, **gguf)
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        revision = getattr(self.model.config, "_commit_hash", None)
        if looks_local:
            identity = f"dir:{weights_digest(path)}"
        elif revision:
            identity = f"hub:{target}@{revision}"
        else:  # no revision to name it by: the weights themselves are its identity
            identity = f"hub:{target}#weights:{state_digest(self.model)}"
        template = hashlib.sha256((self.tokenizer.chat_template or "").encode()).hexdigest()[:16] if self.chat else "none"
        self._fingerprint = json.dumps(
            {"backend": "hf", "model": identity, "dtype": str(self.torch_dtype), "chat_template": template, "format": PROMPT_FORMAT_VERSION},
            sort_keys=True,
        )
        self._torch = torch

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def apply_adapter(self, directory: Path, content_hash: str) -> None:
        """Merge a stored LoRA adapter into the weights; its content hash joins the fingerprint."""
        from peft import PeftModel

        self.model = PeftModel.from_pretrained(self.model, str(directory)).merge_and_unload().eval()
        self._fingerprint = json.dumps({**json.loads(self._fingerprint), "adapter": content_hash}, sort_keys=True)

    def describe(self) -> dict:
        described = {**super().describe(), "device": str(self.device), "dtype": str(self.torch_dtype)}
        if self.device.type == "cuda":
            described["device_name"] = self._torch.cuda.get_device_name(self.device)
        return described

    def render(self, prompt: Prompt) -> str:
        """The text the model sees: the chat template around the prompt's messages (a `Chat`'s system
        part as the system message), when the tokenizer has one; otherwise the prompt as one text."""
        if not self.chat:
            return prompt_text(prompt)
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [
            {"role": "system", "content": prompt.system},
            {"role": "user", "content": prompt.user},
        ]
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # a template without a system role: the instructions open the user message
            if not isinstance(prompt, Chat):
                raise
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt.as_text()}], tokenize=False, add_generation_prompt=True
            )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    def option_tokens(self, rendered: str, options: Sequence[str], prompt_ids: list[int] | None = None) -> list[list[int]]:
        """Each option's tokens as they follow the rendered prompt (boundary merges respected)."""
        prompt_ids = self.encode(rendered) if prompt_ids is None else prompt_ids
        result = []
        for option in options:
            continuation = option if self.chat or rendered.endswith((" ", "\n")) else " " + option
            full = self.encode(rendered + continuation)
            if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
                result.append(full[len(prompt_ids) :])
            else:
                result.append(self.tokenizer(continuation, add_special_tokens=False)["input_ids"])
        if any(not ids for ids in result):
            raise ValueError("an option encodes to no tokens")
        return result

    def choose_batch(self, prompts: Sequence[Prompt], options: Sequence[str], descriptions: Sequence[str] | None) -> list[Choice]:
        rendered = [self.render(p) for p in prompts]
        prompt_ids = [self.encode(text) for text in rendered]
        # The options' tokens depend on how each prompt ends (a trailing space, a merge across the
        # boundary): prompts are scored in groups that share them.
        groups: dict[tuple[tuple[int, ...], ...], list[int]] = {}
        for index, (text, ids) in enumerate(zip(rendered, prompt_ids)):
            groups.setdefault(tuple(map(tuple, self.option_tokens(text, options, ids))), []).append(index)
        scores = np.empty((len(prompts), len(options)))
        for option_key, members in groups.items():
            option_ids = [list(ids) for ids in option_key]
            first = [ids[0] for ids in option_ids]
            member_ids = [prompt_ids[i] for i in members]
            if len(set(first)) == len(first):
                scores[members] = np.stack([row[0, first] for row in self.log_probabilities(member_ids, keep=1)])
            else:
                scores[members] = self.sequence_scores(member_ids, option_ids)
        probabilities = normalized(scores)
        return [Choice(probabilities=p.tolist(), prompt_tokens=len(ids)) for p, ids in zip(probabilities, prompt_ids)]

    def sequence_scores(self, prompt_ids: list[list[int]], option_ids: list[list[int]]) -> np.ndarray:
        """Sum of log-probabilities of each option's whole token sequence after each prompt."""
        longest = max(len(ids) for ids in option_ids)
        sequences = [p + o for p in prompt_ids for o in option_ids]
        rows = self.log_probabilities(sequences, keep=longest + 1)
        scores = np.empty((len(prompt_ids), len(option_ids)))
        for index, row in enumerate(rows):
            prompt, option = divmod(index, len(option_ids))
            tokens = option_ids[option]
            predictions = row[-(len(tokens) + 1) : -1]
            scores[prompt, option] = predictions[np.arange(len(tokens)), tokens].sum()
        return scores

    def log_probabilities(self, sequences: list[list[int]], keep: int) -> list[np.ndarray]:
        """Log-softmax over the vocabulary at the last `keep` positions of each token sequence.

        With prefix reuse the sequences are sorted by their tokens, so those sharing a beginning (the
        instructions, and in a pair prompt the first stock's reports) share a batch; each batch runs
        its common prefix once and reuses its key/value cache."""
        torch = self._torch
        if self.prefix_reuse:
            order = sorted(range(len(sequences)), key=lambda i: sequences[i])
        else:
            order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        results: list[np.ndarray | None] = [None] * len(sequences)
        prefix: list[int] = []
        prefix_cache = None
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                shared = self.shared_prefix([sequences[i] for i in batch], keep)
                if shared != prefix:
                    prefix = shared
                    prefix_cache = self.model(torch.tensor([prefix], device=self.device), use_cache=True).past_key_values if prefix else None
                suffixes = [sequences[i][len(prefix) :] for i in batch]
                logits = self.forward(suffixes, len(prefix), prefix_cache, keep)
                for i, row in zip(batch, logits):
                    results[i] = row
        return results

    def shared_prefix(self, sequences: list[list[int]], keep: int) -> list[int]:
        """The token prefix common to all sequences, when long enough to be worth reusing."""
        if not self.prefix_reuse or len(sequences) < 2:
            return []
        shortest = min(len(s) for s in sequences)
        length = 0
        first = sequences[0]
        limit = shortest - keep  # every suffix keeps the positions whose logits are needed
        while length < limit and all(s[length] == first[length] for s in sequences):
            length += 1
        return first[:length] if length >= self.min_prefix_tokens else []

    def forward(self, suffixes: list[list[int]], prefix_length: int, prefix_cache, keep: int) -> list[np.ndarray]:
        torch = self._torch
        width = max(len(s) for s in suffixes)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in suffixes], device=self.device)
        suffix_mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=self.device)
        positions = (prefix_length + suffix_mask.cumsum(-1) - 1).clamp(min=prefix_length)
        attention_mask = torch.cat(
            [torch.ones(len(suffixes), prefix_length, dtype=suffix_mask.dtype, device=self.device), suffix_mask], dim=1
        )
        past = None
        if prefix_cache is not None:
            past = copy.deepcopy(prefix_cache)
            past.batch_repeat_interleave(len(suffixes))
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            past_key_values=past,
            use_cache=past is not None,
            logits_to_keep=keep,
        )
        log_probabilities = output.logits[:, -keep:, :].float().log_softmax(-1)
        return list(log_probabilities.cpu().numpy())

    def generate_batch(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = ()) -> list[Generation]:
        torch = self._torch
        stopping = {"stop_strings": list(stop), "tokenizer": self.tokenizer} if stop else {}
        results = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [self.render(p) for p in prompts[start : start + self.batch_size]]
            encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not self.chat).to(self.device)
            with torch.inference_mode():
                output = self.model.generate(
                    **encoded,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **stopping,
                )
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
            for row, mask in zip(new_tokens.tolist(), encoded["attention_mask"].tolist()):
                length = next((i for i, token in enumerate(row) if token in ends), len(row))
                text = cut_at_stop(self.tokenizer.decode(row[:length], skip_special_tokens=True), stop).strip()
                results.append(Generation(text=text, prompt_tokens=int(sum(mask)), completion_tokens=length))
        return results
