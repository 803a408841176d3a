"""HFPolicy: proposes next reasoning steps with a Hugging Face causal LM, computing each token's KV once.

One ``propose(nodes)`` call is one batch:

1. Prefill. Each node's state is matched against the prefix cache; only the uncached suffixes run
   through the model, in one ragged batch on top of the cached prefixes gathered from the KV pool
   (layout in :mod:`.runner`). The suffixes' KV is scattered into freshly allocated pool slots and
   inserted into the cache.
2. Decode. The K samples of every node are decoded together, one model call per token for the whole
   batch. Samples that drew the same tokens so far share one row (a row carries a multiplicity and
   splits when its draws differ), so identical prefixes of sibling candidates are computed once and
   identical candidates come out deduplicated, with ``Candidate.count`` saying how many of the K
   samples they stand for. A row stops at the first token whose text contains the step delimiter
   (kept), at EOS, at a stop string, or after ``max_step_tokens``.
3. Write-back. A finished candidate's KV (its state minus the last token, which was sampled but
   never fed; with ``return_hidden=True`` the last token is fed once more, for its hidden state)
   goes into the pool and cache, and the child's state is pinned, so expanding it later forwards
   only its last token.

Pinning: every node of a batch is pinned while the batch runs, so allocations in the batch never
evict KV it uses; slots the batch allocated are freed if it fails. Children stay pinned while
they are open; a node's pin is dropped when it is expanded. NOTE: pruned or never-expanded children
keep their pins until the pool runs out; then all frontier pins are dropped at once (their KV
becomes LRU-evictable, not lost) and the allocation is retried. Call :meth:`HFPolicy.release_pins`
between searches.

Accounting: ``tokens_forwarded`` counts every real (non-pad) token run through the model. Over a
search it is at most the search tree's distinct tokens (:func:`tree_tokens`), plus one token per
expanded node with ``return_hidden=True``, plus any evicted KV recomputed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from transformers import DynamicCache

from ..engine import Engine, as_tokens
from ..searcher import ExpandFn
from ..types import Child, Node, Tokens
from ..prefix_cache import CacheFullError, PrefixCache
from .kv_pool import KVPool, blocks_for_capacity
from .runner import ModelRunner
from .sampling import draw, node_seed, sampling_probs

FinishReason = Literal["delimiter", "eos", "stop", "length"]
Scorer = Callable[[list[Node], list[list["Candidate"]]], tuple[Sequence[Sequence[float]], Sequence[Sequence[float]]]]
DEFAULT_KV_CAPACITY = 256 * 2**20


class KVCapacityError(MemoryError):
    """The KV pool cannot hold one batch's uncached tokens even after evicting everything unpinned."""


@dataclass(frozen=True)
class Candidate:
    """One proposed next step of a node.

    ``logprob`` is the sum over the step's tokens of the raw model's log-probabilities
    (temperature 1, no top-p), so it does not depend on the sampling settings and can serve as a
    step reward R(s). ``count`` is how many of the K samples drew this exact step. ``hidden`` (with
    ``return_hidden=True``) is the final hidden state at the step's last token, post final norm
    (the LM head's input), for a Q-value head.
    """

    tokens: np.ndarray
    text: str
    logprob: float
    terminal: bool
    finish: FinishReason
    count: int = 1
    hidden: torch.Tensor | None = field(default=None, repr=False)


def stack_hidden(candidates: Sequence[Candidate]) -> torch.Tensor:
    """``[num_candidates, hidden]`` from candidates proposed with ``return_hidden=True``."""
    if any(c.hidden is None for c in candidates):
        raise ValueError("candidates carry no hidden state; create the HFPolicy with return_hidden=True")
    return torch.stack([c.hidden for c in candidates])


def tree_tokens(engine: Engine) -> int:
    """Distinct tokens of a search tree: the root's tokens plus every node's step tokens."""
    return len(engine.state_tokens(0)) + sum(len(engine.step_tokens(n)) for n in range(1, engine.num_nodes))


@dataclass
class _Row:
    node: int
    mult: int
    toks: list[int]
    logprob: float
    finish: FinishReason | None = None


