"""A small pure-Python prefix cache with the API of :mod:`qstar_native.prefix_cache`.

NOTE: used only while the native ``PrefixCache`` is not built (see :func:`prefix_cache_class`);
it follows the same contract (block-aligned prefixes, LRU eviction of unlocked leaf blocks,
pinning that locks a path to the root, ``allocate`` all-or-nothing) but not the native's exact
block ids or eviction order, and is O(cached blocks) per eviction.

Example:
    >>> c = RefPrefixCache(num_blocks=4, block_size=2)
    >>> slots = c.allocate(5)
    >>> c.insert([1, 2, 3, 4, 5], slots)
    >>> m = c.match([1, 2, 3, 4, 9]); m.length, m.slots.tolist()
    (4, [0, 1, 2, 3])
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Sequence

import numpy as np

_FREE, _CACHED, _OWNED = 0, 1, 2


class CacheFullError(MemoryError):
    """Raised by ``allocate`` when even evicting every unpinned block cannot make room."""


@dataclass(frozen=True)
class PrefixMatch:
    length: int
    slots: np.ndarray


@dataclass(frozen=True)
class CacheStats:
    hit_tokens: int
    computed_tokens: int
    evictions: int
    blocks_in_use: int
    free_blocks: int
    pinned_blocks: int
    num_blocks: int
    block_size: int


class RefPrefixCache:
    """Blocks chained by ``(parent block, block tokens)``; see the module docstring."""

    def __init__(self, num_blocks: int, block_size: int = 1) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size must be positive, got {num_blocks}, {block_size}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self._state = [_FREE] * num_blocks
        self._free = list(range(num_blocks))
        self._child: dict[tuple[int, tuple[int, ...]], int] = {}
        self._key: dict[int, tuple[int, tuple[int, ...]]] = {}  # cached block -> its key
        self._nchildren = [0] * num_blocks
        self._lock = [0] * num_blocks
        self._stamp = [0] * num_blocks
        self._pins: dict[int, list[int]] = {}
        self._clock = self._next_handle = 0
        self._hits = self._computed = self._evictions = 0

    # ---- lookups ----
    def _path(self, tokens: Sequence[int]) -> list[int]:
        bs, parent, path = self.block_size, -1, []
        toks = [int(t) for t in tokens]
        for j in range(len(toks) // bs):
            b = self._child.get((parent, tuple(toks[j * bs : (j + 1) * bs])))
            if b is None:
                break
            path.append(b)
            parent = b
        return path

    def _touch(self, blocks: list[int]) -> None:
        self._clock += 1
        for b in blocks:
            self._stamp[b] = self._clock

    def _slots(self, blocks: list[int]) -> np.ndarray:
        bs = self.block_size
        return (np.repeat(np.asarray(blocks, dtype=np.int64), bs) * bs + np.tile(np.arange(bs), len(blocks))).astype(np.int64)

    def match(self, tokens: Sequence[int]) -> PrefixMatch:
        path = self._path(tokens)
        self._touch(path)
        self._hits += len(path) * self.block_size
        return PrefixMatch(len(path) * self.block_size, self._slots(path))

    # ---- blocks ----
    def allocate(self, num_tokens: int) -> np.ndarray:
        need = -(-int(num_tokens) // self.block_size)
        unlocked = sum(1 for b in self._key if self._lock[b] == 0)
        if need > len(self._free) + unlocked:
            raise CacheFullError(
                f"cannot allocate {need} blocks: {len(self._free)} free, {unlocked} evictable, "
                f"the rest pinned or owned by the caller"
            )
        while len(self._free) < need:
            self._evict_one()
        blocks = [heapq.heappop(self._free) for _ in range(need)]
        for b in blocks:
            self._state[b] = _OWNED
        return self._slots(blocks)[: int(num_tokens)]

    def _evict_one(self) -> None:
        leaves = [b for b in self._key if self._lock[b] == 0 and self._nchildren[b] == 0]
        b = min(leaves, key=lambda x: (self._stamp[x], x))
        parent, _ = key = self._key.pop(b)
        del self._child[key]
        if parent >= 0:
            self._nchildren[parent] -= 1
        self._state[b] = _FREE
        heapq.heappush(self._free, b)
        self._evictions += 1

    def _release(self, b: int) -> None:
        if self._state[b] == _OWNED:
            self._state[b] = _FREE
            heapq.heappush(self._free, b)

    def free(self, slots: Sequence[int] | np.ndarray) -> None:
        for b in sorted({int(s) // self.block_size for s in np.asarray(slots).ravel()}):
            self._release(b)

    def insert(self, tokens: Sequence[int], slots: Sequence[int] | np.ndarray) -> None:
        toks, sl, bs = [int(t) for t in tokens], np.asarray(slots, dtype=np.int64), self.block_size
        if len(toks) != len(sl):
            raise ValueError(f"insert got {len(toks)} tokens and {len(sl)} slots; give one slot per token")
        parent, path = -1, []
        for j in range(len(toks) // bs):
            blk = sl[j * bs : (j + 1) * bs]
            b = int(blk[0]) // bs
            if blk[0] % bs or not np.array_equal(blk, b * bs + np.arange(bs)):
                raise ValueError(f"slots of block {j} are not one whole block: {blk.tolist()}")
            key = (parent, tuple(toks[j * bs : (j + 1) * bs]))
            have = self._child.get(key)
            if have is None:
                if self._state[b] != _OWNED:
                    raise ValueError(f"block {b} is not owned by the caller; allocate() it first")
                self._child[key], self._key[b] = b, key
                self._state[b] = _CACHED
                if parent >= 0:
                    self._nchildren[parent] += 1
                self._computed += bs
                have = b
            elif have != b:
                self._release(b)  # a duplicate of a cached block
            path.append(have)
            parent = have
        for b in {int(s) // bs for s in sl[(len(toks) // bs) * bs :]}:
            self._release(b)  # the trailing partial block
        self._touch(path)

    # ---- pins ----
    def pin(self, tokens: Sequence[int]) -> int:
        path = self._path(tokens)
        for b in path:
            self._lock[b] += 1
        self._touch(path)
        self._next_handle += 1
        self._pins[self._next_handle] = path
        return self._next_handle

    def unpin(self, handle: int) -> None:
        for b in self._pins.pop(handle):
            self._lock[b] -= 1

    def stats(self) -> CacheStats:
        cached = len(self._key)
        owned = sum(1 for s in self._state if s == _OWNED)
        return CacheStats(
            hit_tokens=self._hits,
            computed_tokens=self._computed,
            evictions=self._evictions,
            blocks_in_use=cached + owned,
            free_blocks=len(self._free),
            pinned_blocks=sum(1 for b in self._key if self._lock[b] > 0),
            num_blocks=self.num_blocks,
            block_size=self.block_size,
        )


def prefix_cache_class() -> tuple[type, type]:
    """``(PrefixCache, CacheFullError)``: the native ones if built, else this reference."""
    try:
        from ..prefix_cache import CacheFullError as NativeFull
        from ..prefix_cache import PrefixCache
    except ImportError:
        return RefPrefixCache, CacheFullError
    return PrefixCache, NativeFull
