"""ServerPolicy: next steps from a model behind a serving engine, token ids in and token ids out.

A state goes to the server as its token ids, never as text (re-tokenizing text changes the state:
``decode`` then ``encode`` is not the identity), and a step is built from the token ids the server
returns, cut client-side by the same rule :class:`~.hf.HFPolicy` applies while decoding (the first
token whose text holds the step delimiter, EOS, a stop string; see :mod:`.step_text`), so a
delimiter inside a token is handled and a state is the same whichever policy made it.

Two wire formats, detected at start (``api="auto"``):

- ``"llama.cpp"``: llama.cpp's ``llama-server`` native ``POST /completion`` (``n_cmpl``
  samples, capped at its ``--parallel`` slots, read from ``GET /props``; ``return_tokens``;
  cached prompt tokens in ``timings.cache_n``). Its OpenAI endpoint returns no token ids.
- ``"openai"``: ``POST /v1/completions`` answering token ids per choice in ``token_ids`` (vLLM with
  ``return_token_ids``) and cached prompt tokens in ``usage.prompt_tokens_details``.

A server that takes no token-id prompt or returns no generated token ids is refused at start.

Each node is one request with ``n = k`` (split into several when k exceeds the server's cap), its
seed derived from (policy seed, state) as in-process, and neutral sampling parameters sent
explicitly (llama.cpp's defaults are top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1).
Identical samples become one step with a count. Each problem goes to one server, chosen by a
stable hash of its root, so its prefix cache hits. Usage per node comes from the answers:
generated = sampled tokens; forwarded = prompt - cached + generated.

Not available over a server: hidden states (``Steps.hidden`` is None: score h with a QVM that has
its own backbone, or from an embeddings endpoint, see :mod:`qstar_native.value.remote`), the
calculator (it writes into the decode), and KV pins (the server owns its cache). llama.cpp drops
the stop string's last token from its log-probabilities, so a step cut there carries the
log-probability of the tokens before it.

Example:
    >>> policy = ServerPolicy(["http://127.0.0.1:8080"], tokenizer, num_candidates=4, temperature=0.7)  # doctest: +SKIP
    >>> Searcher(policy.as_expand(), aggregate="min", batch_size=4).search(prompt_ids)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..batch import Batch, Steps
from ..scheduler import PolicyExpand, Scorer
from ..types import Tokens
from .sampling import check_sampling, node_seed
from .step_text import LineStarts, StepText
from .transport import ServerError, ServerRefused, Transport

__all__ = ["ServerError", "ServerPolicy"]

APIS = ("auto", "llama.cpp", "openai")


@dataclass
class _Answer:
    """One request's samples and usage."""

    node: int
    samples: list[tuple[np.ndarray, np.ndarray | None, str]]  # tokens, per-token logprobs, server finish ("stop" / "length")
    prompt: int
    cached: int
    generated: int


@dataclass
class _Server:
    url: str
    api: str
    model: str | None
    max_n: int | None


