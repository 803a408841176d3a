"""The KV prefix cache: exact block ids and eviction order, capacity errors, bad input, and a
stateful test against a per-block Python model of its specification (CacheModel below).

Block ids are deterministic (lowest free block first) and eviction is LRU by a logical clock, so
every test asserts exact slots, as vLLM's prefix-caching tests do.
"""

from __future__ import annotations

import heapq

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from qstar_native import CacheFullError, CacheStats, PrefixCache, PrefixMatch


def forward(cache: PrefixCache, tokens: list[int]) -> np.ndarray:
    """The caller's flow: pin the prefix, match, allocate the rest, insert; returns all slots."""
    handle = cache.pin(tokens)
    try:
        hit = cache.match(tokens)
        new = cache.allocate(len(tokens) - hit.length)
        slots = np.concatenate([hit.slots, new])
        cache.insert(tokens, slots)
        return slots
    finally:
        cache.unpin(handle)


# ---- exact block ids and eviction order ---------------------------------------------------------


def test_allocate_hands_out_lowest_blocks_and_frees_the_partial_tail():
    cache = PrefixCache(num_blocks=8, block_size=2)
    assert (cache.num_blocks, cache.block_size, cache.capacity_tokens) == (8, 2, 16)
    slots = cache.allocate(5)
    assert slots.dtype == np.int64 and slots.tolist() == [0, 1, 2, 3, 4]
    assert cache.allocate(1).tolist() == [6]  # block 3
    cache.insert([7, 7, 8, 8, 9], slots)  # blocks 0, 1 cached; block 2 (partial) freed
    assert cache.stats() == CacheStats(
        hit_tokens=0, computed_tokens=4, evictions=0, blocks_in_use=3, free_blocks=5, pinned_blocks=0,
        num_blocks=8, block_size=2)
    assert cache.allocate(2).tolist() == [4, 5]  # block 2 again: lowest free
    m = cache.match([7, 7, 8, 8, 9, 9])
    assert isinstance(m, PrefixMatch) and m.length == 4 and m.slots.tolist() == [0, 1, 2, 3]
    assert cache.match([7, 7, 8]).slots.tolist() == [0, 1]  # only whole blocks match
    assert cache.match([7]).length == 0 and cache.match([]).length == 0
    assert cache.stats().hit_tokens == 6
    cache.check_invariants()


def test_eviction_takes_least_recently_used_leaf_tail_first():
    cache = PrefixCache(num_blocks=6)
    assert forward(cache, [1, 2]).tolist() == [0, 1]
    assert forward(cache, [3, 4]).tolist() == [2, 3]
    assert forward(cache, [5]).tolist() == [4]
    cache.match([1, 2])  # [1, 2] is now the most recent, [3, 4] the least
    assert cache.allocate(3).tolist() == [2, 3, 5]  # free block 5, then evicts 3 (tail of [3, 4]), then 2
    s = cache.stats()
    assert (s.evictions, s.free_blocks, s.blocks_in_use) == (2, 0, 6)
    assert cache.match([3, 4]).length == 0
    assert cache.match([1, 2]).slots.tolist() == [0, 1]
    assert cache.match([5]).slots.tolist() == [4]
    cache.check_invariants()


def test_eviction_order_is_exact_across_branches():
    cache = PrefixCache(num_blocks=7)
    forward(cache, [1, 2, 3])  # blocks 0 1 2
    forward(cache, [1, 2, 4])  # block 3 under [1, 2]
    forward(cache, [1, 5])  # block 4 under [1]
    cache.match([1, 2, 3])  # order now (oldest first): [1,2,4]->3, [1,5]->4, [1,2,3]->2
    freed = []
    for _ in range(5):  # one block at a time, so each allocation shows which block went
        (slot,) = cache.allocate(1)
        freed.append(int(slot))
    assert freed == [5, 6, 3, 4, 2]  # two free blocks first, then LRU leaf tails
    assert cache.match([1, 2, 3]).slots.tolist() == [0, 1]  # 2 went; [1, 2] is now a leaf
    (slot,) = cache.allocate(1)
    assert int(slot) == 1  # the newly exposed leaf [1, 2] loses its tail
    assert cache.stats().evictions == 4
    cache.check_invariants()


