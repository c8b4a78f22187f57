"""The OpenAI-compatible backend against a small OpenAI-wire-format server on 127.0.0.1."""

import hashlib
import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tradesim.errors import TradesimError
from tradesim.llm import load_model
from tradesim.llm.openai_server import OpenAIBackend, option_probabilities


def optimism(prompt):
    return 0.05 + 0.9 * int(hashlib.sha256(prompt.encode()).hexdigest()[:4], 16) / 0xFFFF


class FakeServer:
    """Answers /v1/completions; `faults` is a queue of misbehaviours served before normal answers."""

    def __init__(self):
        self.faults = []
        self.requests = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    fault = server.faults.pop(0) if server.faults else None
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay)
                    self.answer(fault, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def answer(self, fault, body):
                if fault == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if fault == "slow":
                    time.sleep(1.0)
                if fault in ("500", "429", "400"):
                    return self.send(int(fault), b'{"error": "injected"}')
                if fault == "malformed":
                    return self.send(200, b'{"choices": [')
                prompt = body["prompt"]
                if body.get("logprobs"):
                    p = optimism(prompt)
                    top = {" Optim": math.log(p * 0.7), "Opt": math.log(p * 0.2), " Pess": math.log((1 - p) * 0.9), " The": math.log(0.01)}
                    choice = {"text": " Optim", "logprobs": {"top_logprobs": [top]}}
                else:
                    choice = {"text": " a reason " + prompt[-5:]}
                answer = {"choices": [choice], "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": body["max_tokens"]}}
                self.send(200, json.dumps(answer).encode())

            def send(self, status, payload):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


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
