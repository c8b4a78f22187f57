"""`openai:<base url>#<model>`: any server speaking the OpenAI API (vLLM, llama.cpp, Ollama, SGLang).

Prompts go to the chat endpoint (`/chat/completions`, so the server applies the model's chat
template and a `Chat`'s system part is the system message, as `hf:` does), falling back to the
completions endpoint when the server has no chat endpoint or its chat answers carry no
log-probabilities (`endpoint=` forces either). `choose` reads the top log-probabilities of the first
answer token and gives each option the probability mass of the tokens that begin it; `generate` is
a greedy completion, with stop sequences passed to the server. Requests run
concurrently up to a limit, with timeouts, and are retried with exponential backoff and jitter on
429, 5xx, timeouts, dropped connections and malformed answers. The API key, if the server needs
one, comes from the environment variable OPENAI_API_KEY (or TRADESIM_OPENAI_API_KEY).
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from tradesim.errors import TradesimError
from tradesim.llm.base import PROMPT_FORMAT_VERSION, Backend, Choice, Generation, Prompt, cut_at_stop, normalized, prompt_text

RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}
TOP_LOGPROBS = 20
ENDPOINTS = ("auto", "chat", "completions")
MISSING_ENDPOINT = {404, 405, 501}


class ServerAnswerError(Exception):
    """An answer worth retrying: a retryable status, a timeout, a dropped connection, bad JSON."""


class NoChatLogprobs(Exception):
    """The chat endpoint is missing, or it answers without log-probabilities."""


class OpenAIBackend(Backend):
    def __init__(
        self,
        base_url: str,
        model: str,
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        top_logprobs: int = TOP_LOGPROBS,
        endpoint: str = "auto",
    ):
        if not base_url.startswith(("http://", "https://")):
            raise TradesimError(f"openai:{base_url}#{model}: the base url must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.spec = f"openai:{base_url}#{model}"
        self.concurrency = max(1, int(concurrency))
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.top_logprobs = int(top_logprobs)
        if endpoint not in ENDPOINTS:
            raise TradesimError(f"openai endpoint {endpoint!r}: expected one of {', '.join(ENDPOINTS)}")
        self.endpoint = endpoint
        self.chat_usable = endpoint != "completions"  # auto: until the server shows otherwise
        self._probe = threading.Lock()  # auto: the first request finds out alone, the others wait for it
        self._probed = endpoint != "auto"
        self.endpoints_used: set[str] = set()
        self.api_key = os.environ.get("TRADESIM_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self._local = threading.local()
        # Everything that changes an answer: the server and model, and how the request is made and read.
        self._fingerprint = json.dumps(
            {
                "backend": "openai",
                "server": self.base_url,
                "model": model,
                "endpoint": {"auto": "chat, else completions"}.get(endpoint, endpoint),
                "top_logprobs": self.top_logprobs,
                "max_tokens": 1,
                "temperature": 0,
                "format": PROMPT_FORMAT_VERSION,
            },
            sort_keys=True,
        )

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def session(self):
        import requests

        if not hasattr(self._local, "session"):
            session = requests.Session()
            if self.api_key:
                session.headers["Authorization"] = f"Bearer {self.api_key}"
            self._local.session = session
        return self._local.session

    def describe(self) -> dict:
        return {**super().describe(), "endpoints": sorted(self.endpoints_used)}

    def post(self, path: str, payload: dict[str, Any], missing_ok: bool = False) -> dict[str, Any]:
        """POST with retries; returns the decoded JSON answer or raises one clear TradesimError
        (`NoChatLogprobs` instead for a missing endpoint when `missing_ok`)."""
        import requests

        url = f"{self.base_url}{path}"
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = self.session.post(url, json=payload, timeout=self.timeout)
                if response.status_code in RETRY_STATUSES:
                    retry_after = response.headers.get("Retry-After")
                    raise ServerAnswerError(f"HTTP {response.status_code}: {response.text[:200]!r}")
                if missing_ok and response.status_code in MISSING_ENDPOINT:
                    raise NoChatLogprobs(f"HTTP {response.status_code}")
                if response.status_code >= 400:
                    raise TradesimError(
                        f"model server {self.base_url} ({self.model}) refused the request: HTTP {response.status_code} {response.text[:200]!r}"
                    )
                try:
                    answer = response.json()
                    if not isinstance(answer, dict) or not answer.get("choices"):
                        raise ValueError("no choices")
                except ValueError:
                    raise ServerAnswerError(f"malformed answer {response.text[:120]!r}") from None
                return answer
            except requests.Timeout:
                last_problem = f"no answer within {self.timeout:g} s"
            except requests.ConnectionError as error:
                last_problem = f"connection failed or dropped ({type(error).__name__})"
            except ServerAnswerError as error:
                last_problem = str(error)
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, retry_after))
        raise TradesimError(
            f"model server {self.base_url} ({self.model}) failed {self.max_retries + 1} times; last answer: {last_problem}"
        )

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), self.max_backoff_s)
            except ValueError:
                pass
        return min(self.backoff_s * 2**attempt, self.max_backoff_s) * random.uniform(0.5, 1.5)

    def _map(self, function, items: Sequence[Any]) -> list[Any]:
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(items)))) as pool:
            return list(pool.map(function, items))

    def request(self, prompt: Prompt, settings: dict[str, Any], logprobs: bool) -> tuple[dict[str, Any], str]:
        """One answer from the chat endpoint while it serves, else from completions: (answer, endpoint)."""
        if not self._probed:
            with self._probe:
                if not self._probed:
                    try:
                        return self._request(prompt, settings, logprobs)
                    finally:
                        self._probed = True
        return self._request(prompt, settings, logprobs)

    def _request(self, prompt: Prompt, settings: dict[str, Any], logprobs: bool) -> tuple[dict[str, Any], str]:
        if self.chat_usable:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else (
                [{"role": "system", "content": prompt.system}] if prompt.system else []
            ) + [{"role": "user", "content": prompt.user}]
            payload = {"model": self.model, "messages": messages, **settings}
            if logprobs:
                payload.update(logprobs=True, top_logprobs=self.top_logprobs)
            try:
                answer = self.post("/chat/completions", payload, missing_ok=True)
                if logprobs and not _chat_top_logprobs(answer):
                    raise NoChatLogprobs("no log-probabilities in the chat answer")
                self.endpoints_used.add("chat")
                return answer, "chat"
            except NoChatLogprobs as reason:
                if self.endpoint == "chat":
                    raise TradesimError(
                        f"model server {self.base_url} ({self.model}): the chat endpoint gave {reason}; use endpoint=completions"
                    ) from None
                self.chat_usable = False
        payload = {"model": self.model, "prompt": prompt_text(prompt), **settings}
        if logprobs:
            payload["logprobs"] = self.top_logprobs
        self.endpoints_used.add("completions")
        return self.post("/completions", payload), "completions"

    def choose_batch(self, prompts: Sequence[Prompt], options: Sequence[str], descriptions: Sequence[str] | None) -> list[Choice]:
        def one(prompt: Prompt) -> Choice:
            answer, endpoint = self.request(prompt, {"max_tokens": 1, "temperature": 0}, logprobs=True)
            try:
                top = _chat_top_logprobs(answer) if endpoint == "chat" else answer["choices"][0]["logprobs"]["top_logprobs"][0]
                tokens = int(answer.get("usage", {}).get("prompt_tokens", 0))
            except (KeyError, IndexError, TypeError):
                top = None
            if not top:
                raise TradesimError(f"model server {self.base_url} ({self.model}) returned no top_logprobs; does it support logprobs?")
            return Choice(probabilities=option_probabilities(top, options, self.base_url).tolist(), prompt_tokens=tokens)

        return self._map(one, list(prompts))

    def generate_batch(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = ()) -> list[Generation]:
        settings: dict[str, Any] = {"max_tokens": max_new_tokens, "temperature": 0}
        if stop:
            settings["stop"] = list(stop)

        def one(prompt: Prompt) -> Generation:
            answer, endpoint = self.request(prompt, settings, logprobs=False)
            choice = answer["choices"][0]
            text = (choice.get("message") or {}).get("content") if endpoint == "chat" else choice.get("text")
            usage = answer.get("usage", {}) or {}
            return Generation(
                text=cut_at_stop(str(text or ""), stop).strip(),  # servers differ on whether the stop is included
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            )

        return self._map(one, list(prompts))


def _chat_top_logprobs(answer: dict[str, Any]) -> dict[str, float] | None:
    """The first answer token's top log-probabilities from a chat answer, as token -> logprob."""
    try:
        first = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        return {item["token"]: float(item["logprob"]) for item in first} or None
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def option_probabilities(top_logprobs: dict[str, float], options: Sequence[str], server: str) -> np.ndarray:
    """Give each option the mass of the top tokens that begin it (case-insensitive), renormalized.

    A likely token that begins several options cannot be attributed from first tokens alone: that
    is an error, never silently equal probabilities. An option none of whose tokens made the top
    list gets the mass of the least likely listed token (an upper bound).
    """
    masses = np.zeros(len(options))
    lowered = [o.strip().lower() for o in options]
    for token, logprob in top_logprobs.items():
        piece = token.strip().lower()
        if not piece:
            continue
        owners = [i for i, option in enumerate(lowered) if option.startswith(piece)]
        if len(owners) > 1:
            raise TradesimError(
                f"model server {server}: the likely token {token!r} begins several options "
                f"({', '.join(options[i] for i in owners)}); use options that start differently"
            )
        if owners:
            masses[owners[0]] += math.exp(logprob)
    if not masses.any():
        raise TradesimError(
            f"model server {server}: none of the top tokens {sorted(top_logprobs, key=top_logprobs.get, reverse=True)[:8]} "
            f"begins an option ({', '.join(options)}); reword the prompt so the answer starts with an option"
        )
    floor = math.exp(min(top_logprobs.values()))
    masses[masses == 0] = floor
    return normalized(np.log(masses))
