"""The KV prefix cache: which token prefixes already have KV in the caller's paged pool.

The pool holds ``num_blocks`` blocks of ``block_size`` token slots; a slot is
``block_id * block_size + offset``. The cache (a radix tree in C++, see ``csrc/prefix_cache.hpp``)
owns no tensors: it only says which slots hold which prefix. One forward over a sequence::

    handle = cache.pin(tokens)          # keep the cached prefix alive through allocate()
    hit = cache.match(tokens)           # hit.slots: KV to gather; hit.length tokens to skip
    new = cache.allocate(len(tokens) - hit.length)
    ...                                 # run the model on tokens[hit.length:], write KV to new
    cache.insert(tokens, np.concatenate([hit.slots, new]))
    cache.unpin(handle)                 # and pin(tokens) again while the node stays live

``match`` does not pin: without the ``pin`` first, ``allocate`` may evict the matched blocks.
Only whole blocks are cached, so at most ``block_size - 1`` trailing tokens are recomputed.
Block ids and eviction order are deterministic (lowest free block first; LRU by a logical clock,
ties by block id). Every call locks the cache, so engines in several threads may share one.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import _core
from .types import Tokens, as_tokens


class CacheFullError(MemoryError):
    """``allocate`` found too few blocks even after evicting everything unpinned.

    The message says how many blocks were needed, how many are pinned or held by the caller,
    and to raise ``kv_capacity``. Nothing changed in the cache.
    """


# eq=False: a generated __eq__ would compare the slot arrays with ==, which raises on arrays.
@dataclass(frozen=True, eq=False)
class PrefixMatch:
    """The longest cached block-aligned prefix of a sequence.

    Attributes:
        length: cached tokens (a multiple of ``block_size``).
        slots: int64 ``[length]``, the pool slot of each cached token, in order.
    """

    length: int
    slots: np.ndarray


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`PrefixCache`.

    ``hit_tokens``: tokens ``match`` found cached; ``computed_tokens``: tokens ``insert`` newly
    cached; ``evictions``: blocks evicted; ``blocks_in_use`` = cached + caller-owned blocks =
    ``num_blocks - free_blocks``; ``pinned_blocks``: cached blocks on a pinned path.
    """

    hit_tokens: int
    computed_tokens: int
    evictions: int
    blocks_in_use: int
    free_blocks: int
    pinned_blocks: int
    num_blocks: int
    block_size: int


