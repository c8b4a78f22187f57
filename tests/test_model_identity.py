"""Model identity never collides: weights are hashed whole, answers are keyed by what changes them."""

import json

import pytest

from llm_helpers import save_tiny_llama
from tradesim.llm import hf as hf_module
from tradesim.llm import weights as weights_module
from tradesim.llm.hf import HFBackend
from tradesim.llm.openai_server import OpenAIBackend
from tradesim.llm.weights import weights_digest


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _fine_tune(directory, middle_byte):
    """A 1 GiB + 1 MiB weight file (sparse on disk) that differs from its sibling in one middle byte."""
    directory.mkdir()
    (directory / "config.json").write_text('{"model_type": "llama"}')
    size = (1 << 30) + (1 << 20)
    with open(directory / "model.safetensors", "wb") as handle:
        handle.truncate(size)
        handle.seek(size // 2)
        handle.write(bytes([middle_byte]))
    return directory


def test_two_fine_tunes_of_one_size_do_not_share_a_fingerprint_and_hashes_are_remembered(tmp_path, home, monkeypatch):
    first, second = _fine_tune(tmp_path / "a", 1), _fine_tune(tmp_path / "b", 2)
    digest_a, digest_b = weights_digest(first), weights_digest(second)
    assert digest_a != digest_b
    memo = json.loads((home / "file-hashes.json").read_text())
    assert str((first / "model.safetensors").resolve()) in memo

    def no_reading(*args, **kwargs):
        raise AssertionError("a remembered file was read again")

    monkeypatch.setattr(weights_module, "open", no_reading, raising=False)
    assert weights_digest(first) == digest_a  # size and mtime unchanged: the remembered hash
    monkeypatch.undo()
    monkeypatch.setenv("TRADESIM_HOME", str(home))
    with open(first / "model.safetensors", "r+b") as handle:
        handle.seek(3)
        handle.write(b"\x07")
    assert weights_digest(first) not in (digest_a, digest_b)  # modified: hashed again


def test_hub_models_without_a_revision_are_identified_by_their_weights(tmp_path, monkeypatch):
    directories = {"org/tuned-a": save_tiny_llama(tmp_path / "a", seed=0), "org/tuned-b": save_tiny_llama(tmp_path / "b", seed=1)}
    original = hf_module._load

    def from_hub_without_revision(target, loader, **kwargs):
        loaded = original(str(directories[target]), loader, **kwargs)
        if hasattr(loaded, "config"):
            loaded.config._commit_hash = None
        return loaded

    monkeypatch.setattr(hf_module, "_load", from_hub_without_revision)
    a, b = HFBackend("org/tuned-a").fingerprint, HFBackend("org/tuned-b").fingerprint
    assert a != b and "weights:" in json.loads(a)["model"]
    assert HFBackend("org/tuned-a").fingerprint == a


def test_openai_fingerprint_includes_how_answers_are_read():
    twenty = OpenAIBackend("http://127.0.0.1:9/v1", "m", top_logprobs=20).fingerprint
    five = OpenAIBackend("http://127.0.0.1:9/v1", "m", top_logprobs=5).fingerprint
    assert twenty != five and json.loads(five)["top_logprobs"] == 5
    assert OpenAIBackend("http://127.0.0.1:9/v1", "m", concurrency=2, timeout=5).fingerprint == twenty  # no effect on answers
