"""The batch's KV, in preallocated buffers of two segments: one per node, one per decode row.

A node's state (its cached prefix, gathered from the pool, and the suffix its prefill computed) is
stored once, in the node segment ``[node_capacity, kv_heads, node_columns, head_dim]`` per layer,
laid out as in :mod:`.runner` (prefix right-padded to P, suffix right-padded to S, a 0/1 mask per
node). The tokens each row samples are stored in the row segment ``[row_capacity, kv_heads,
row_columns, head_dim]``: column t holds every live row's t-th step token. A decode step attends
over both (:mod:`.attention`): the node segment is read once per node for all its rows, never
copied per row, so a row split copies only its few decode columns.

Buffers are kept between batches and grow (doubling) only when a batch needs more than any
before; nothing is ever grown by concatenation.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .kv_pool import LayerShape


class _BufferLayer(DynamicLayer):
    """A cache layer writing into the working buffers: node columns in prefill, row columns in
    decode. What it returns is what the attention reads (see :mod:`.attention`)."""

    def __init__(self, work: "WorkingKV", index: int) -> None:
        super().__init__()
        self.work, self.index = work, index
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        w, i, n = self.work, self.index, key_states.shape[-2]
        if w.phase == "prefill":
            a, b = w.node_length, w.node_length + n
            w.node_keys[i][: w.nodes, :, a:b] = key_states
            w.node_values[i][: w.nodes, :, a:b] = value_states
            self.keys, self.values = w.node_keys[i][: w.nodes, :, :b], w.node_values[i][: w.nodes, :, :b]
        else:
            a, b = w.length, w.length + n
            w.row_keys[i][: w.rows, :, a:b] = key_states
            w.row_values[i][: w.rows, :, a:b] = value_states
            self.keys, self.values = w.row_keys[i][: w.rows, :, :b], w.row_values[i][: w.rows, :, :b]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        w = self.work
        return w.node_length if w.phase == "prefill" else w.node_length + w.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0


class WorkingKV:
    """Preallocated two-segment KV for one batch at a time (see the module docstring).

    ``nodes``/``node_length``: live nodes and the node columns written; ``node_mask[:nodes,
    :node_length]`` marks real (non-pad) columns. ``rows``/``length``: live decode rows and the
    row columns written (which node a row belongs to is the decoder's to say, per step).
    """

    def __init__(self, layer_shapes: Sequence[LayerShape], dtype: torch.dtype, device: torch.device) -> None:
        self.layer_shapes, self.dtype, self.device = list(layer_shapes), dtype, device
        self.node_keys: list[torch.Tensor] = []
        self.node_values: list[torch.Tensor] = []
        self.row_keys: list[torch.Tensor] = []
        self.row_values: list[torch.Tensor] = []
        self.node_mask = torch.zeros(0, 0, dtype=torch.long, device=device)
        self.node_capacity = self.node_columns = self.row_capacity = self.row_columns = 0
        self.nodes = self.node_length = self.rows = self.length = 0
        self.phase: Literal["prefill", "decode"] = "prefill"

    def start(self, nodes: int, node_columns: int, row_columns: int) -> None:
        """Begins a batch of ``nodes`` nodes (one row each), nothing written yet."""
        self.rows = self.length = 0  # nothing of an earlier batch is kept
        if nodes > self.node_capacity or node_columns > self.node_columns:
            self.node_capacity, self.node_columns = max(nodes, self.node_capacity), max(node_columns, self.node_columns)
            self.node_keys, self.node_values = self._alloc(self.node_capacity, self.node_columns)
            self.node_mask = torch.zeros(self.node_capacity, self.node_columns, dtype=torch.long, device=self.device)
        if row_columns > self.row_columns:
            self.row_columns = row_columns
            self.row_capacity = max(self.row_capacity, nodes)
            self.row_keys, self.row_values = self._alloc(self.row_capacity, self.row_columns)
        self.reserve_rows(nodes)
        self.nodes, self.node_length, self.rows, self.length, self.phase = nodes, 0, nodes, 0, "prefill"
        self.node_mask[:nodes, :node_columns] = 0

    def _alloc(self, n: int, cols: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        # Zeros, not empty: a masked column still enters attention as weight 0 x value, and
        # uninitialised memory can hold NaN bit patterns (0 x NaN = NaN; seen in bfloat16).
        keys = [torch.zeros(n, h, cols, d, dtype=self.dtype, device=self.device) for h, d in self.layer_shapes]
        return keys, [torch.zeros_like(k) for k in keys]

    def cache(self) -> Cache:
        """A transformers cache whose layers write into these buffers."""
        return Cache(layers=[_BufferLayer(self, i) for i in range(len(self.layer_shapes))])

    def reserve_rows(self, rows: int) -> None:
        """Room for ``rows`` decode rows, keeping the live ones (grows by doubling)."""
        if rows <= self.row_capacity:
            return
        cap = max(rows, 2 * self.row_capacity)
        keys, values = self._alloc(cap, self.row_columns)
        for new, old in zip(keys + values, self.row_keys + self.row_values):
            new[: self.rows, :, : self.length] = old[: self.rows, :, : self.length]
        self.row_keys, self.row_values, self.row_capacity = keys, values, cap

    def copy_rows(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        """Copies rows ``src`` onto rows ``dst`` (disjoint sets): their decode columns."""
        if len(src) == 0:
            return
        n = self.length
        for buf in (*self.row_keys, *self.row_values):
            buf[dst, :, :n] = buf[src, :, :n]

    def node_columns_kv(self, nodes: torch.Tensor, cols: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, K and V at node columns ``(nodes[i], cols[i])`` as ``[n, heads, dim]``."""
        return [(k[nodes, :, cols], v[nodes, :, cols]) for k, v in zip(self.node_keys, self.node_values)]

    def row_columns_kv(self, rows: torch.Tensor, cols: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, K and V at row columns ``(rows[i], cols[i])`` as ``[n, heads, dim]``."""
        return [(k[rows, :, cols], v[rows, :, cols]) for k, v in zip(self.row_keys, self.row_values)]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.node_keys, *self.node_values, *self.row_keys, *self.row_values))
