"""HFPolicy: proposes next reasoning steps with a Hugging Face causal LM, computing each token's KV once.

``propose(batch)`` takes a columnar :class:`~qstar_native.batch.Batch` (the nodes' full states,
the samples wanted per node, their temperatures and seeds) and returns columnar
:class:`~qstar_native.batch.Steps`:

1. Prefill. Each node's state is matched against the prefix cache; only the uncached suffixes run
   through the model, in one ragged batch on top of the cached prefixes gathered from the paged
   KV pool into preallocated working buffers (layout in :mod:`.runner`). The suffixes' KV goes
   into the pool and the cache.
2. Decode (:mod:`.decode`). The samples of every node are decoded together, rows shared by
   identical prefixes; a step's last token is fed once more, so the forward that computes the
   child's KV also gives the hidden state at its last token (``Steps.hidden``, what a Q-value
   head reads: no second backbone pass). With a :class:`~.calculator.Calculator`, annotation
   results are written during decode, so that stays true.
3. Write-back. Each child state's KV goes into the pool and cache and is pinned; the pin handle
   travels in ``Steps.kv_handles`` to the engine, which holds it exactly while the child is open
   (one tree: the engine's nodes are what keeps KV alive).

Each node's usage is reported in ``Steps.generated`` (tokens sampled for it) and
``Steps.forwarded`` (tokens run through the model for it), so a problem's tokens add up exactly
whatever else shared its batches. NOTE: the cache is shared by every search in flight, so a
prompt another problem (or another method on the same problem) already computed is a real hit;
what ``Steps.forwarded`` charges a node of an engine batch is what its own search needed (the
whole state for a node without a pin, i.e. the root; the one token recomputed for a child whose
KV its search wrote back), so records do not depend on what else ran. The policy's counters
(``tokens_forwarded``...) are what was actually run. Over a search, tokens forwarded are at most the tree's distinct
tokens plus one per expanded node (its last token, recomputed for the logits that start its
decode), plus any evicted KV recomputed.

The KV pool starts small and doubles as needed up to ``kv_capacity`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..batch import Batch, Steps
from ..prefix_cache import CacheFullError, PrefixCache
from ..scheduler import PolicyExpand, Scorer
from ..types import Tokens, as_tokens
from .attention import install as install_attention
from .calculator import Calculator
from .decode import Decoder, Retired
from .kv_pool import KVPool, blocks_for_capacity
from .runner import ModelRunner
from .sampling import check_sampling, node_seed
from .step_text import FINISH, LineStarts as _LineStarts, StepText
from .working_kv import WorkingKV

DEFAULT_KV_CAPACITY = 4 * 2**30
INITIAL_KV_BYTES = 32 * 2**20


class KVCapacityError(CacheFullError):
    """The KV pool cannot hold one batch's tokens at its byte cap, even after evicting everything
    unpinned (the scheduler then sheds the engines' pins and retries once)."""


@dataclass
class _Prefill:
    """One batch after prefill: what the decoder and the write-back need."""

    seqs: list[np.ndarray]
    start: list[int]
    P: int
    S: int
    logits: torch.Tensor  # [n, V] at each state's last token (or every suffix position: forward_logits)
    k: np.ndarray
    temperature: np.ndarray
    node_seeds: np.ndarray  # uint64
    suffix: np.ndarray  # tokens run per node
    charged: np.ndarray  # prefill tokens charged per node (see the module NOTE)
    greedy_first: np.ndarray | None = None  # per node: its first sample is greedy


class HFPolicy:
    """Samples candidate next steps with any full-attention ``AutoModelForCausalLM``.

    Args:
        model: the policy model (eval mode is set). Llama, Qwen2, GPT-2 and other full-attention
            families; the KV layout is checked on the model at construction, and a model that
            fails the check (sliding-window layers, custom caches) is refused with the reason.
        tokenizer: needs ``decode(list[int]) -> str`` and ``eos_token_id`` (int, list or None).
        step_delimiter: a step ends at the first token whose decoded text contains it.
        num_candidates, temperature, seed: the defaults when ``propose`` gets bare states (a
            :class:`~qstar_native.batch.Batch` carries its own per node).
        top_p: nucleus sampling mass. min_p: drop tokens below ``min_p`` times the most likely.
        greedy_first: every node's first sample takes the most likely token at every position, so
            the greedy step is always among its candidates (the others are sampled); a batch asks
            for it per node too (``Batch.greedy_first``, from ``SearchConfig.greedy_first``).
        max_step_tokens: a step longer than this is cut (finish ``"length"``).
        stop_strings: a step whose text contains one ends there and is terminal.
        is_terminal: ``f(line) -> bool`` marks further finished steps terminal (answer markers, the
            end of a function). ``line`` is the step's text preceded by what the state already
            holds of its last line (after its last ``step_delimiter``): tokenizers merge a newline
            with the next line's indentation, so a step of code can start mid-line.
        calculator: write ``<<expr=value>>`` results during decode (see :mod:`.calculator`).
        kv_capacity / kv_blocks: the KV pool's cap in bytes (default 4 GiB) or its fixed size in
            blocks; the pool starts small and grows by doubling up to the cap.
        block_size: tokens per pool block; 1 recomputes nothing, larger ones recompute up to
            ``block_size - 1`` tokens of each state.
        prefix_sharing: False recomputes every node's full prefix (the baseline for benchmarks).

    Example:
        >>> policy = HFPolicy(model, tokenizer, num_candidates=4, temperature=0.7)  # doctest: +SKIP
        >>> Searcher(policy.as_expand(), aggregate="sum", batch_size=4).search(prompt_ids)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: torch.nn.Module,
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
        calculator: Calculator | None = None,
        kv_capacity: int | None = None,
        kv_blocks: int | None = None,
        block_size: int = 1,
        seed: int = 0,
        prefix_sharing: bool = True,
    ) -> None:
        _check_int(num_candidates, "num_candidates", 1)
        _check_int(max_step_tokens, "max_step_tokens", 1)
        _check_int(block_size, "block_size", 1)
        check_sampling(temperature, top_p, min_p)
        if calculator is not None and not isinstance(calculator, Calculator):
            raise TypeError(f"calculator must be a qstar_native.policy.Calculator, got {type(calculator).__name__}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.num_candidates, self.temperature, self.seed = num_candidates, float(temperature), int(seed)
        self.top_p, self.min_p, self.greedy_first = float(top_p), float(min_p), bool(greedy_first)
        self.max_step_tokens = max_step_tokens
        self.calculator = calculator
        eos = getattr(tokenizer, "eos_token_id", None)
        eos = getattr(model.config, "eos_token_id", None) if eos is None else eos
        out = model.get_output_embeddings()
        self.vocab_size = int(out.weight.shape[0]) if out is not None else model.get_input_embeddings().num_embeddings
        self.text = StepText(tokenizer, vocab_size=self.vocab_size, step_delimiter=step_delimiter, stop_strings=stop_strings,
                             is_terminal=is_terminal, eos_ids=eos)  # fmt: skip
        self.context_length = int(getattr(model.config, "max_position_embeddings", None) or 2**31 - 1)

        install_attention(model)
        self.runner = ModelRunner(model)
        probe = self.runner.probe(model.get_input_embeddings().num_embeddings)
        if not probe.shares_kv:
            raise ValueError(
                f"HFPolicy runs full-attention causal LMs (Llama, Qwen2, Mistral, GPT-2, ...); {type(model).__name__} "
                f"failed the KV layout check on this model: {probe.reason}"
            )
        self.sharing = bool(prefix_sharing)
        self.work = WorkingKV(probe.layer_shapes, probe.dtype, self.runner.device)
        self.pool: KVPool | None = None
        self.cache: PrefixCache | None = None
        if self.sharing:
            self.max_blocks = blocks_for_capacity(probe.layer_shapes, probe.dtype, block_size, kv_capacity=None if kv_blocks else (kv_capacity or DEFAULT_KV_CAPACITY), kv_blocks=kv_blocks)
            initial = self.max_blocks if kv_blocks else min(self.max_blocks, blocks_for_capacity(probe.layer_shapes, probe.dtype, block_size, kv_capacity=INITIAL_KV_BYTES, kv_blocks=None))
            self.pool = KVPool(probe.layer_shapes, initial, block_size, dtype=probe.dtype, device=self.runner.device)
            self.cache = PrefixCache(initial, block_size)
        self.reset_counters()

    # ---- counters and cache ----------------------------------------------------------------

    def reset_counters(self) -> None:
        """Zeroes ``tokens_forwarded`` (= ``prefill_tokens + decode_tokens``), ``tokens_generated``,
        ``cache_hit_tokens``, ``forward_calls`` and ``writeback_skipped``."""
        self.prefill_tokens = self.decode_tokens = self.tokens_generated = 0
        self.cache_hit_tokens = self.forward_calls = self.writeback_skipped = 0

    @property
    def tokens_forwarded(self) -> int:
        return self.prefill_tokens + self.decode_tokens

    def reset_cache(self) -> None:
        """Forgets every cached prefix (for a cold start in benchmarks and tests); the pool stays.
        Refused while searches hold pins on it."""
        if self.cache is not None:
            self.cache.clear()

    def decode(self, ids: Tokens) -> str:
        """Token ids -> text, EOS left out (it ends a step; it is no part of the text)."""
        return self.text.decode(ids)

    # ---- the policy ------------------------------------------------------------------------

    def as_expand(self, scorer: Scorer | None = None) -> PolicyExpand:
        """An expand callback for :class:`~qstar_native.Searcher` and the scheduler: propose,
        then ``scorer`` gives each step its reward and q (default: reward = log-probability,
        q = 0). It carries the policy's prefix cache, so engines pin their nodes' KV in it."""
        return PolicyExpand(self, scorer)

    @torch.inference_mode()
    def propose(self, batch: Batch | Sequence[Tokens]) -> Steps:
        """The distinct next steps of each node (a :class:`Batch`, or bare token states that use
        this policy's ``num_candidates``, ``temperature`` and ``seed``)."""
        if not isinstance(batch, Batch):
            batch = Batch.of_states(batch, k=self.num_candidates, temperature=self.temperature, seed=self.seed)
        n = len(batch)
        if n == 0:
            return Steps.empty(0)
        seqs = [batch.state(i) for i in range(n)]
        for i, s in enumerate(seqs):
            if len(s) == 0:
                raise ValueError(f"node {i} has no tokens; a state needs at least the prompt's tokens")
        k = np.asarray(batch.k, np.int64)
        if (k < 1).any():
            raise ValueError(f"batch.k must be >= 1 for every node, got {k.tolist()}")
        temperature = np.asarray(batch.temperature, np.float64)
        if not np.isfinite(temperature).all() or (temperature < 0).any():
            raise ValueError(f"batch.temperature must be finite and >= 0 for every node, got {temperature.tolist()}")
        pins: list[int] = []
        retired: list[Retired] = []
        try:
            own = (batch.info("kv_handle") >= 0) if batch.engines else None
            st = self._prefill(seqs, k, temperature, np.asarray(batch.seed, np.int64), pins, want_all=False, own=own)
            st.greedy_first = np.asarray(batch.greedy_first, np.bool_) | self.greedy_first
            decoder = Decoder(self, st)
            retired = decoder.run()
            steps = self._steps(n, retired, st, decoder, seqs)
        except BaseException:
            for r in retired:
                if r.kv_handle >= 0:
                    self.cache.unpin(r.kv_handle)
            raise
        finally:
            for h in pins:
                self.cache.unpin(h)
        return steps

    def _steps(self, n: int, retired: list[Retired], st: _Prefill, decoder: Decoder, seqs: Sequence[np.ndarray]) -> Steps:
        texts, terminal = [], []
        starts = _LineStarts(self.text, seqs)
        for r in retired:
            text = self.decode(r.tokens)
            texts.append(text)
            terminal.append(self.text.terminal(FINISH[r.finish], text, lambda: starts[r.node]))  # noqa: B023 - called at once
        generated = decoder.generated
        forwarded = st.charged + decoder.forwarded
        self.tokens_generated += int(generated.sum())
        self.decode_tokens += int(decoder.forwarded.sum())
        return Steps(
            num_children=np.bincount(np.array([r.node for r in retired], np.int64), minlength=n),
            tokens=np.concatenate([r.tokens for r in retired]) if retired else np.zeros(0, np.int32),
            lengths=np.array([len(r.tokens) for r in retired], np.int64),
            terminal=np.array(terminal, np.bool_),
            count=np.array([r.count for r in retired], np.int64),
            logprob=np.array([r.logprob for r in retired], np.float64),
            texts=texts,
            hidden=torch.stack([r.hidden for r in retired]) if retired else None,
            kv_handles=np.array([r.kv_handle for r in retired], np.int64) if self.sharing else None,
            generated=generated,
            forwarded=forwarded,
            finish=[FINISH[r.finish] for r in retired],
        )

    @torch.inference_mode()
    def forward_logits(self, seqs: Sequence[Tokens]) -> list[tuple[int, torch.Tensor]]:
        """Runs states through the cache path like a prefill and returns, per state, ``(start,
        logits)``: the logits of positions ``start..len-1``, where ``start`` tokens came from
        cached KV. For exactness tests: they must equal a full forward's ``logits[start:]``."""
        arrays = [as_tokens(s, f"seqs[{i}]") for i, s in enumerate(seqs)]
        pins: list[int] = []
        n = len(arrays)
        try:
            st = self._prefill(arrays, np.ones(n, np.int64), np.zeros(n), np.zeros(n, np.int64), pins, want_all=True)
        finally:
            for h in pins:
                self.cache.unpin(h)
        splits = torch.split(st.logits, st.suffix.tolist())
        return [(st.start[i], splits[i]) for i in range(n)]

    # ---- prefill ---------------------------------------------------------------------------

    def _prefill(self, seqs: list[np.ndarray], k: np.ndarray, temperature: np.ndarray, seeds: np.ndarray, pins: list[int],
                 want_all: bool, own: np.ndarray | None = None) -> _Prefill:  # fmt: skip
        n, dev = len(seqs), self.runner.device
        warmed = self._warm_outliers(seqs, pins) if not want_all else np.zeros(n, np.int64)
        start = [0] * n
        prefix_slots = [np.zeros(0, np.int64)] * n
        owned = [np.zeros(0, np.int64)] * n
        try:
            if self.sharing:
                bs = self.pool.block_size
                pins.extend(self.cache.pin(s) for s in seqs)  # before any allocate: nothing matched can go
                for i, s in enumerate(seqs):
                    m = self.cache.match(s)
                    start[i] = min(int(m.length), ((len(s) - 1) // bs) * bs)  # keep >= 1 token for logits
                    prefix_slots[i] = m.slots[: start[i]]
                for i, s in enumerate(seqs):
                    owned[i] = self._allocate_batch(len(s) - start[i], seqs, start)
            suffix = np.array([len(s) - p for s, p in zip(seqs, start)], np.int64)
            P, S = max(start), int(suffix.max())
            work = self.work
            work.start(n, P + S, self.max_step_tokens)
            if P:
                idx = torch.zeros(n, P, dtype=torch.long, device=dev)
                for i, sl in enumerate(prefix_slots):
                    idx[i, : len(sl)] = torch.from_numpy(sl)
                for (pk, pv), wk, wv in zip(self.pool.gather(idx), work.node_keys, work.node_values):
                    wk[:n, :, :P] = pk.transpose(1, 2)
                    wv[:n, :, :P] = pv.transpose(1, 2)
            ids = torch.zeros(n, S, dtype=torch.long)
            pos = torch.zeros(n, S, dtype=torch.long)
            for i, (s, p) in enumerate(zip(seqs, start)):
                ids[i, : suffix[i]] = torch.from_numpy(s[p:].astype(np.int64))
                work.node_mask[i, :p] = 1
                work.node_mask[i, P : P + suffix[i]] = 1
                pos[i] = p + torch.arange(S)
            suf_rows = torch.from_numpy(np.repeat(np.arange(n), suffix))
            suf_cols = torch.from_numpy(np.concatenate([np.arange(v) for v in suffix]))
            rows, cols = (suf_rows, suf_cols) if want_all else (torch.arange(n), torch.from_numpy(suffix - 1))
            work.node_length = P
            logits, _ = self.runner.run(ids.to(dev), work.node_mask[:n, : P + S], pos.to(dev), work.cache(), rows.to(dev), cols.to(dev))
            work.node_length = P + S
            self.forward_calls += 1
            self.prefill_tokens += int(suffix.sum())
            self.cache_hit_tokens += max(0, sum(start) - int(warmed.sum()))  # what _warm_outliers just computed is no hit
            if self.sharing:
                kv = work.node_columns_kv(suf_rows.to(dev), (P + suf_cols).to(dev))
                self.pool.scatter(torch.from_numpy(np.concatenate(owned)).to(dev), kv)
                for i, s in enumerate(seqs):
                    self.cache.insert(s, np.concatenate([prefix_slots[i], owned[i]]))
                    owned[i] = np.zeros(0, np.int64)  # the cache owns (or freed) them now
        except BaseException:
            for o in owned:
                if len(o):
                    self.cache.free(o)
            raise
        node_seeds = np.array([node_seed(sd, s) for sd, s in zip(seeds.tolist(), seqs)], np.uint64)
        charged = suffix + warmed
        if own is not None:  # what the node's own search needed: all of it, or the recomputed tail
            bs = self.pool.block_size if self.sharing else 1
            lengths = np.array([len(s) for s in seqs], np.int64)
            charged = np.where(own & self.sharing, lengths - ((lengths - 1) // bs) * bs, lengths)
        return _Prefill(seqs, start, P, S, logits, k, temperature, node_seeds, suffix, charged)

    def _warm_outliers(self, seqs: list[np.ndarray], pins: list[int]) -> np.ndarray:
        """Prefills first, on their own, the rows whose uncached suffix is far longer than the
        batch's typical one (a new prompt among children of cached states), so the batch's
        padded prefill then runs at the short length: without it every row of the batch pays for
        the longest suffix. Returns the tokens computed per row (0 for the others)."""
        n = len(seqs)
        warmed = np.zeros(n, np.int64)
        if not self.sharing or n < 2:
            return warmed
        suffix = np.array([len(s) - int(self.cache.match(s).length) for s in seqs], np.int64)
        long = np.flatnonzero(suffix > 2 * int(np.median(suffix)) + 32)
        if 0 < len(long) < n:
            sub = [seqs[i] for i in long.tolist()]
            m = len(sub)
            warmed[long] = self._prefill(sub, np.ones(m, np.int64), np.zeros(m), np.zeros(m, np.int64), pins, want_all=False).suffix
        return warmed

    def _allocate(self, n: int) -> np.ndarray:
        """Pool slots for ``n`` tokens, evicting LRU KV and growing the pool (by doubling, up to
        its cap) when needed; CacheFullError when even that cannot make room."""
        while True:
            try:
                return self.cache.allocate(n)
            except CacheFullError:
                if self.pool.num_blocks >= self.max_blocks:
                    raise
                need = -(-n // self.pool.block_size)
                grown = min(self.max_blocks, max(2 * self.pool.num_blocks, self.pool.num_blocks + need))
                self.pool.grow(grown)
                self.cache.grow(grown)

    def _allocate_batch(self, n: int, seqs: list[np.ndarray], start: list[int]) -> np.ndarray:
        try:
            return self._allocate(n)
        except CacheFullError as err:
            pool, bs = self.pool, self.pool.block_size
            need = sum(-(-len(s) // bs) for s in seqs)  # whole states: the cached part is pinned
            raise KVCapacityError(
                f"the KV pool (at its cap of {pool.num_blocks} blocks of {bs} tokens, {pool.nbytes} bytes) cannot hold "
                f"one batch: its {len(seqs)} states take {need} blocks and the rest is pinned by live nodes; raise "
                f"kv_capacity, or expand fewer nodes per round (batch_size, concurrency)"
            ) from err

    def _write_back(self, st: _Prefill, batch: list[tuple[int, Retired]]) -> None:
        """Caches each retired row's child state (state + step, all fed) and pins it; the pin
        handle goes to the engine with the step. A state token's KV sits in its node's columns,
        a step token's in its row's columns."""
        if not self.sharing:
            return
        node_at, row_at, slots_node, slots_row = [], [], [], []
        for row, ret in batch:
            seq = st.seqs[ret.node]
            full = np.concatenate([seq, ret.tokens]).astype(np.int32)
            guard = self.cache.pin(full)  # before allocate: the prefix matched below cannot be evicted by it
            try:
                m = self.cache.match(full)
                have = int(m.length)
                new = np.zeros(0, np.int64)
                if have < len(full):
                    try:
                        new = self._allocate(len(full) - have)
                    except CacheFullError:
                        self.writeback_skipped += 1  # the child stays uncached: its prefill computes it
                        continue
                    # only whole blocks are cached: insert frees the partial tail, so its KV is not written
                    q = np.arange(have, (len(full) // self.pool.block_size) * self.pool.block_size)
                    kept = new[: len(q)]
                    p, L = st.start[ret.node], len(seq)
                    in_node = q < L
                    node_at.append(np.stack([np.full(in_node.sum(), ret.node), np.where(q[in_node] < p, q[in_node], st.P + q[in_node] - p)]))
                    row_at.append(np.stack([np.full((~in_node).sum(), row), q[~in_node] - L]))
                    slots_node.append(kept[in_node])
                    slots_row.append(kept[~in_node])
                self.cache.insert(full, np.concatenate([m.slots, new]))
                ret.kv_handle = self.cache.pin(full)
            finally:
                self.cache.unpin(guard)
        dev = self.runner.device
        for at, slots, gather in ((node_at, slots_node, self.work.node_columns_kv), (row_at, slots_row, self.work.row_columns_kv)):
            if slots and sum(len(x) for x in slots):
                where = torch.from_numpy(np.concatenate(at, axis=1)).to(dev)
                self.pool.scatter(torch.from_numpy(np.concatenate(slots)).to(dev), gather(where[0], where[1]))


def _check_int(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
