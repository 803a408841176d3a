"""Runs a Hugging Face causal LM on ragged batches with an externally built KV cache.

Layout of one batch (row i has ``p_i`` cached prefix tokens and ``s_i`` new tokens)::

    columns:  [0, P)                  [P, P + S)              [P + S, ...)
              gathered prefix KV      new suffix tokens       decode tokens, one per step
              (right-padded to P)     (right-padded to S)

A 2-D attention mask marks pads 0 and ``position_ids = p_i + arange`` gives each row its own
positions, so pads are never attended and RoPE / learned positions see the true offsets. In
transformers 5.x the causal mask is built in cache-column coordinates (query offset = cache
length), which is what makes this layout exact. :meth:`ModelRunner.probe` checks exactness on
the model itself; models that fail it (sliding-window caches, custom attention) are run without
prefix sharing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from .kv_pool import LayerKV, LayerShape


@dataclass(frozen=True)
class Probe:
    """What probing a model found out."""

    layer_shapes: list[LayerShape]
    dtype: torch.dtype
    split_head: bool  # base model + output embeddings reproduce the model's logits
    shares_kv: bool  # a gathered, padded prefix cache reproduces a full forward
    reason: str  # why shares_kv is False ("" otherwise)


class ModelRunner:
    """Forward passes of ``model`` on (ids, 2-D mask, position ids, cache), returning the final
    hidden state (post final norm, i.e. the LM head's input) and logits at chosen positions."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        base = getattr(model, "base_model", None)
        self.base = base if base is not None and base is not model else None
        self.head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        self.split_head = False
        self.device = next(model.parameters()).device

    @staticmethod
    def cache_from(kv: list[LayerKV]) -> DynamicCache:
        """A DynamicCache holding ``[batch, heads, length, dim]`` K/V per layer."""
        return DynamicCache([(k, v) for k, v in kv])

    @staticmethod
    def layer_kv(cache: DynamicCache) -> list[LayerKV]:
        return [(layer.keys, layer.values) for layer in cache.layers]

    @torch.inference_mode()
    def run(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        pos: torch.Tensor,
        cache: DynamicCache,
        rows: torch.Tensor,
        cols: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs ``ids [B, S]`` and returns ``(logits, hidden)`` at positions ``(rows[j], cols[j])``.

        ``cache`` is extended in place with the new tokens' KV.
        """
        kw = dict(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        if self.split_head:
            hidden = self.base(**kw).last_hidden_state[rows, cols]
            return self.head(hidden).float(), hidden
        out = self.model(**kw, output_hidden_states=True)
        return out.logits[rows, cols].float(), out.hidden_states[-1][rows, cols]

    @torch.inference_mode()
    def probe(self, vocab_size: int, atol: float = 1e-4) -> Probe:
        """Finds layer shapes and checks, on this model, that base+head and the padded gathered
        prefix layout reproduce a plain full forward."""
        g = torch.Generator().manual_seed(0)
        seq = torch.randint(0, vocab_size, (1, 7), generator=g, device=self.device)
        full = self.model(input_ids=seq, use_cache=True)
        ref = full.logits[0].float()
        layers = getattr(full, "cache", None) or getattr(full, "past_key_values", None)
        try:
            kv = self.layer_kv(layers)
            shapes = [(int(k.shape[1]), int(k.shape[3])) for k, _ in kv]
            dtype = kv[0][0].dtype
        except (AttributeError, TypeError, IndexError) as err:
            return Probe([], ref.dtype, False, False, f"cache has no per-layer keys/values ({err})")
        if self.base is not None and self.head is not None:
            try:
                h = self.base(input_ids=seq).last_hidden_state[0]
                self.split_head = bool(torch.allclose(self.head(h).float(), ref, atol=atol))
            except Exception:  # noqa: BLE001 - any failure just means: use the full model
                self.split_head = False
        if any(getattr(layer, "is_sliding", False) for layer in layers.layers):
            return Probe(shapes, dtype, self.split_head, False, "the model uses sliding-window cache layers")
        try:
            err = self._check_gathered(seq[0], ref, kv)
        except Exception as exc:  # noqa: BLE001 - the model cannot take this cache layout
            return Probe(shapes, dtype, self.split_head, False, f"forward with a gathered cache failed: {exc!r}")
        if err > atol:
            return Probe(shapes, dtype, self.split_head, False, f"gathered-cache logits differ by {err:.2e}")
        return Probe(shapes, dtype, self.split_head, True, "")

    def _check_gathered(self, seq: torch.Tensor, ref: torch.Tensor, kv: list[LayerKV]) -> float:
        # Row 0: prefix 4 cached + 3 new; row 1: prefix 1 cached + 2 new (pads in both regions).
        pref, new = [4, 1], [3, 2]
        P, S = 4, 3
        ks, vs = [], []
        for k, v in kv:
            kk = torch.zeros(2, k.shape[1], P, k.shape[3], dtype=k.dtype, device=k.device)
            vv = torch.zeros_like(kk)
            for i, p in enumerate(pref):
                kk[i, :, :p], vv[i, :, :p] = k[0, :, :p], v[0, :, :p]
            ks.append(kk)
            vs.append(vv)
        ids = torch.zeros(2, S, dtype=torch.long, device=seq.device)
        mask = torch.zeros(2, P + S, dtype=torch.long, device=seq.device)
        pos = torch.zeros(2, S, dtype=torch.long, device=seq.device)
        for i, (p, n) in enumerate(zip(pref, new)):
            ids[i, :n] = seq[p : p + n]
            mask[i, :p] = 1
            mask[i, P : P + n] = 1
            pos[i] = p + torch.arange(S)
        rows = torch.tensor([0, 0, 0, 1, 1])
        cols = torch.tensor([0, 1, 2, 0, 1])
        logits, _ = self.run(ids, mask, pos, self.cache_from(list(zip(ks, vs))), rows, cols)
        want = torch.cat([ref[4:7], ref[1:3]])
        return float((logits - want).abs().max())
