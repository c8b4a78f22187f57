"""Identity of model weights: every byte hashed once, the hash remembered by path, size and
modification time (`$TRADESIM_HOME/file-hashes.json`), so that two fine-tunes of one model never
share a fingerprint (nor cached answers) and a large model is not re-read on every run."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from tradesim.config import tradesim_home

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
TOKENIZER_FILES = ("tokenizer.model", "merges.txt", "vocab.txt", "spiece.model")
BLOCK = 1 << 22


def _memo_path() -> Path:
    return tradesim_home() / "file-hashes.json"


def _read_memo(path: Path) -> dict[str, dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def file_sha256(path: Path, memo: dict[str, dict] | None = None) -> str:
    """sha256 of every byte of `path`, or the remembered one while its size and mtime are unchanged."""
    stat = path.stat()
    key = str(path.resolve())
    known = (memo or {}).get(key)
    if known and known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
        return known["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    if memo is not None:
        memo[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
    return digest.hexdigest()


def weights_digest(directory: Path) -> str:
    """sha256 over a model directory's config, tokenizer and weight files, each hashed whole."""
    memo_path = _memo_path()
    memo = _read_memo(memo_path)
    before = dict(memo)
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if not (path.suffix in WEIGHT_SUFFIXES or path.suffix == ".json" or path.name in TOKENIZER_FILES):
            continue
        digest.update(f"{path.relative_to(directory)}:{path.stat().st_size}:{file_sha256(path, memo)}".encode())
    if memo != before:
        _write_memo(memo_path, memo)
    return digest.hexdigest()


def _write_memo(path: Path, memo: dict[str, dict]) -> None:
    """Atomic replace: concurrent runs may lose each other's entries, never corrupt the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".file-hashes.", dir=path.parent)
        with os.fdopen(handle, "w") as stream:
            json.dump(memo, stream)
        os.replace(temporary, path)
    except OSError:
        pass  # the memo only saves time


def state_digest(model) -> str:
    """sha256 over a loaded torch model's parameter names, shapes, dtypes and bytes (for weights
    whose files or revision are unknown)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(flat.shape)}:{flat.dtype}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()
