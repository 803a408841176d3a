"""Decode attention over the two-segment working KV: each node's state read once for all its rows.

In a decode step every live row attends to (a) its node's columns in the node segment (the state
the node was expanded from: gathered prefix and prefill suffix, shared by all the node's rows)
and (b) its own columns in the row segment (the step it is sampling). The two parts are computed
separately and merged exactly with their log-sum-exp (as in cascade / shared-prefix attention,
e.g. Hydragen, FlashInfer's cascade): the node part groups the rows of a node into one query
block, so the node's KV is read once per node (a matrix-matrix product) instead of once per row,
and no row ever holds a copy of its node's KV.

The function is registered with transformers' ``AttentionInterface`` under the name ``"qstar"``
and the policy's model is switched to it (:func:`install`). Outside a decode step of the policy
(any other forward of the same model: prefill, ``generate``, a QVM backbone) it hands over to
the attention the model had before, so installing it changes nothing else. Grouped-query
attention is handled by grouping query heads; the probe (:mod:`.runner`) checks the result
against a plain full forward on the model itself.
"""

from __future__ import annotations

import contextvars
from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .working_kv import WorkingKV

NAME = "qstar"
_DECODE: contextvars.ContextVar["DecodeLayout | None"] = contextvars.ContextVar("qstar_decode", default=None)


class DecodeLayout:
    """Which rows belong to which node in one decode step: ``slot[r]`` is row r's place among its
    node's rows (``0..per_node-1``); ``node_bias`` is 0 on a node's real columns, -inf on pads."""

    def __init__(self, work: WorkingKV, row_node: torch.Tensor, slot: torch.Tensor, per_node: int, node_bias: torch.Tensor) -> None:
        self.work, self.row_node, self.slot, self.per_node, self.node_bias = work, row_node, slot, per_node, node_bias

    def __enter__(self) -> "DecodeLayout":
        self._token = _DECODE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _DECODE.reset(self._token)


def cascade_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
                      dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:  # fmt: skip
    layout = _DECODE.get()
    if layout is None:  # not a decode step of the policy: the model's own attention
        fallback = ALL_ATTENTION_FUNCTIONS.get(getattr(module.config, "_qstar_fallback_attn", "sdpa"), sdpa_attention_forward)
        return fallback(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    w, layer = layout.work, module.layer_idx
    rows, heads, _, dim = query.shape  # one new token per row
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    scale = scaling if scaling is not None else dim**-0.5
    q = query.reshape(rows, kv_heads, groups, dim).float()
    # (a) node part: the rows of a node form one query block of per_node * groups queries.
    n, m = w.nodes, layout.per_node
    qn = q.new_zeros(n, m, kv_heads, groups, dim)
    qn[layout.row_node, layout.slot] = q
    qn = qn.permute(0, 2, 1, 3, 4).reshape(n, kv_heads, m * groups, dim)
    kn = w.node_keys[layer][:n, :, : w.node_length].float()
    vn = w.node_values[layer][:n, :, : w.node_length].float()
    o1, lse1 = _attend(qn, kn, vn, layout.node_bias[:, None, None, :], scale)  # normalised output and its log-sum-exp
    pick = lambda t: t.reshape(n, kv_heads, m, groups, -1).permute(0, 2, 1, 3, 4)[layout.row_node, layout.slot]  # noqa: E731
    o1, lse1 = pick(o1), pick(lse1.unsqueeze(-1))  # [rows, kv_heads, groups, *]
    # (b) row part: the row's own step so far (key/value are its row-segment columns).
    o2, lse2 = _attend(q, key.float(), value.float(), None, scale)
    lse2 = lse2.unsqueeze(-1)
    # exact merge of the two normalised parts by their log-sum-exps
    mx = torch.maximum(lse1, lse2)
    a1, a2 = torch.exp(lse1 - mx), torch.exp(lse2 - mx)
    out = (o1 * a1 + o2 * a2) / (a1 + a2)
    return out.reshape(rows, heads, 1, dim).transpose(1, 2).to(query.dtype), None


_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention ``[B, H, Lq, d]`` with an optional additive bias: (normalised output,
    log-sum-exp per query ``[B, H, Lq]``). On CPU torch's fused flash kernel, which returns the
    log-sum-exp the merge needs (~1.7x the unfused ops at decode shapes); elsewhere unfused ops."""
    if _FLASH_CPU is not None and q.device.type == "cpu":
        out, lse = _FLASH_CPU(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype), scale=scale)
        return out, lse
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if bias is not None:
        s = s + bias
    m = s.amax(-1, keepdim=True)
    p = torch.exp(s - m)
    l = p.sum(-1, keepdim=True)
    return torch.matmul(p, v) / l, (m + torch.log(l)).squeeze(-1)


AttentionInterface.register(NAME, cascade_attention)
AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def install(model: torch.nn.Module) -> None:
    """Routes ``model``'s attention through :func:`cascade_attention` (which falls back to the
    model's previous attention outside the policy's decode steps)."""
    config = model.config
    current = getattr(config, "_attn_implementation", None) or "sdpa"
    if current != NAME:
        config._qstar_fallback_attn = current if current in ALL_ATTENTION_FUNCTIONS else "sdpa"
        model.set_attn_implementation(NAME)
