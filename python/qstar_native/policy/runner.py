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

from .kv_pool import LayerShape
from .working_kv import WorkingKV


@dataclass(frozen=True)
class Probe:
    """What probing a model found out."""

    layer_shapes: list[LayerShape]
    dtype: torch.dtype
    split_head: bool  # base model + output embeddings reproduce the model's logits
    shares_kv: bool  # a gathered, padded prefix in working buffers reproduces a full forward
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

    @torch.inference_mode()
    def run(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: object, rows: torch.Tensor,
            cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Runs ``ids [B, S]`` and returns ``(logits, hidden)`` at positions ``(rows[j], cols[j])``;
        ``cache`` takes the new tokens' KV."""
        kw = dict(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        if self.split_head:
            hidden = self.base(**kw).last_hidden_state[rows, cols]
            return self.head(hidden).float(), hidden
        out = self.model(**kw, output_hidden_states=True)
        return out.logits[rows, cols].float(), out.hidden_states[-1][rows, cols]

    @torch.inference_mode()
    def probe(self, vocab_size: int, atol: float = 1e-4) -> Probe:
        """Finds layer shapes and checks, on this model, that base+head and the padded gathered
        prefix layout in working buffers reproduce a plain full forward."""
        g = torch.Generator().manual_seed(0)
        seq = torch.randint(0, vocab_size, (1, 7), generator=g).to(self.device)
        full = self.model(input_ids=seq, use_cache=True)
        ref = full.logits[0].float()
        layers = getattr(full, "cache", None) or getattr(full, "past_key_values", None)
        try:
            kv = [(layer.keys, layer.values) for layer in layers.layers]
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
            err = self._check_gathered(seq[0], ref, kv, shapes, dtype)
        except Exception as exc:  # noqa: BLE001 - the model cannot take this cache layout
            return Probe(shapes, dtype, self.split_head, False, f"forward with working buffers failed: {exc!r}")
        if err > atol:
            return Probe(shapes, dtype, self.split_head, False, f"gathered-cache logits differ by {err:.2e}")
        return Probe(shapes, dtype, self.split_head, True, "")

    def _check_gathered(self, seq: torch.Tensor, ref: torch.Tensor, kv: list, shapes: list[LayerShape], dtype: torch.dtype) -> float:
        # Row 0: prefix 4 cached + 3 new; row 1: prefix 1 cached + 2 new (pads in both regions);
        # then one decode step on row 1 (token 3 at position 3).
        pref, new = [4, 1], [3, 2]
        P, S = 4, 3
        work = WorkingKV(shapes, dtype, self.device)
        work.start(2, P + S + 1)
        for (k, v), wk, wv in zip(kv, work.keys, work.values):
            for i, p in enumerate(pref):
                wk[i, :, :p], wv[i, :, :p] = k[0, :, :p], v[0, :, :p]
        ids = torch.zeros(2, S, dtype=torch.long, device=self.device)
        pos = torch.zeros(2, S, dtype=torch.long, device=self.device)
        for i, (p, n) in enumerate(zip(pref, new)):
            ids[i, :n] = seq[p : p + n]
            work.mask[i, :p] = 1
            work.mask[i, P : P + n] = 1
            pos[i] = p + torch.arange(S)
        work.length = P
        rows, cols = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 1, 2, 0, 1])
        logits, _ = self.run(ids, work.mask[:2, : P + S], pos, work.cache(), rows, cols)
        work.length = P + S
        work.mask[:2, P + S] = 1
        step, _ = self.run(seq[3:4].view(1, 1).expand(2, 1), work.mask[:2, : P + S + 1], torch.full((2, 1), 3, device=self.device),
                           work.cache(), torch.tensor([1]), torch.tensor([0]))  # fmt: skip
        got = torch.cat([logits, step])
        want = torch.cat([ref[4:7], ref[1:3], ref[3:4]])
        return float((got - want).abs().max())