class ServerPolicy:
    """Proposes next steps with a model behind one or more serving engines (see the module docstring).

    Args:
        urls: base URLs (``http://host:port``), one per server; problems are spread over them.
        tokenizer: the served model's tokenizer (decodes the returned ids; its EOS ends a step).
        step_delimiter, stop_strings, is_terminal, max_step_tokens, num_candidates, temperature,
            top_p, min_p, greedy_first, seed: as for :class:`~.hf.HFPolicy`.
        api: ``"auto"`` (llama.cpp if ``GET /props`` answers, else OpenAI), ``"llama.cpp"`` or ``"openai"``.
        model: the model name sent with OpenAI requests (default: the first of ``GET /v1/models``).
        max_n: samples one request may ask for (default: llama.cpp's slot count, else unlimited).
        max_in_flight: requests in flight at once, over all servers.
        timeout, retries, backoff, api_key: see :class:`~.transport.Transport`.
        vocab_size: ids the tokenizer decodes (default ``len(tokenizer)``).
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        tokenizer: Any,
        *,
        step_delimiter: str = "\n",
        num_candidates: int = 4,
        temperature: float = 1.0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        greedy_first: bool = False,
        max_step_tokens: int = 64,
        stop_strings: Sequence[str] = (),
        is_terminal: Callable[[str], bool] | None = None,
        seed: int = 0,
        api: str = "auto",
        model: str | None = None,
        max_n: int | None = None,
        max_in_flight: int = 32,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 0.5,
        api_key: str | None = None,
        vocab_size: int | None = None,
    ) -> None:
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise ValueError(f"urls must be one or more server base URLs, e.g. ['http://127.0.0.1:8080'], got {urls!r}")
        if api not in APIS:
            raise ValueError(f"api={api!r}; pick one of {APIS}")
        for name, v, low in (("num_candidates", num_candidates, 1), ("max_step_tokens", max_step_tokens, 1), ("max_in_flight", max_in_flight, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
        if max_n is not None and (isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1):
            raise ValueError(f"max_n must be an int >= 1 or None, got {max_n!r}")
        check_sampling(temperature, top_p, min_p)
        self.tokenizer = tokenizer
        self.text = StepText(tokenizer, vocab_size=len(tokenizer) if vocab_size is None else vocab_size, step_delimiter=step_delimiter,
                             stop_strings=stop_strings, is_terminal=is_terminal)  # fmt: skip
        self.num_candidates, self.temperature, self.seed = num_candidates, float(temperature), int(seed)
        self.top_p, self.min_p, self.greedy_first = float(top_p), float(min_p), bool(greedy_first)
        self.max_step_tokens = max_step_tokens
        self.transport = Transport(timeout=timeout, retries=retries, backoff=backoff, api_key=api_key)
        self.cache = None  # the servers own their KV caches; engines pin nothing
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="qstar-server")
        self.servers = [self._connect(u.rstrip("/"), api, model, max_n) for u in urls]
        self.reset_counters()

    # ---- setup -----------------------------------------------------------------------------

    def _connect(self, url: str, api: str, model: str | None, max_n: int | None) -> _Server:
        """Finds the server's wire format and cap, then checks it takes a token-id prompt and
        returns token ids (one 1-token request)."""
        props = None
        if api in ("auto", "llama.cpp"):
            try:
                props = self.transport.get(url, "/props")
            except ServerRefused:  # no such endpoint: not llama.cpp
                pass
        if isinstance(props, dict) and "total_slots" in props:
            server = _Server(url, "llama.cpp", None, max_n or int(props["total_slots"]) or None)
        elif api == "llama.cpp":
            raise ServerError(f"{url}/props did not answer as llama.cpp's llama-server does; use api='openai' for other servers")
        else:
            if model is None:  # servers that serve one model take requests without a name
                try:
                    listed = self.transport.get(url, "/v1/models")
                except ServerRefused:
                    listed = None
                data = listed.get("data") if isinstance(listed, dict) else None
                model = str(data[0]["id"]) if data and isinstance(data[0], dict) and "id" in data[0] else None
            server = _Server(url, "openai", model, max_n)
        probe = np.asarray(self.tokenizer.encode("1", add_special_tokens=False) if hasattr(self.tokenizer, "encode") else [1], np.int64)[:1]
        try:
            answer = self._request(server, 0, probe, n=1, temperature=0.0, seed=0, max_tokens=1)
        except ServerRefused as e:
            raise ServerError(f"{url} refused a token-id prompt ({e}); qstar_native sends token ids, never re-tokenized text: "
                              "use llama.cpp's llama-server, vLLM or another server that takes them") from None  # fmt: skip
        if len(answer.samples[0][0]) == 0:  # one token was asked for: an empty list means the server sends none
            _ints(url, server.api, None)
        return server

    def reset_counters(self) -> None:
        """Zeroes ``tokens_generated``, ``tokens_forwarded``, ``prompt_tokens`` and ``cache_hit_tokens``."""
        self.tokens_generated = self.tokens_forwarded = self.prompt_tokens = self.cache_hit_tokens = 0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "ServerPolicy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decode(self, ids: Tokens) -> str:
        """Token ids -> text, EOS left out."""
        return self.text.decode(ids)

    def as_expand(self, scorer: Scorer | None = None) -> PolicyExpand:
        """An expand callback for :class:`~qstar_native.Searcher` and the scheduler (see :meth:`HFPolicy.as_expand`)."""
        return PolicyExpand(self, scorer)

    def server_of(self, root: np.ndarray) -> int:
        """The server a problem goes to: a stable hash of its root's tokens."""
        if len(self.servers) == 1:
            return 0
        digest = hashlib.blake2b(np.asarray(root, np.int64).tobytes(), digest_size=8).digest()
        return int.from_bytes(digest, "little") % len(self.servers)

    # ---- the policy ------------------------------------------------------------------------

    def propose(self, batch: Batch | Sequence[Tokens]) -> Steps:
        """The distinct next steps of each node (a :class:`Batch`, or bare token states that use
        this policy's ``num_candidates``, ``temperature`` and ``seed``)."""
        if not isinstance(batch, Batch):
            batch = Batch.of_states(batch, k=self.num_candidates, temperature=self.temperature, seed=self.seed)
        n = len(batch)
        if n == 0:
            return Steps.empty(0)
        k = np.asarray(batch.k, np.int64)
        temperature = np.asarray(batch.temperature, np.float64)
        if (k < 1).any():
            raise ValueError(f"batch.k must be >= 1 for every node, got {k.tolist()}")
        if not np.isfinite(temperature).all() or (temperature < 0).any():
            raise ValueError(f"batch.temperature must be finite and >= 0 for every node, got {temperature.tolist()}")
        states = [batch.state(i) for i in range(n)]
        if any(len(s) == 0 for s in states):
            raise ValueError("a node has no tokens; a state needs at least the prompt's tokens")
        roots = batch.root_lengths()
        futures: list[Future[_Answer]] = []
        try:
            for i, s in enumerate(states):
                server = self.servers[self.server_of(s[: roots[i]] if roots[i] else s)]
                seed = node_seed(int(batch.seed[i]), s)
                greedy = bool(batch.greedy_first[i]) or self.greedy_first
                for n_i, t, sd in self._requests(int(k[i]), float(temperature[i]), seed, server.max_n, greedy):
                    futures.append(self._pool.submit(self._request, server, i, s, n=n_i, temperature=t, seed=sd, max_tokens=self.max_step_tokens))
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    raise f.exception()  # type: ignore[misc]
            answers = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return self._steps(n, states, answers)

    def _requests(self, k: int, temperature: float, seed: int, cap: int | None, greedy_first: bool) -> list[tuple[int, float, int]]:
        """(n, temperature, seed) of each request for one node: the greedy sample first when
        asked, the rest split at the server's cap, seeds spaced so no two samples share one."""
        out = []
        if greedy_first and temperature > 0:
            out.append((1, 0.0, seed % 2**31))
            k -= 1
        step = cap or k or 1
        for j, lo in enumerate(range(0, k, step)):
            out.append((min(step, k - lo), temperature, (seed + 1 + j * step) % 2**31))
        return out

    def _steps(self, n: int, states: list[np.ndarray], answers: list[_Answer]) -> Steps:
        per_node: list[dict[bytes, list[Any]]] = [{} for _ in range(n)]
        generated = np.zeros(n, np.int64)
        forwarded = np.zeros(n, np.int64)
        for a in answers:
            generated[a.node] += a.generated
            forwarded[a.node] += a.prompt - a.cached + a.generated
            self.prompt_tokens += a.prompt
            self.cache_hit_tokens += a.cached
            groups = per_node[a.node]
            for tokens, logprobs, server_finish in a.samples:
                length, finish = self.text.cut(tokens)
                if finish == "length" and server_finish == "stop" and length < self.max_step_tokens:
                    finish = "eos"  # the server ended the sequence on a token it does not return (an end-of-turn id)
                if length == 0:
                    continue
                step = tokens[:length]
                key = step.tobytes()
                if key in groups:
                    groups[key][1] += 1
                else:
                    lp = float(np.sum(logprobs[:length])) if logprobs is not None else 0.0
                    groups[key] = [step, 1, lp, finish]
        self.tokens_generated += int(generated.sum())
        self.tokens_forwarded += int(forwarded.sum())
        starts = LineStarts(self.text, states)
        counts, toks, count, logprob, texts, terminal, finishes = [], [], [], [], [], [], []
        for i, groups in enumerate(per_node):
            counts.append(len(groups))
            for step, c, lp, finish in groups.values():
                text = self.text.decode(step)
                toks.append(step)
                count.append(c)
                logprob.append(lp)
                texts.append(text)
                finishes.append(finish)
                terminal.append(self.text.terminal(finish, text, lambda: starts[i]))  # noqa: B023 - called at once
        return Steps(
            num_children=np.array(counts, np.int64),
            tokens=np.concatenate(toks).astype(np.int32) if toks else np.zeros(0, np.int32),
            lengths=np.array([len(t) for t in toks], np.int64),
            terminal=np.array(terminal, np.bool_),
            count=np.array(count, np.int64),
            logprob=np.array(logprob, np.float64),
            texts=texts,
            generated=generated,
            forwarded=forwarded,
            finish=finishes,
        )

    # ---- the wire --------------------------------------------------------------------------

    def _sampling(self, temperature: float) -> dict[str, Any]:
        return {"temperature": temperature, "top_p": self.top_p, "min_p": self.min_p, "presence_penalty": 0.0, "frequency_penalty": 0.0}

    def _request(self, server: _Server, node: int, state: np.ndarray, *, n: int, temperature: float, seed: int, max_tokens: int) -> _Answer:
        prompt = [int(t) for t in state]
        if server.api == "llama.cpp":
            body = {"prompt": prompt, "n_predict": max_tokens, "n_cmpl": n, "seed": seed, "cache_prompt": True, "return_tokens": True,
                    "n_probs": 1, "stop": [self.text.step_delimiter, *self.text.stop_strings], **self._sampling(temperature),
                    # neutral: llama.cpp's defaults would reshape the distribution (top-k 40, repeat penalty 1.1, DRY, XTC)
                    "top_k": 0, "typical_p": 1.0, "repeat_penalty": 1.0, "repeat_last_n": 0, "dry_multiplier": 0.0,
                    "xtc_probability": 0.0, "mirostat": 0, "samplers": ["temperature", "min_p", "top_p"]}  # fmt: skip
            return _parse_llama(server.url, node, self.transport.post(server.url, "/completion", body), n)
        body = {"prompt": prompt, "max_tokens": max_tokens, "n": n, "seed": seed, "logprobs": 1, "return_token_ids": True,
                "stop": [self.text.step_delimiter, *self.text.stop_strings], "include_stop_str_in_output": True,
                "skip_special_tokens": False, "top_k": -1, "repetition_penalty": 1.0, **self._sampling(temperature)}  # fmt: skip
        if server.model is not None:
            body["model"] = server.model
        return _parse_openai(server.url, node, self.transport.post(server.url, "/v1/completions", body), n)