def test_insert_of_tokens_already_cached_returns_the_callers_blocks():
    cache = PrefixCache(num_blocks=8, block_size=2)
    a = cache.allocate(4)
    b = cache.allocate(4)  # two siblings computed in one batch with equal tokens
    assert a.tolist() == [0, 1, 2, 3] and b.tolist() == [4, 5, 6, 7]
    cache.insert([1, 1, 2, 2], a)
    cache.insert([1, 1, 2, 2], b)  # blocks 2 and 3 go back to the free list
    s = cache.stats()
    assert (s.computed_tokens, s.blocks_in_use, s.free_blocks) == (4, 2, 6)
    assert cache.allocate(2).tolist() == [4, 5]
    cache.check_invariants()


def test_divergence_inside_a_node_splits_it_and_keeps_both_branches():
    cache = PrefixCache(num_blocks=8, block_size=2)
    assert forward(cache, [1, 1, 2, 2, 3, 3]).tolist() == [0, 1, 2, 3, 4, 5]
    assert forward(cache, [1, 1, 2, 2, 9, 9]).tolist() == [0, 1, 2, 3, 6, 7]
    assert forward(cache, [1, 1, 8, 8]).tolist() == [0, 1, 8, 9]
    assert cache.match([1, 1, 2, 2, 3, 3]).slots.tolist() == [0, 1, 2, 3, 4, 5]
    assert cache.match([1, 1, 2, 2, 9, 9, 9]).slots.tolist() == [0, 1, 2, 3, 6, 7]
    assert cache.stats().computed_tokens == 10
    cache.check_invariants()


# ---- pinning and capacity ---------------------------------------------------------------------


def test_pinned_prefix_is_never_evicted_and_a_full_pool_says_why():
    cache = PrefixCache(num_blocks=4)
    forward(cache, [1, 2, 3, 4])
    handle = cache.pin([1, 2, 9])  # pins the cached prefix [1, 2] only
    assert cache.stats().pinned_blocks == 2
    assert cache.allocate(2).tolist() == [2, 3]  # evicts 3 then 2, never 1 or 0
    before = cache.stats()
    with pytest.raises(CacheFullError) as err:
        cache.allocate(1)
    msg = str(err.value)
    assert "needs 1 blocks" in msg and "2 of the 4 blocks are pinned" in msg and "2 are held by the caller" in msg
    assert "raise kv_capacity" in msg
    assert isinstance(err.value, MemoryError)
    assert cache.stats() == before  # a failed allocation changes nothing
    assert cache.match([1, 2]).slots.tolist() == [0, 1]
    cache.free([2, 3])
    cache.unpin(handle)
    assert cache.stats().pinned_blocks == 0
    assert cache.allocate(4).tolist() == [0, 1, 2, 3]  # now everything can go
    cache.check_invariants()


def test_pins_nest_and_count_once_per_block():
    cache = PrefixCache(num_blocks=4)
    forward(cache, [1, 2, 3])
    h1 = cache.pin([1, 2, 3])
    h2 = cache.pin([1])
    assert h1 != h2 and cache.stats().pinned_blocks == 3
    cache.unpin(h1)
    assert cache.stats().pinned_blocks == 1
    assert cache.allocate(3).tolist() == [1, 2, 3]  # free block 3, then evicts 2, 1; block 0 stays
    with pytest.raises(CacheFullError):
        cache.allocate(1)
    cache.unpin(h2)
    cache.check_invariants()


def test_pin_of_an_uncached_sequence_pins_nothing():
    cache = PrefixCache(num_blocks=2)
    handle = cache.pin([5, 6])
    assert cache.stats().pinned_blocks == 0
    assert cache.allocate(2).tolist() == [0, 1]
    cache.unpin(handle)
    cache.check_invariants()


def test_an_allocation_larger_than_the_pool_is_a_clear_error():
    cache = PrefixCache(num_blocks=4, block_size=4)
    with pytest.raises(CacheFullError, match=r"needs 5 blocks for 17 new tokens.*more than the whole pool"):
        cache.allocate(17)
    with pytest.raises(CacheFullError, match="more than the whole pool"):
        cache.allocate(2**62)
    assert cache.allocate(16).size == 16
    assert cache.allocate(0).size == 0