class PrefixCache:
    """Token prefixes -> refcounted KV blocks, with pinning and LRU eviction.

    Example:
        >>> cache = PrefixCache(num_blocks=8, block_size=2)
        >>> slots = cache.allocate(5)            # blocks 0, 1, 2; slot 5 of block 2 unused
        >>> slots.tolist()
        [0, 1, 2, 3, 4]
        >>> cache.insert([7, 7, 8, 8, 9], slots)  # caches 2 blocks; block 2 (partial) is freed
        >>> m = cache.match([7, 7, 8, 8, 1])
        >>> m.length, m.slots.tolist()
        (4, [0, 1, 2, 3])
    """

    def __init__(self, num_blocks: int, block_size: int = 1) -> None:
        self._core = _core.PrefixCache(_as_int(num_blocks, "num_blocks"), _as_int(block_size, "block_size"))

    @property
    def num_blocks(self) -> int:
        return int(self._core.num_blocks)

    @property
    def block_size(self) -> int:
        return int(self._core.block_size)

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def match(self, tokens: Tokens) -> PrefixMatch:
        """The longest cached block-aligned prefix of ``tokens``; refreshes its LRU stamp and
        counts its tokens as hits. Does not pin."""
        slots = self._core.match(_tokens(tokens))
        return PrefixMatch(length=int(slots.size), slots=slots)

    def allocate(self, num_tokens: int) -> np.ndarray:
        """int64 slots for ``num_tokens`` new tokens in fresh whole blocks, now owned by the
        caller until :meth:`insert` or :meth:`free`. Evicts least recently used unpinned blocks
        when the free list is short; raises :class:`CacheFullError` (changing nothing) when even
        that is not enough."""
        try:
            return self._core.allocate(_as_int(num_tokens, "num_tokens"))
        except _core.CacheFullError as e:
            raise CacheFullError(str(e)) from None

    def insert(self, tokens: Tokens, slots: np.ndarray) -> None:
        """Caches ``tokens`` (the full sequence), whose KV sits in ``slots`` (one per token: the
        matched prefix's slots, then allocated ones). Caller-owned blocks for tokens the cache
        already holds, and the trailing partial block, go back to the free list. All or nothing:
        a ValueError (slots that are neither the cache's own for these tokens nor caller-owned,
        misaligned, or reused) changes nothing."""
        tok = _tokens(tokens)
        sl = _as_slots(slots, "slots")
        if sl.size != tok.size:
            raise ValueError(
                f"slots must have one entry per token: got {sl.size} slots for {tok.size} tokens; "
                "pass np.concatenate([match(tokens).slots, allocate(n)]) for the full sequence"
            )
        self._core.insert(tok, sl)

    def free(self, slots: np.ndarray) -> None:
        """Returns the caller-owned blocks holding ``slots`` to the free list (e.g. after a failed
        forward). Any slot of a block frees the whole block."""
        self._core.free(_as_slots(slots, "slots"))

    def pin(self, tokens: Tokens) -> int:
        """Locks the cached path of the longest cached prefix of ``tokens`` against eviction;
        returns the handle to give to :meth:`unpin`."""
        return int(self._core.pin(_tokens(tokens)))

    def unpin(self, handle: int) -> None:
        """Releases a :meth:`pin`. An unknown or already released handle raises ValueError."""
        self._core.unpin(_as_int(handle, "handle"))

    @property
    def num_pins(self) -> int:
        """Pins held (by engines for their live nodes, and by a policy during a batch)."""
        return int(self._core.num_pins)

    def has_pin(self, handle: int) -> bool:
        return bool(self._core.has_pin(_as_int(handle, "handle")))

    def grow(self, num_blocks: int) -> None:
        """Adds free blocks up to ``num_blocks`` (grow the KV pool first); never shrinks."""
        self._core.grow(_as_int(num_blocks, "num_blocks"))

    def clear(self) -> None:
        """Forgets every cached prefix (RuntimeError while pins or allocated blocks are live)."""
        self._core.clear()

    def pin_blocks(self, handle: int) -> np.ndarray:
        """int32 block ids on the path a pin locks, root first."""
        return self._core.pin_blocks(_as_int(handle, "handle"))

    def pinned_block_ids(self) -> np.ndarray:
        """Every block on a locked path, ascending."""
        return self._core.pinned_block_ids()

    def stats(self) -> CacheStats:
        return CacheStats(**self._core.stats())

    def check_invariants(self) -> None:
        """Raises RuntimeError naming the first broken internal invariant (for tests)."""
        self._core.check_invariants()


def _tokens(tokens: Tokens) -> np.ndarray:
    # Fast path for what a policy holds anyway: a contiguous 1-D int32 array needs no copy and no
    # min/max scan here (the core rejects negative ids itself); everything else goes through
    # as_tokens for its conversions and messages.
    if type(tokens) is np.ndarray and tokens.dtype == np.int32 and tokens.ndim == 1 and tokens.flags.c_contiguous:
        return tokens
    return as_tokens(tokens, "tokens")


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def _as_slots(slots: object, name: str) -> np.ndarray:
    arr = np.asarray(slots)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one slot per token), got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer slot ids, got dtype {arr.dtype}; pass the int64 arrays "
                        "returned by match() and allocate()")
    if arr.size and arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds slot {int(arr.max())}, outside any pool")
    return np.ascontiguousarray(arr, dtype=np.int64)
