"""A small OpenAI-wire-format server on 127.0.0.1 that can misbehave on request."""

import hashlib
import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def optimism(prompt):
    return 0.05 + 0.9 * int(hashlib.sha256(prompt.encode()).hexdigest()[:4], 16) / 0xFFFF


class FakeServer:
    """Answers /v1/completions and /v1/chat/completions (`chat`: "logprobs" with log-probabilities,
    "plain" without them, "missing" for 404); `faults` is a queue of misbehaviours served first."""

    def __init__(self):
        self.faults = []
        self.requests = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        self.chat = "logprobs"
        self.scorer = None  # prompt -> {token: logprob}: a scripted model's first-token answer
        self.writer = None  # prompt -> text: a scripted model's generation
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
                chat = self.path.endswith("/chat/completions")
                if chat and server.chat == "missing":
                    return self.send(404, b'{"error": "not found"}')
                prompt = "\n\n".join(m["content"] for m in body["messages"]) if chat else body["prompt"]
                if body.get("logprobs"):
                    p = optimism(prompt)
                    top = {" Optim": math.log(p * 0.7), "Opt": math.log(p * 0.2), " Pess": math.log((1 - p) * 0.9), " The": math.log(0.01)}
                    if server.scorer is not None:
                        top = server.scorer(prompt)
                    if not chat:
                        choice = {"text": " Optim", "logprobs": {"top_logprobs": [top]}}
                    elif server.chat == "plain":
                        choice = {"message": {"role": "assistant", "content": "Optim"}}
                    else:
                        listed = [{"token": t, "logprob": v} for t, v in top.items()]
                        best = max(top, key=top.get)
                        choice = {"message": {"role": "assistant", "content": best.strip()}, "logprobs": {"content": [{"token": best, "logprob": top[best], "top_logprobs": listed}]}}
                else:
                    text = " a reason " + prompt[-5:] + " | after the stop" if server.writer is None else server.writer(prompt)
                    for stop in body.get("stop") or ["|"]:
                        text = text.split(stop)[0] if stop in text else text
                    choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
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
