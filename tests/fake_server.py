"""A scripted completion server on 127.0.0.1 (stdlib, in a thread) for ServerPolicy's tests.

It speaks llama.cpp's native API (``GET /props``, ``POST /completion``) or the OpenAI one
(``GET /v1/models``, ``POST /v1/completions`` with ``token_ids`` per choice), and its "model" is a
function ``script(prompt, seed, temperature) -> continuation token ids``. Like a real server it
stops at a stop string (the token that completes it is generated; its text is cut), at EOS or at
the token limit, and counts cached prompt tokens as the longest prefix it has seen before.
Faults are scripted per request: ``faults = ["503", "drop", "hang", ...]`` are used up in order.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


class CharTokenizer:
    """id 0 is EOS; ids 1..127 are their ASCII characters; 128 is "a\\nb" (a delimiter inside a
    token); 129 is "ok"."""

    eos_token_id = 0
    EXTRA = {128: "a\nb", 129: "ok"}

    def __len__(self) -> int:
        return 130

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        return "".join(self.EXTRA.get(int(i), chr(int(i)) if 0 < int(i) < 128 else "") for i in ids)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]


Script = Callable[[list[int], int, float], list[int]]


class FakeServer:
    """Start with ``with FakeServer(script) as s:``; ``s.url`` is its base URL."""

    def __init__(self, script: Script, *, api: str = "openai", max_n: int | None = None, token_ids: bool = True,
                 token_prompts: bool = True, slots: int = 4, hang: float = 3.0) -> None:  # fmt: skip
        self.script, self.api, self.max_n, self.token_ids, self.token_prompts = script, api, max_n, token_ids, token_prompts
        self.slots, self.hang = slots, hang
        self.embed: Callable[[list[int]], list[float]] | None = None  # set it to serve /embeddings
        self.faults: list[str] = []
        self.requests: list[dict[str, Any]] = []  # every completion request's body, answered or not
        self.generated = 0  # tokens the "model" produced, answered or not
        self.seen: list[list[int]] = []
        self.lock = threading.Lock()
        self.tok = CharTokenizer()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, status: int, doc: Any) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/props" and server.api == "llama.cpp":
                    self._send(200, {"total_slots": server.slots, "default_generation_settings": {}})
                elif self.path == "/v1/models" and server.api == "openai":
                    self._send(200, {"data": [{"id": "fake-model"}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/embeddings" and server.embed is not None:  # llama.cpp's, pooled: one vector per input
                    with server.lock:
                        server.requests.append(body)
                    return self._send(200, [{"index": i, "embedding": [server.embed(c)]} for i, c in enumerate(body["content"])])
                path = {"llama.cpp": "/completion", "openai": "/v1/completions"}[server.api]
                if self.path != path:
                    return self._send(404, {"error": "not found"})
                with server.lock:
                    server.requests.append(body)
                    fault = server.faults.pop(0) if server.faults else None
                status, doc = server.complete(body)
                if fault == "503":
                    return self._send(503, {"error": "overloaded"})
                if fault == "drop":  # the work was done, the answer never arrives
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "hang":
                    time.sleep(server.hang)
                self._send(status, doc)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def complete(self, body: dict[str, Any]) -> tuple[int, Any]:
        prompt = body["prompt"]
        if not isinstance(prompt, list) or not self.token_prompts:
            if not self.token_prompts and isinstance(prompt, list):
                return 400, {"error": "prompt must be a string"}
            prompt = self.tok.encode(prompt)
        n = int(body.get("n_cmpl", body.get("n", 1)))
        if self.max_n is not None and n > self.max_n:
            return 400, {"error": f"n must be <= {self.max_n}"}
        limit = int(body.get("n_predict", body.get("max_tokens", 16)))
        stops = body.get("stop") or []
        with self.lock:
            cached = max((_common(prompt, p) for p in self.seen), default=0)
            self.seen.append(list(prompt))
        outs = []
        for j in range(n):
            seed = int(body.get("seed", 0)) + (j if self.api == "llama.cpp" else 0)
            full = self.script(list(prompt), seed if self.api == "llama.cpp" else seed * 1000 + j, float(body["temperature"]))
            toks, finish = [], "length"
            for t in full[:limit]:
                toks.append(t)
                if t == 0:
                    finish = "eos"
                    break
                if any(s in self.tok.decode(toks) for s in stops):
                    finish = "word"
                    break
            outs.append((toks, finish))
            with self.lock:
                self.generated += len(toks)
        if self.api == "llama.cpp":
            res = [{"index": j, "tokens": t if body.get("return_tokens") else [], "content": self.tok.decode(t), "stop_type": {"length": "limit"}.get(f, f),
                    "tokens_predicted": len(t), "tokens_evaluated": len(prompt), "tokens_cached": len(prompt) + len(t),
                    "timings": {"cache_n": cached, "prompt_n": len(prompt) - cached, "predicted_n": len(t)},
                    "completion_probabilities": [{"id": x, "logprob": -0.5} for x in t]} for j, (t, f) in enumerate(outs)]  # fmt: skip
            return 200, res[0] if n == 1 else res
        choices = [{"index": j, "text": self.tok.decode(t), "finish_reason": "length" if f == "length" else "stop",
                    "logprobs": {"token_logprobs": [-0.5] * len(t)}, **({"token_ids": t} if self.token_ids else {})}
                   for j, (t, f) in enumerate(outs)]  # fmt: skip
        usage = {"prompt_tokens": len(prompt), "completion_tokens": sum(len(t) for t, _ in outs), "prompt_tokens_details": {"cached_tokens": cached}}
        return 200, {"choices": choices, "usage": usage}

    def __enter__(self) -> "FakeServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
