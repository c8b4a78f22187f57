"""The OpenAI-compatible backend against a small OpenAI-wire-format server on 127.0.0.1."""

import math

import numpy as np
import pytest

from fake_server import FakeServer, optimism
from tradesim.errors import TradesimError
from tradesim.llm import load_model
from tradesim.llm.base import Chat
from tradesim.llm.openai_server import OpenAIBackend, option_probabilities


@pytest.fixture
def server():
    running = FakeServer()
    yield running
    running.close()


def backend(server, **options):
    settings = {"timeout": 0.5, "max_retries": 5, "backoff_s": 0.01, "max_backoff_s": 0.05, **options}
    return OpenAIBackend(server.url, "tiny-model", **settings)


def test_choose_reads_top_logprobs_concurrently(server):
    server.delay = 0.05
    prompts = [f"session {i}: Answer:" for i in range(16)]
    choices = backend(server, concurrency=4).choose_batch(prompts, ["Optimistic", "Pessimistic"], None)
    got = np.array([c.probabilities for c in choices])
    expected = np.array([[0.9 * optimism(p), 0.9 * (1 - optimism(p))] for p in prompts])
    np.testing.assert_allclose(got, expected / expected.sum(axis=1, keepdims=True), rtol=1e-9)
    assert 2 <= server.max_in_flight <= 4
    assert all(r["body"]["max_tokens"] == 1 and r["body"]["temperature"] == 0 for r in server.requests)


def test_retries_500_429_malformed_dropped_and_slow_answers(server):
    server.faults = ["500", "429", "malformed", "drop", "slow"]
    choice = backend(server).choose_batch(["one prompt"], ["Optimistic", "Pessimistic"], None)[0]
    assert choice.probabilities[0] == pytest.approx(optimism("one prompt"))
    assert len(server.requests) == 6


def test_after_the_retry_budget_the_error_names_the_server_and_its_answer(server):
    server.faults = ["500"] * 10
    with pytest.raises(TradesimError, match=rf"model server {server.url} \(tiny-model\) failed 3 times; last answer: HTTP 500"):
        backend(server, max_retries=2).choose_batch(["p"], ["Optimistic", "Pessimistic"], None)
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(server):
    server.faults = ["400"]
    with pytest.raises(TradesimError, match="refused the request: HTTP 400"):
        backend(server).generate_batch(["p"], 5)
    assert len(server.requests) == 1


def test_generate_and_api_key_from_the_environment(server, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    model = load_model(f"openai:{server.url}#tiny-model", cache_path=tmp_path / "cache.sqlite", progress=False, backoff_s=0.01)
    assert model.generate(["hello world"], max_new_tokens=7) == ["a reason world"]
    assert model.generate(["hello world"], max_new_tokens=7) == ["a reason world"]
    assert len(server.requests) == 1 and server.requests[0]["auth"] == "Bearer sk-test-123"
    assert model.usage.completion_tokens == 7


def test_option_probabilities_from_top_tokens():
    top = {" Optim": math.log(0.5), " Pess": math.log(0.2), "O": math.log(0.1), " the": math.log(0.05)}
    np.testing.assert_allclose(option_probabilities(top, ["Optimistic", "Pessimistic"], "s"), [0.6 / 0.8, 0.2 / 0.8])
    ambiguous = {" Up": math.log(0.5), " Down": math.log(0.3), " U": math.log(0.1)}
    with pytest.raises(TradesimError, match="the likely token ' Up' begins several options \\(Up, Upgrade\\)"):
        option_probabilities(ambiguous, ["Up", "Upgrade", "Down"], "s")
    missing = option_probabilities({" Optim": math.log(0.6), " The": math.log(0.1)}, ["Optimistic", "Pessimistic"], "s")
    np.testing.assert_allclose(missing, [6 / 7, 1 / 7])
    with pytest.raises(TradesimError, match="none of the top tokens"):
        option_probabilities({" The": -1.0}, ["Optimistic", "Pessimistic"], "s")


def test_chat_endpoint_with_a_system_message_and_logprobs(server):
    prompt = Chat("You are the router.", "session 1: Answer:")
    choice = backend(server).choose_batch([prompt], ["Optimistic", "Pessimistic"], None)[0]
    assert choice.probabilities[0] == pytest.approx(optimism("You are the router.\n\nsession 1: Answer:"))
    body = server.requests[0]["body"]
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert body["messages"] == [{"role": "system", "content": "You are the router."}, {"role": "user", "content": "session 1: Answer:"}]
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1


@pytest.mark.parametrize("chat", ["missing", "plain"])
def test_falls_back_to_completions_when_chat_has_no_logprobs(server, chat):
    server.chat = chat
    used = backend(server)
    prompts = [Chat("Instructions.", f"session {i}: Answer:") for i in range(3)]
    got = [c.probabilities[0] for c in used.choose_batch(prompts, ["Optimistic", "Pessimistic"], None)]
    assert got == pytest.approx([optimism(p.as_text()) for p in prompts])
    paths = [r["path"] for r in server.requests]
    assert paths.count("/v1/chat/completions") == 1 and paths.count("/v1/completions") == 3  # the chat endpoint is tried once
    assert sorted(r["body"]["prompt"] for r in server.requests[1:]) == [f"Instructions.\n\nsession {i}: Answer:" for i in range(3)]
    assert used.describe()["endpoints"] == ["completions"]
    forced = backend(server, endpoint="chat")
    with pytest.raises(TradesimError, match="the chat endpoint gave .*; use endpoint=completions"):
        forced.choose_batch(prompts[:1], ["Optimistic", "Pessimistic"], None)


def test_stop_sequences_reach_the_server_and_the_cache_key(server, tmp_path):
    model = load_model(f"openai:{server.url}#tiny-model", cache_path=tmp_path / "cache.sqlite", progress=False)
    assert model.generate(["hello world"], max_new_tokens=9) == ["a reason world"]  # the server's default stop
    assert model.generate(["hello world"], max_new_tokens=9, stop=["rea"]) == ["a"]
    assert server.requests[-1]["body"]["stop"] == ["rea"] and server.requests[-1]["path"] == "/v1/chat/completions"
    assert model.usage.model_calls == 2
    with pytest.raises(TradesimError, match="endpoint 'rest': expected one of auto, chat, completions"):
        backend(server, endpoint="rest")
