"""The offline default: MiniLM embeddings from the installed package, no network."""

import numpy as np
import pytest

from tradesim.errors import TradesimError
from tradesim.llm import load_model

OPTIONS = ["Optimistic", "Pessimistic"]
DESCRIPTIONS = ["Good news: the stock will rise.", "Bad news: the stock will fall."]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    return load_model("minilm", cache_path=tmp_path_factory.mktemp("cache") / "c.sqlite", progress=False)


def test_minilm_scores_by_similarity_offline(minilm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prompts = ["Shares soared after record profits and an analyst upgrade.", "Shares collapsed after the company missed and cut guidance."]
    probabilities = minilm.choose(prompts, OPTIONS, DESCRIPTIONS)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    assert probabilities[0, 0] > 0.5 > probabilities[1, 0]
    assert minilm.usage.model_calls == 2


def test_temperature_sharpens_and_is_in_the_fingerprint(minilm, tmp_path):
    sharper = load_model("minilm", cache_path=tmp_path / "c.sqlite", progress=False, temperature=0.01)
    prompt = ["Shares soared after record profits."]
    assert sharper.fingerprint != minilm.fingerprint
    assert sharper.choose(prompt, OPTIONS, DESCRIPTIONS)[0, 0] > minilm.choose(prompt, OPTIONS, DESCRIPTIONS)[0, 0]


def test_minilm_cannot_generate(minilm):
    assert not minilm.can_generate
    with pytest.raises(TradesimError, match="minilm cannot generate text"):
        minilm.generate(["hello"])
