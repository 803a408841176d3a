"""The decode batch's KV: preallocated buffers the model writes into, never grown by concatenation.

Per layer one K and one V buffer ``[row_capacity, kv_heads, col_capacity, head_dim]``. Rows are the
live sampled sequences of a batch; columns follow :mod:`.runner`'s layout (gathered prefix, new
suffix, then one column per decode step), shared by all rows, with a per-row 0/1 mask saying
which columns a row attends to. A forward over the first ``rows`` rows writes its new columns at
``length`` in every layer and the attention reads the views ``[:rows, :, :length]`` (no copy).

Row operations are explicit and cheap: :meth:`WorkingKV.copy_rows` copies a few rows onto others
(a finished row's slot is refilled from the end, so live rows stay a prefix; a split row starts
as a copy of its parent). Buffers are kept between batches and grow (doubling) only when
a batch needs more rows or columns than any before.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .kv_pool import LayerShape


class _BufferLayer(DynamicLayer):
    """A cache layer over a slice of preallocated buffers (see the module docstring)."""

    def __init__(self, work: "WorkingKV", index: int) -> None:
        super().__init__()
        self.work, self.index = work, index
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        w, n = self.work, key_states.shape[-2]
        a, b = w.length, w.length + n
        kb, vb = w.keys[self.index], w.values[self.index]
        kb[: w.rows, :, a:b] = key_states
        vb[: w.rows, :, a:b] = value_states
        self.keys, self.values = kb[: w.rows, :, :b], vb[: w.rows, :, :b]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.work.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.work.length + query_length, 0


class WorkingKV:
    """Preallocated decode KV for one batch at a time (see the module docstring)."""

    def __init__(self, layer_shapes: Sequence[LayerShape], dtype: torch.dtype, device: torch.device) -> None:
        self.layer_shapes, self.dtype, self.device = list(layer_shapes), dtype, device
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=device)
        self.row_capacity = self.col_capacity = 0
        self.rows = self.length = 0

    def start(self, rows: int, cols: int) -> None:
        """Begins a batch: ``rows`` live rows, room for ``cols`` columns, nothing written yet."""
        self._reserve(rows, cols, keep=False)
        self.rows, self.length = rows, 0
        self.mask[:rows, :cols] = 0

    def cache(self) -> Cache:
        """A transformers cache whose layers write into these buffers."""
        return Cache(layers=[_BufferLayer(self, i) for i in range(len(self.layer_shapes))])

    def reserve_rows(self, rows: int) -> None:
        """Room for ``rows`` rows, keeping the live ones (grows by doubling)."""
        if rows > self.row_capacity:
            self._reserve(max(rows, 2 * self.row_capacity), self.col_capacity, keep=True)

    def copy_rows(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        """Copies rows ``src`` onto rows ``dst`` (disjoint sets), KV and mask, columns ``[:length]``."""
        if len(src) == 0:
            return
        n = self.length
        for buf in (*self.keys, *self.values):
            buf[dst, :, :n] = buf[src, :, :n]
        self.mask[dst, :n] = self.mask[src, :n]

    def _reserve(self, rows: int, cols: int, keep: bool) -> None:
        if rows <= self.row_capacity and cols <= self.col_capacity:
            return
        new_rows, new_cols = max(rows, self.row_capacity), max(cols, self.col_capacity)
        keys = [torch.empty(new_rows, h, new_cols, d, dtype=self.dtype, device=self.device) for h, d in self.layer_shapes]
        values = [torch.empty_like(k) for k in keys]
        mask = torch.zeros(new_rows, new_cols, dtype=torch.long, device=self.device)
        if keep and self.rows:
            r, n = self.rows, self.length
            for new, old in zip(keys + values, self.keys + self.values):
                new[:r, :, :n] = old[:r, :, :n]
            mask[:r, :n] = self.mask[:r, :n]
        self.keys, self.values, self.mask = keys, values, mask
        self.row_capacity, self.col_capacity = new_rows, new_cols

    def row_columns(self, rows: torch.Tensor, cols: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, K and V at ``(rows[i], cols[i])`` as ``[n, heads, dim]`` (for write-back)."""
        return [(k[rows, :, cols], v[rows, :, cols]) for k, v in zip(self.keys, self.values)]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))