def _ints(url: str, api: str, x: Any) -> np.ndarray:
    """A sample's generated token ids; ServerError when the answer has none (a text-only server)."""
    if not isinstance(x, list) or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31 for t in x):
        raise ServerError(f"{url} returns no generated token ids ({api} API); qstar_native builds steps from token ids: use "
                          "llama.cpp's llama-server (/completion) or vLLM (return_token_ids)")  # fmt: skip
    return np.array(x, np.int32)


def _bad(url: str, what: str) -> ServerError:
    return ServerError(f"{url} answered a completion without {what}; is it an OpenAI-compatible completion server?")


def _parse_openai(url: str, node: int, doc: Any, n: int) -> _Answer:
    choices = doc.get("choices") if isinstance(doc, dict) else None
    if not isinstance(choices, list) or len(choices) != n:
        raise _bad(url, f"{n} choices")
    samples = []
    for c in sorted(choices, key=lambda c: c.get("index", 0)):
        lp = (c.get("logprobs") or {}).get("token_logprobs")
        logprobs = np.array([x if isinstance(x, (int, float)) else 0.0 for x in lp], np.float64) if isinstance(lp, list) else None
        samples.append((_ints(url, "openai", c.get("token_ids")), logprobs, "length" if c.get("finish_reason") == "length" else "stop"))
    usage = doc.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    generated = sum(len(s[0]) for s in samples)
    return _Answer(node, samples, int(usage.get("prompt_tokens") or 0), int(details.get("cached_tokens") or 0),
                   int(usage.get("completion_tokens") or generated))  # fmt: skip


def _parse_llama(url: str, node: int, doc: Any, n: int) -> _Answer:
    results = doc if isinstance(doc, list) else [doc]
    if len(results) != n or not all(isinstance(r, dict) for r in results):
        raise _bad(url, f"{n} results")
    samples = []
    for r in sorted(results, key=lambda r: r.get("index", 0)):
        probs = r.get("completion_probabilities")
        logprobs = np.array([p.get("logprob", 0.0) for p in probs], np.float64) if isinstance(probs, list) else None
        samples.append((_ints(url, "llama.cpp", r.get("tokens")), logprobs, "length" if r.get("stop_type") == "limit" else "stop"))
    first = results[0]  # the samples share one prompt pass; "timings" counts its cached and computed prompt tokens
    timings = first.get("timings") or {}
    return _Answer(node, samples, int(first.get("tokens_evaluated") or 0), int(timings.get("cache_n") or 0),
                   sum(int(r.get("tokens_predicted") or 0) for r in results))  # fmt: skip