def test_free_returns_caller_blocks():
    cache = PrefixCache(num_blocks=4, block_size=2)
    slots = cache.allocate(3)
    cache.free(slots[:1])  # any slot of a block frees the whole block
    assert cache.stats().free_blocks == 3
    cache.free(np.array([3], dtype=np.uint8))
    assert cache.stats().free_blocks == 4
    with pytest.raises(ValueError, match="already free"):
        cache.free(slots)


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        (dict(num_blocks=0), ValueError, "num_blocks must be in"),
        (dict(num_blocks=2**31), ValueError, "num_blocks must be in"),
        (dict(num_blocks=4, block_size=0), ValueError, "block_size must be in"),
        (dict(num_blocks=4.0), TypeError, "num_blocks must be an int"),
        (dict(num_blocks=True), TypeError, "num_blocks must be an int"),
    ],
)
def test_bad_construction(kwargs, error, text):
    with pytest.raises(error, match=text):
        PrefixCache(**kwargs)


def test_bad_tokens():
    cache = PrefixCache(num_blocks=4)
    with pytest.raises(ValueError, match="token id -1"):
        cache.match([1, -1])
    with pytest.raises(ValueError, match="token id 2147483648"):
        cache.pin(np.array([2**31], dtype=np.int64))
    with pytest.raises(ValueError, match=r"tokens\[1\] = -3; token ids must be non-negative"):
        cache.insert(np.array([1, -3], dtype=np.int32), [0, 1])  # the int32 fast path, checked in C++
    with pytest.raises(TypeError, match="integer token ids"):
        cache.match([1.5])
    with pytest.raises(ValueError, match="must be 1-D"):
        cache.insert([[1]], [[0]])
    with pytest.raises(ValueError, match="num_tokens must be non-negative"):
        cache.allocate(-1)
    with pytest.raises(TypeError, match="num_tokens must be an int"):
        cache.allocate(2.0)


def test_bad_slots_are_rejected_and_change_nothing():
    cache = PrefixCache(num_blocks=6, block_size=2)
    forward(cache, [1, 1, 2, 2])  # cached: blocks 0, 1
    own = cache.allocate(4)  # blocks 2, 3
    before = cache.stats()
    cases = [
        ([1, 1, 2, 2], own[:3], "one entry per token: got 3 slots for 4 tokens"),
        ([5, 5], [5, 4], r"slots\[0\] = 5: the slots of token block 0 must be block_id \* block_size"),
        ([5, 5], [4, 6], r"slots\[1\] = 6"),
        ([5, 5], [12, 13], "block ids in \\[0, 6\\)"),
        ([5, 5], [-2, -1], r"slots\[0\] = -2"),
        ([5, 5, 6, 6], [4, 5, 4, 5], "use block 2 for two different token blocks"),
        ([5, 5], [8, 9], "block 4, which is free"),
        ([5, 5], [0, 1], "block 0, which is cached for other tokens"),
        ([1, 1, 2, 2], [2, 3, 0, 1], "block 1, which is cached for other tokens.*holds these tokens in block 0"),
        ([1, 1, 2, 2, 3], [0, 1, 2, 3, 0], "use block 0 for two"),
        ([1, 1, 2, 2, 3], [0, 1, 2, 3, 10], "block 5, which is free"),
        ([5, 5], [2.0, 3.0], "integer slot ids"),
    ]
    for tokens, slots, text in cases:
        with pytest.raises((ValueError, TypeError), match=text):
            cache.insert(tokens, np.asarray(slots))
        assert cache.stats() == before
        cache.check_invariants()
    with pytest.raises(ValueError, match="block 0, which is cached"):
        cache.free([0])
    with pytest.raises(ValueError, match="outside the pool"):
        cache.free([12])
    cache.insert([1, 1, 2, 2, 3, 3], np.concatenate([cache.match([1, 1, 2, 2]).slots, own[:2]]))
    assert cache.stats().computed_tokens == 6


