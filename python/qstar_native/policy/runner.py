"""Runs a Hugging Face causal LM on ragged batches with an externally built KV cache.

Layout of one batch (row i has ``p_i`` cached prefix tokens and ``s_i`` new tokens)::

    columns:  [0, P)                  [P, P + S)              [P + S, ...)
              gathered prefix KV      new suffix tokens       decode tokens, one per step
              (right-padded to P)     (right-padded to S)

A 2-D attention mask marks pads 0 and ``position_ids = p_i + arange`` gives each row its own
positions, so pads are never attended and RoPE / learned positions see the true offsets. In
transformers 5.x the causal mask is built in cache-column coordinates (query offset = cache
length), which is what makes this layout exact. Decode steps attend over the node's columns and
the row's own through :mod:`.attention`. :meth:`ModelRunner.probe` checks both on the model itself;
a model that fails (sliding-window caches, custom attention) is refused with the reason.
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
    def probe(self, vocab_size: int, atol: float | None = None) -> Probe:
        """Finds layer shapes and checks, on this model, that base+head and the padded gathered
        prefix layout in working buffers reproduce a plain full forward, within ``atol`` (default:
        1e-4 in float32; in half precision, 8 ulps of the largest logit, since a different
        summation order alone moves bf16 logits by ~0.1 while a wrong layout moves them by units)."""
        g = torch.Generator().manual_seed(0)
        seq = torch.randint(0, vocab_size, (1, 9), generator=g).to(self.device)
        full = self.model(input_ids=seq, use_cache=True)
        ref = full.logits[0].float()
        if atol is None:
            eps = torch.finfo(full.logits.dtype).eps
            atol = 1e-4 if eps < 1e-6 else max(1e-4, 8 * eps * float(ref.abs().max()))
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
        if not err <= atol:  # NaN fails too
            return Probe(shapes, dtype, self.split_head, False, f"gathered-cache logits differ by {err:.2e}")
        return Probe(shapes, dtype, self.split_head, True, "")

    def _check_gathered(self, seq: torch.Tensor, ref: torch.Tensor, kv: list, shapes: list[LayerShape], dtype: torch.dtype) -> float:
        """The batch layout on this model against a plain forward: node 0 has 4 cached prefix
        tokens and 3 new ones, node 1 has 1 and 2 (pads in both regions); then two decode steps
        with node 1 split into two rows (its first row feeds token 3, its second tokens 3 and 4)
        and node 0 one row (token 7), through the decode attention."""
        from .attention import DecodeLayout

        dev = self.device
        pref, new = [4, 1], [3, 2]
        P, S = 4, 3
        work = WorkingKV(shapes, dtype, dev)
        work.start(2, P + S, 2)
        for (k, v), wk, wv in zip(kv, work.node_keys, work.node_values):
            for i, p in enumerate(pref):
                wk[i, :, :p], wv[i, :, :p] = k[0, :, :p], v[0, :, :p]
        ids = torch.zeros(2, S, dtype=torch.long, device=dev)
        pos = torch.zeros(2, S, dtype=torch.long, device=dev)
        for i, (p, n) in enumerate(zip(pref, new)):
            ids[i, :n] = seq[p : p + n]
            work.node_mask[i, :p] = 1
            work.node_mask[i, P : P + n] = 1
            pos[i] = p + torch.arange(S)
        work.node_length = P
        rows, cols = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 1, 2, 0, 1])
        logits, _ = self.run(ids, work.node_mask[:2, : P + S], pos, work.cache(), rows, cols)
        work.node_length, work.phase = P + S, "decode"
        work.reserve_rows(3)
        work.rows = 3
        bias = torch.zeros(2, P + S, device=dev).masked_fill_(work.node_mask[:2, : P + S] == 0, float("-inf"))
        node, slot = torch.tensor([0, 1, 1], device=dev), torch.tensor([0, 0, 1], device=dev)
        got = [logits]
        for at, step_pos, read in (([7, 3, 3], [7, 3, 3], [0, 1]), ([0, 0, 4], [8, 4, 4], [2])):
            with DecodeLayout(work, node, slot, 2, bias):
                out, _ = self.run(seq[at][:, None], torch.zeros(3, 1, 1, 1, device=dev),
                                  torch.tensor(step_pos, device=dev)[:, None], work.cache(), torch.tensor(read), torch.zeros(len(read), dtype=torch.long))  # fmt: skip
            work.length += 1
            got.append(out)
        want = torch.cat([ref[4:7], ref[1:3], ref[7:8], ref[3:4], ref[4:5]])
        return float((torch.cat(got) - want).abs().max())
