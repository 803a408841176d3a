"""A paged KV pool: one K and one V tensor per layer, indexed by token slot.

The pool starts small and grows by doubling (:meth:`KVPool.grow`) up to a byte cap, so its size
follows what the searches in flight need; the prefix cache (:mod:`qstar_native.prefix_cache`)
decides which slots hold which token prefix. A slot is
one token position of one sequence: ``slot = block_id * block_size + offset``. Layers may differ in
head count or head size (the shapes come from probing the model), so each layer has its own tensors.

Example:
    >>> import torch
    >>> pool = KVPool([(2, 4), (2, 4)], num_blocks=8, block_size=2, dtype=torch.float32)
    >>> pool.num_slots, pool.bytes_per_slot
    (16, 128)
    >>> kv = [(torch.ones(3, 2, 4), torch.zeros(3, 2, 4))] * 2
    >>> pool.scatter(torch.tensor([5, 6, 7]), kv)
    >>> k, v = pool.gather(torch.tensor([[5, 7], [6, 0]]))[0]
    >>> tuple(k.shape), float(k[0, 0].sum()), float(k[1, 1].sum())
    ((2, 2, 2, 4), 8.0, 0.0)
"""

from __future__ import annotations

from typing import Sequence

import torch

LayerShape = tuple[int, int]  # (kv_heads, head_dim)
LayerKV = tuple[torch.Tensor, torch.Tensor]


def bytes_per_slot(layer_shapes: Sequence[LayerShape], dtype: torch.dtype) -> int:
    """Bytes one token takes in the pool: K and V of every layer."""
    elem = torch.empty((), dtype=dtype).element_size()
    return sum(2 * h * d * elem for h, d in layer_shapes)


def blocks_for_capacity(
    layer_shapes: Sequence[LayerShape],
    dtype: torch.dtype,
    block_size: int,
    *,
    kv_capacity: int | None,
    kv_blocks: int | None,
) -> int:
    """The number of blocks a pool gets from a byte budget (``kv_capacity``) or a block count.

    Exactly one of the two must be given.

    >>> blocks_for_capacity([(2, 4)], torch.float32, 4, kv_capacity=1024, kv_blocks=None)
    4
    """
    if (kv_capacity is None) == (kv_blocks is None):
        raise ValueError("give exactly one of kv_capacity (bytes) or kv_blocks (a block count)")
    if kv_blocks is not None:
        if isinstance(kv_blocks, bool) or not isinstance(kv_blocks, int) or kv_blocks < 1:
            raise ValueError(f"kv_blocks must be a positive int, got {kv_blocks!r}")
        return kv_blocks
    if isinstance(kv_capacity, bool) or not isinstance(kv_capacity, int) or kv_capacity < 1:
        raise ValueError(f"kv_capacity must be a positive number of bytes, got {kv_capacity!r}")
    per_block = bytes_per_slot(layer_shapes, dtype) * block_size
    n = kv_capacity // per_block
    if n < 1:
        raise ValueError(
            f"kv_capacity={kv_capacity} bytes holds no block: one block of {block_size} tokens takes "
            f"{per_block} bytes with this model; raise kv_capacity to at least {per_block}"
        )
    return n


class KVPool:
    """Per-layer K/V tensors of shape ``[num_slots, kv_heads, head_dim]`` (grown by :meth:`grow`).

    Args:
        layer_shapes: ``(kv_heads, head_dim)`` per layer.
        num_blocks, block_size: the pool holds ``num_blocks * block_size`` token slots.
        dtype, device: of the stored KV (the model's).
    """

    def __init__(
        self,
        layer_shapes: Sequence[LayerShape],
        num_blocks: int,
        block_size: int = 1,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size must be positive, got {num_blocks} and {block_size}")
        self.layer_shapes = [tuple(s) for s in layer_shapes]
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.num_slots = num_blocks * block_size
        self.dtype = dtype
        self.bytes_per_slot = bytes_per_slot(self.layer_shapes, dtype)
        self.keys = [torch.zeros(self.num_slots, h, d, dtype=dtype, device=device) for h, d in self.layer_shapes]
        self.values = [torch.zeros(self.num_slots, h, d, dtype=dtype, device=device) for h, d in self.layer_shapes]

    @property
    def nbytes(self) -> int:
        return self.num_slots * self.bytes_per_slot

    def grow(self, num_blocks: int) -> None:
        """Enlarges the pool to ``num_blocks`` blocks, keeping every slot's KV (one copy)."""
        if num_blocks <= self.num_blocks:
            return
        extra = (num_blocks - self.num_blocks) * self.block_size
        self.keys = [torch.cat([k, k.new_zeros(extra, *k.shape[1:])]) for k in self.keys]
        self.values = [torch.cat([v, v.new_zeros(extra, *v.shape[1:])]) for v in self.values]
        self.num_blocks, self.num_slots = num_blocks, num_blocks * self.block_size

    def gather(self, slots: torch.Tensor) -> list[LayerKV]:
        """Per layer, the K and V of ``slots`` (any shape ``S``) as ``[*S, heads, dim]`` tensors.

        For a ``[batch, length]`` slot matrix, ``k.transpose(1, 2)`` is the ``[batch, heads,
        length, dim]`` layout of a Hugging Face cache layer.
        """
        slots = slots.to(torch.long)
        return [(k[slots], v[slots]) for k, v in zip(self.keys, self.values)]

    def scatter(self, slots: torch.Tensor, kv: Sequence[LayerKV]) -> None:
        """Writes ``[n, heads, dim]`` K and V per layer into ``slots`` (``[n]``)."""
        if len(kv) != len(self.keys):
            raise ValueError(f"got KV for {len(kv)} layers; the pool has {len(self.keys)}")
        slots = slots.to(torch.long)
        for (k, v), pk, pv in zip(kv, self.keys, self.values):
            pk[slots] = k.to(pk.dtype)
            pv[slots] = v.to(pv.dtype)