class HFPolicy:
    """Samples K candidate next steps per node with any full-attention ``AutoModelForCausalLM``.

    Args:
        model: the policy model (eval mode is set). Llama, Qwen2, GPT-2 and other full-attention
            families share KV; a model whose cache cannot be gathered this way (checked on the model
            at construction) is run with full recompute, with a warning.
        tokenizer: needs ``decode(list[int]) -> str`` and ``eos_token_id`` (int, list or None).
        step_delimiter: a step ends at the first token whose decoded text contains it.
        num_candidates: K samples per node.
        temperature: 0 is greedy (one candidate per node, ``count == K``).
        top_p: nucleus sampling mass.
        max_step_tokens: a step longer than this is cut (``finish == "length"``).
        stop_strings: a step whose text contains one ends there and is terminal.
        is_terminal: ``f(step_text) -> bool`` marks further finished steps terminal (answer markers).
        kv_capacity / kv_blocks: pool size in bytes or in blocks (one of them; default 256 MiB).
        block_size: tokens per pool block; 1 recomputes nothing, larger ones recompute up to
            ``block_size - 1`` tokens of each state.
        seed: candidates of a node depend only on (seed, node tokens).
        return_hidden: fill ``Candidate.hidden``.
        prefix_sharing: False recomputes every node's full prefix (the baseline for benchmarks).

    Example:
        >>> policy = HFPolicy(model, tokenizer, num_candidates=4, temperature=0.7)  # doctest: +SKIP
        >>> Searcher(policy.as_expand(), aggregate="sum", batch_size=4).search(prompt_ids)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: object,
        *,
        step_delimiter: str = "\n",
        num_candidates: int = 4,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_step_tokens: int = 64,
        stop_strings: Sequence[str] = (),
        is_terminal: Callable[[str], bool] | None = None,
        kv_capacity: int | None = None,
        kv_blocks: int | None = None,
        block_size: int = 1,
        seed: int = 0,
        return_hidden: bool = False,
        prefix_sharing: bool = True,
    ) -> None:
        _check_int(num_candidates, "num_candidates", 1)
        _check_int(max_step_tokens, "max_step_tokens", 1)
        _check_int(block_size, "block_size", 1)
        if not step_delimiter:
            raise ValueError("step_delimiter must be a non-empty string, e.g. '\\n'")
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature} and {top_p}")
        if not hasattr(tokenizer, "decode"):
            raise TypeError("tokenizer must have decode(list[int]) -> str (any Hugging Face tokenizer does)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.step_delimiter = step_delimiter
        self.num_candidates = num_candidates
        self.temperature, self.top_p = float(temperature), float(top_p)
        self.max_step_tokens = max_step_tokens
        self.stop_strings = tuple(stop_strings)
        self.is_terminal = is_terminal
        self.seed = seed
        self.return_hidden = return_hidden
        eos = getattr(tokenizer, "eos_token_id", None)
        eos = getattr(model.config, "eos_token_id", None) if eos is None else eos
        self.eos_ids = frozenset([] if eos is None else [eos] if isinstance(eos, int) else eos)
        self._token_text: dict[int, str] = {}

        self.runner = ModelRunner(model)
        vocab = model.get_input_embeddings().num_embeddings
        probe = self.runner.probe(vocab)
        self.sharing = prefix_sharing and probe.shares_kv
        if prefix_sharing and not probe.shares_kv:
            warnings.warn(
                f"HFPolicy: cannot share KV for {type(model).__name__} ({probe.reason}); "
                "recomputing every node's full prefix instead",
                RuntimeWarning,
                stacklevel=2,
            )
        self.pool: KVPool | None = None
        self.cache: PrefixCache | None = None
        if self.sharing:
            if kv_capacity is None and kv_blocks is None:
                kv_capacity = DEFAULT_KV_CAPACITY
            nblocks = blocks_for_capacity(
                probe.layer_shapes, probe.dtype, block_size, kv_capacity=kv_capacity, kv_blocks=kv_blocks
            )
            self.pool = KVPool(probe.layer_shapes, nblocks, block_size, dtype=probe.dtype, device=self.runner.device)
            self.cache = PrefixCache(nblocks, block_size)
        self._frontier: dict[bytes, list[int]] = {}
        self.reset_counters()

    # ---- counters and pins -----------------------------------------------------------------

    def reset_counters(self) -> None:
        """Zeroes ``tokens_forwarded`` (= ``prefill_tokens + decode_tokens``), ``tokens_generated``,
        ``cache_hit_tokens``, ``forward_calls``, ``writeback_skipped`` and ``pins_dropped``."""
        self.prefill_tokens = self.decode_tokens = self.tokens_generated = 0
        self.cache_hit_tokens = self.forward_calls = self.writeback_skipped = self.pins_dropped = 0

    @property
    def tokens_forwarded(self) -> int:
        return self.prefill_tokens + self.decode_tokens

    def release_pins(self) -> None:
        """Unpins every open child's state (e.g. after a search); their KV stays, LRU-evictable."""
        if self.cache is None:
            return
        for handles in self._frontier.values():
            for h in handles:
                self.cache.unpin(h)
        self._frontier.clear()

    def reset_cache(self) -> None:
        """Forgets every cached prefix (and pin); the pool stays allocated. For benchmarks and
        tests that need a cold start."""
        if self.cache is not None:
            self._frontier.clear()
            self.cache = PrefixCache(self.pool.num_blocks, self.pool.block_size)

    def _allocate(self, n: int) -> np.ndarray:
        try:
            return np.asarray(self.cache.allocate(n), dtype=np.int64)
        except CacheFullError:
            if not self._frontier:
                raise
        self.pins_dropped += sum(len(h) for h in self._frontier.values())
        self.release_pins()
        return np.asarray(self.cache.allocate(n), dtype=np.int64)

    # ---- the policy ------------------------------------------------------------------------

    def as_expand(self, scorer: Scorer | None = None) -> ExpandFn:
        """An expand callback for :class:`~qstar_native.Searcher`.

        ``scorer(nodes, candidates) -> (rewards, q)`` (one list per node) scores the candidates;
        without one, reward = the step's log-probability and q = 0.
        """

        def expand(nodes: list[Node]) -> list[list[Child]]:
            cands = self.propose(nodes)
            if scorer is None:
                rewards = [[c.logprob for c in cs] for cs in cands]
                qs = [[0.0] * len(cs) for cs in cands]
            else:
                rewards, qs = scorer(nodes, cands)
            return [
                [Child(c.tokens, reward=float(r), q=float(q), terminal=c.terminal) for c, r, q in zip(cs, rs, qq)]
                for cs, rs, qq in zip(cands, rewards, qs)
            ]

        return expand

    def propose(self, nodes: Sequence[Node | Tokens]) -> list[list[Candidate]]:
        """Up to K distinct candidate next steps for each node (a Node or its state's tokens)."""
        seqs = [as_tokens(n.tokens if isinstance(n, Node) else n, f"tokens of node {i}") for i, n in enumerate(nodes)]
        for i, s in enumerate(seqs):
            if len(s) == 0:
                raise ValueError(f"node {i} has no tokens; a state needs at least the prompt's tokens")
        if not seqs:
            return []
        pins: list[int] = []
        try:
            st = self._prefill(seqs, pins, want_all=False)
            return self._decode(seqs, st)
        finally:
            for h in pins:
                self.cache.unpin(h)

    @torch.inference_mode()
    def forward_logits(self, seqs: Sequence[Tokens]) -> list[tuple[int, torch.Tensor]]:
        """Runs states through the cache path like a prefill and returns, per state, ``(start,
        logits)``: the logits of positions ``start..len-1``, where ``start`` tokens came from
        cached KV. For exactness tests: they must equal a full forward's ``logits[start:]``."""
        seqs = [as_tokens(s, f"seqs[{i}]") for i, s in enumerate(seqs)]
        pins: list[int] = []
        try:
            st = self._prefill(seqs, pins, want_all=True)
        finally:
            for h in pins:
                self.cache.unpin(h)
        return [(st.start[i], st.all_logits[i]) for i in range(len(seqs))]

    # ---- prefill ---------------------------------------------------------------------------

    def _prefill(self, seqs: list[np.ndarray], pins: list[int], want_all: bool) -> "_Batch":
        n = len(seqs)
        dev = self.runner.device
        start, prefix_slots, owned = [0] * n, [np.zeros(0, np.int64)] * n, [np.zeros(0, np.int64)] * n
        try:
            if self.sharing:
                bs = self.pool.block_size
                pins.extend(self.cache.pin(s) for s in seqs)  # before any allocate: nothing matched can go
                for i, s in enumerate(seqs):
                    m = self.cache.match(s)
                    start[i] = min(int(m.length), ((len(s) - 1) // bs) * bs)  # keep >= 1 token for logits
                    prefix_slots[i] = np.asarray(m.slots, dtype=np.int64)[: start[i]]
                for i, s in enumerate(seqs):
                    owned[i] = self._allocate_batch(len(s) - start[i], seqs, start)
            suffix = [len(s) - p for s, p in zip(seqs, start)]
            P, S = max(start), max(suffix)
            ids = torch.zeros(n, S, dtype=torch.long)
            mask = torch.zeros(n, P + S, dtype=torch.long)
            pos = torch.zeros(n, S, dtype=torch.long)
            for i, (s, p, k) in enumerate(zip(seqs, start, suffix)):
                ids[i, :k] = torch.from_numpy(s[p:].astype(np.int64))
                mask[i, :p] = 1
                mask[i, P : P + k] = 1
                pos[i] = p + torch.arange(S)
            cache = self._gathered_cache(prefix_slots, P)
            suf_rows = torch.cat([torch.full((k,), i) for i, k in enumerate(suffix)])
            suf_cols = torch.cat([torch.arange(k) for k in suffix])
            if want_all:
                rows, cols = suf_rows, suf_cols
            else:
                rows, cols = torch.arange(n), torch.tensor(suffix) - 1
            logits, _ = self.runner.run(ids.to(dev), mask.to(dev), pos.to(dev), cache, rows, cols)
            self.forward_calls += 1
            self.prefill_tokens += sum(suffix)
            self.cache_hit_tokens += sum(start)
            if self.sharing:
                kv = [(k[suf_rows, :, P + suf_cols], v[suf_rows, :, P + suf_cols]) for k, v in ModelRunner.layer_kv(cache)]
                self.pool.scatter(torch.from_numpy(np.concatenate(owned)), kv)
                for i, s in enumerate(seqs):
                    self.cache.insert(s, np.concatenate([prefix_slots[i], owned[i]]))
                    owned[i] = np.zeros(0, np.int64)  # the cache owns (or freed) them now
                    pins.append(self.cache.pin(s))
                    for h in self._frontier.pop(s.tobytes(), []):  # the node is expanded: its own pin goes
                        self.cache.unpin(h)
        except BaseException:
            for o in owned:
                if len(o):
                    self.cache.free(o)
            raise
        if want_all:
            splits = list(torch.split(logits, suffix))
        else:
            splits = []
        return _Batch(cache=cache, mask=mask.to(dev), next_pos=torch.tensor([len(s) for s in seqs]),
                      logits=logits, start=start, P=P, S=S, all_logits=splits)

    def _allocate_batch(self, n: int, seqs: list[np.ndarray], start: list[int]) -> np.ndarray:
        try:
            return self._allocate(n)
        except CacheFullError as err:
            pool, bs = self.pool, self.pool.block_size
            need = sum(-(-len(s) // bs) for s in seqs)  # whole states: the cached part is pinned
            uncached = sum(len(s) - p for s, p in zip(seqs, start))
            raise KVCapacityError(
                f"the KV pool ({pool.num_blocks} blocks of {bs} tokens, {pool.nbytes} bytes) cannot hold "
                f"one batch: its {len(seqs)} states take {need} blocks ({uncached} tokens uncached) and "
                f"nothing else can be evicted; raise kv_capacity to at least {2 * need * bs * pool.bytes_per_slot} "
                f"bytes (kv_blocks={2 * need}) or expand fewer nodes per batch (Searcher batch_size)"
            ) from err

    def _gathered_cache(self, prefix_slots: list[np.ndarray], P: int) -> DynamicCache:
        n = len(prefix_slots)
        if not self.sharing:
            return DynamicCache(config=self.model.config)
        if P == 0:
            dt, dev = self.pool.dtype, self.runner.device
            return ModelRunner.cache_from([(torch.zeros(n, h, 0, d, dtype=dt, device=dev),) * 2 for h, d in self.pool.layer_shapes])
        idx = torch.zeros(n, P, dtype=torch.long)
        for i, sl in enumerate(prefix_slots):
            idx[i, : len(sl)] = torch.from_numpy(sl)
        return ModelRunner.cache_from([(k.transpose(1, 2), v.transpose(1, 2)) for k, v in self.pool.gather(idx)])

    # ---- decode ----------------------------------------------------------------------------

    def _text(self, tok: int) -> str:
        t = self._token_text.get(tok)
        if t is None:
            t = self._token_text[tok] = self.tokenizer.decode([tok])
        return t

    def _finish(self, row: _Row) -> FinishReason | None:
        tok = row.toks[-1]
        if tok in self.eos_ids:
            return "eos"
        if self.step_delimiter in self._text(tok):
            return "delimiter"
        if self.stop_strings:
            text = self.tokenizer.decode(row.toks)
            if any(s in text for s in self.stop_strings):
                return "stop"
        if len(row.toks) >= self.max_step_tokens:
            return "length"
        return None

    def _decode(self, seqs: list[np.ndarray], st: "_Batch") -> list[list[Candidate]]:
        greedy = self.temperature == 0
        gens = [] if greedy else [torch.Generator().manual_seed(node_seed(self.seed, s)) for s in seqs]
        rows = [_Row(i, self.num_candidates, [], 0.0) for i in range(len(seqs))]
        out: list[list[Candidate]] = [[] for _ in seqs]
        cache, mask, next_pos, logits = st.cache, st.mask, st.next_pos, st.logits
        base = st.P + st.S
        while True:
            logp = torch.log_softmax(logits.float(), dim=-1)
            probs = None if greedy else sampling_probs(logits, self.temperature, self.top_p)
            parents: list[int] = []
            new_rows: list[_Row] = []
            finishing: list[int] = []  # indices into new_rows fed once more for their hidden state
            for r, row in enumerate(rows):
                if row.finish is not None:
                    continue
                picks = [(int(logp[r].argmax()), row.mult)] if greedy else draw(probs[r], row.mult, gens[row.node])
                for tok, count in picks:
                    child = _Row(row.node, count, row.toks + [tok], row.logprob + float(logp[r, tok]))
                    child.finish = self._finish(child)
                    self.tokens_generated += 1
                    if child.finish is None or self.return_hidden:
                        if child.finish is not None:
                            finishing.append(len(new_rows))
                        parents.append(r)
                        new_rows.append(child)
                    else:
                        out[child.node].append(self._candidate(child, None))
                        if self.sharing:
                            self._write_back(seqs, st, cache, r, child, len(child.toks) - 1, base)
            if not new_rows:
                break
            sel = torch.tensor(parents)
            if parents != list(range(len(rows))):  # rows finished or split: reindex (copies the cache)
                cache.batch_select_indices(sel.to(mask.device))
                mask, next_pos = mask[sel], next_pos[sel]
            mask = torch.cat([mask, torch.ones(len(sel), 1, dtype=mask.dtype, device=mask.device)], dim=1)
            pos = next_pos
            ids = torch.tensor([[row.toks[-1]] for row in new_rows])
            dev = self.runner.device
            n = len(new_rows)
            logits, hidden = self.runner.run(ids.to(dev), mask, pos[:, None].to(dev), cache, torch.arange(n), torch.zeros(n, dtype=torch.long))
            self.forward_calls += 1
            self.decode_tokens += n
            next_pos = pos + 1
            for j in finishing:
                row = new_rows[j]
                out[row.node].append(self._candidate(row, hidden[j].detach().clone()))
                if self.sharing:
                    self._write_back(seqs, st, cache, j, row, len(row.toks), base)
            rows = new_rows
        return out

    def _candidate(self, row: _Row, hidden: torch.Tensor | None) -> Candidate:
        # The EOS token stays in the tokens (the state must end where the model ended it) but not
        # in the text: "</s>" is no part of the answer a task reads.
        text = self.tokenizer.decode(row.toks[:-1] if row.finish == "eos" else row.toks)
        terminal = row.finish in ("eos", "stop") or (self.is_terminal is not None and bool(self.is_terminal(text)))
        return Candidate(np.asarray(row.toks, dtype=np.int32), text, row.logprob, terminal, row.finish, row.mult, hidden)

    def _write_back(self, seqs, st: "_Batch", cache, r: int, row: _Row, fed: int, base: int) -> None:
        """Caches the KV of ``seqs[node] + row.toks[:fed]`` (cache row ``r``) and pins the child."""
        seq = seqs[row.node]
        full = np.concatenate([seq, np.asarray(row.toks, dtype=np.int32)])
        done = full[: len(seq) + fed]
        m = self.cache.match(done)
        have = int(m.length)
        if have < len(done):
            try:
                slots = self._allocate(len(done) - have)
            except CacheFullError:
                self.writeback_skipped += 1
                return
            q = np.arange(have, len(done))
            p = st.start[row.node]
            cols = np.where(q < p, q, np.where(q < len(seq), st.P + q - p, base + q - len(seq)))
            cols_t = torch.from_numpy(cols)
            kv = [(k[r][:, cols_t].transpose(0, 1), v[r][:, cols_t].transpose(0, 1)) for k, v in ModelRunner.layer_kv(cache)]
            self.pool.scatter(torch.from_numpy(slots), kv)
            self.cache.insert(done, np.concatenate([np.asarray(m.slots, dtype=np.int64), slots]))
        self._frontier.setdefault(full.tobytes(), []).append(self.cache.pin(full))


@dataclass
class _Batch:
    cache: object
    mask: torch.Tensor
    next_pos: torch.Tensor
    logits: torch.Tensor
    start: list[int]
    P: int
    S: int
    all_logits: list[torch.Tensor]


def _check_int(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