def test_unpin_twice_or_unknown_handle():
    cache = PrefixCache(num_blocks=2)
    handle = cache.pin([1])
    cache.unpin(handle)
    with pytest.raises(ValueError, match="already unpinned"):
        cache.unpin(handle)
    with pytest.raises(ValueError, match="unknown pin handle 99"):
        cache.unpin(99)
    with pytest.raises(TypeError, match="handle must be an int"):
        cache.unpin("1")
    cache.check_invariants()


# ---- stateful: the cache against a per-block Python model -------------------------------------


class CacheFull(Exception):
    pass


class CacheModel:
    """The cache's specification, one dict entry per cached block, no tree.

    A block is keyed by the token prefix it ends. Its LRU stamp is the clock of the last match,
    insert or pin covering it. Evictable: unpinned blocks with no cached child; the one with the
    smallest (stamp, block id) goes first. Free blocks are handed out lowest first.
    """

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.bs, self.n = block_size, num_blocks
        self.free = list(range(num_blocks))
        self.owned: set[int] = set()
        self.tree: dict[tuple, int] = {}
        self.stamp: dict[tuple, int] = {}
        self.pins: dict[int, tuple] = {}
        self.clock, self.next_handle = 0, 1
        self.hit = self.computed = self.evictions = 0

    def _prefixes(self, tokens) -> list[tuple]:  # the cached block-aligned prefixes, shortest first
        out = []
        for k in range(1, len(tokens) // self.bs + 1):
            p = tuple(tokens[: k * self.bs])
            if p not in self.tree:
                break
            out.append(p)
        return out

    def _touch(self, prefixes) -> None:
        self.clock += 1
        for p in prefixes:
            self.stamp[p] = self.clock

    def _slots(self, prefixes) -> list[int]:
        return [self.tree[p] * self.bs + o for p in prefixes for o in range(self.bs)]

    def _pinned(self, p) -> bool:
        return any(q[: len(p)] == p for q in self.pins.values())

    def _evict_one(self) -> None:
        leaves = [p for p in self.tree if not self._pinned(p)
                  and not any(len(q) == len(p) + self.bs and q[: len(p)] == p for q in self.tree)]
        p = min(leaves, key=lambda p: (self.stamp[p], self.tree[p]))
        heapq.heappush(self.free, self.tree.pop(p))
        del self.stamp[p]
        self.evictions += 1

    def match(self, tokens) -> list[int]:
        ps = self._prefixes(tokens)
        self._touch(ps)
        self.hit += len(ps) * self.bs
        return self._slots(ps)

    def allocate(self, num_tokens: int) -> list[int]:
        need = -(-num_tokens // self.bs)
        unpinned = sum(not self._pinned(p) for p in self.tree)
        if need > len(self.free) + unpinned:
            raise CacheFull
        while len(self.free) < need:
            self._evict_one()
        blocks = [heapq.heappop(self.free) for _ in range(need)]
        self.owned.update(blocks)
        return [b * self.bs + o for b in blocks for o in range(self.bs)][:num_tokens]

    def insert(self, tokens, slots) -> None:  # slots assumed valid: the tests pass valid ones
        full = len(tokens) // self.bs
        blocks = [slots[i * self.bs] // self.bs for i in range(-(-len(tokens) // self.bs))]
        for i, b in enumerate(blocks):
            p = tuple(tokens[: (i + 1) * self.bs])
            if i < full and p in self.tree:
                if self.tree[p] != b:
                    self._give_back(b)
            elif i < full:
                self.tree[p] = b
                self.owned.remove(b)
                self.computed += self.bs
            else:
                self._give_back(b)
        self._touch(self._prefixes(tokens))

    def _give_back(self, b: int) -> None:
        self.owned.remove(b)
        heapq.heappush(self.free, b)

    def free_blocks(self, blocks) -> None:
        for b in sorted(set(blocks)):
            self._give_back(b)

    def pin(self, tokens) -> int:
        ps = self._prefixes(tokens)
        self._touch(ps)
        h, self.next_handle = self.next_handle, self.next_handle + 1
        self.pins[h] = ps[-1] if ps else ()
        return h

    def stats(self) -> CacheStats:
        return CacheStats(
            hit_tokens=self.hit, computed_tokens=self.computed, evictions=self.evictions,
            blocks_in_use=self.n - len(self.free), free_blocks=len(self.free),
            pinned_blocks=sum(self._pinned(p) for p in self.tree), num_blocks=self.n, block_size=self.bs)


tokens_st = st.lists(st.integers(0, 2), max_size=7)


class CacheVsModel(RuleBasedStateMachine):
    @initialize(num_blocks=st.integers(1, 10), block_size=st.sampled_from([1, 1, 2, 3]))
    def setup(self, num_blocks, block_size):
        self.cache = PrefixCache(num_blocks, block_size)
        self.model = CacheModel(num_blocks, block_size)
        self.pins: dict[int, list[int]] = {}  # handle -> slots of the pinned prefix when pinned
        self.held: list[list[int]] = []  # caller-owned allocations
        self.released: list[int] = []

    def _allocate(self, n):
        try:
            want = self.model.allocate(n)
        except CacheFull:
            before = self.cache.stats()
            with pytest.raises(CacheFullError):
                self.cache.allocate(n)
            assert self.cache.stats() == before
            return None
        got = self.cache.allocate(n).tolist()
        assert got == want
        for slots in self.pins.values():  # pinned blocks are never handed out again
            assert not set(slots) & set(got)
        return got

    def _pin(self, tokens):
        h = self.cache.pin(tokens)
        assert h == self.model.pin(tokens)
        self.pins[h] = self.model._slots(self.model._prefixes(self.model.pins[h]))
        return h

    def _unpin(self, h):
        self.cache.unpin(h)
        del self.model.pins[h], self.pins[h]
        self.released.append(h)

    @rule(tokens=tokens_st)
    def match(self, tokens):
        got = self.cache.match(tokens)
        assert got.slots.tolist() == self.model.match(tokens) and got.length == got.slots.size

    @rule(tokens=tokens_st, keep_pin=st.booleans())
    def forward(self, tokens, keep_pin):
        h = self._pin(tokens)
        hit = self.cache.match(tokens)
        assert hit.slots.tolist() == self.model.match(tokens)
        new = self._allocate(len(tokens) - hit.length)
        if new is not None:
            slots = hit.slots.tolist() + new
            self.cache.insert(tokens, np.asarray(slots, dtype=np.int64))
            self.model.insert(tokens, slots)
            if keep_pin:
                self._pin(tokens)
        self._unpin(h)

    @rule(n=st.integers(0, 7))
    def allocate_and_hold(self, n):
        got = self._allocate(n)
        if got:
            self.held.append(got)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def free_held(self, data):
        slots = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self.cache.free(slots)
        self.model.free_blocks([s // self.model.bs for s in slots])

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def insert_held(self, data):  # the held blocks as a whole sequence; cached parts are duplicates
        slots = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        tokens = data.draw(st.lists(st.integers(0, 2), min_size=len(slots), max_size=len(slots)))
        self.cache.insert(tokens, slots)
        self.model.insert(tokens, slots)

    @precondition(lambda self: self.pins)
    @rule(data=st.data())
    def unpin(self, data):
        self._unpin(data.draw(st.sampled_from(sorted(self.pins))))

    @precondition(lambda self: self.released)
    @rule(data=st.data())
    def unpin_again_is_refused(self, data):
        with pytest.raises(ValueError, match="already unpinned"):
            self.cache.unpin(data.draw(st.sampled_from(self.released)))

    @invariant()
    def agrees_with_model_and_invariants_hold(self):
        self.cache.check_invariants()  # refcounts >= 0, pins match locks, each block exactly one state
        s = self.cache.stats()
        assert s == self.model.stats()
        assert s.free_blocks + s.blocks_in_use == s.num_blocks
        assert s.pinned_blocks <= s.blocks_in_use
        held = {x // s.block_size for slots in self.held for x in slots}
        assert len(held) == len(self.model.owned)  # what the test holds is all the caller owns


TestCacheVsModel = CacheVsModel.TestCase
