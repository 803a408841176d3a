"""QValueModel: a Q-value head (linear or 2-layer MLP) on the hidden state of a step's last token.

Two ways to get that hidden state:

- hidden mode (:meth:`QValueModel.score_hidden`): the policy's own final hidden states
  (``HFPolicy`` hands one out with every step, ``Steps.hidden``), so scoring costs no forward pass.
- sequence mode (:meth:`QValueModel.score_sequences`): a separate backbone (any HF ``AutoModel``
  trunk or causal LM) reads question + steps + candidate.

Both end in :func:`qstar_native.kernels.qhead.score_qhead` (the Triton kernel on CUDA, its torch
reference elsewhere), so for the same weights and the same hidden states the two modes agree. They
return q only, the search's h: g and f = g + lambda * h are the C++ engine's.

NOTE: sequence mode runs right-padded batches with an attention mask; it does not reuse prefix KV.
The policy's KV pool holds the *policy's* keys and values, useless to a backbone with other
weights, and a second pool would mean duplicating HFPolicy's private prefill. When the backbone
*is* the policy model, use hidden mode: it is exact and free.

Saved as a directory: ``config.json`` (head shape and activations, and the backbone's class and
config when the backbone is saved too) and ``model.safetensors`` (head tensors ``w1``, ``b1``, ...
and ``backbone.*``).

Example:
    >>> import torch
    >>> qvm = QValueModel(hidden_size=8, head="mlp", mlp_width=4, out_act="sigmoid")
    >>> q = qvm.score_hidden(torch.randn(3, 8))
    >>> q.shape, bool(((q > 0) & (q < 1)).all())
    (torch.Size([3]), True)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from ..kernels.qhead import QHead, score_qhead
from ..types import Tokens, as_tokens

HeadKind = Literal["linear", "mlp"]
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
_ACTS = ("gelu", "relu", "silu")
_OUT_ACTS = ("identity", "sigmoid", "tanh")
_NORMS = ("none", "rms", "layer")


def backbone_hidden_size(backbone: nn.Module) -> int:
    """The width of ``backbone``'s final hidden states (``config.hidden_size``, else the input
    embedding width)."""
    size = getattr(getattr(backbone, "config", None), "hidden_size", None)
    if size is None and hasattr(backbone, "get_input_embeddings"):
        size = backbone.get_input_embeddings().embedding_dim
    if not isinstance(size, int):
        raise TypeError(
            f"cannot tell the hidden size of {type(backbone).__name__}: pass a Hugging Face model "
            "(config.hidden_size) or give hidden_size= explicitly"
        )
    return size


class QValueModel(nn.Module):
    """A Q-value head, optionally with its own backbone.

    Args:
        hidden_size: width of the hidden states the head reads; inferred from ``backbone`` if
            omitted, and must match it if both are given.
        head: ``"linear"`` (q = w1 . x + b1) or ``"mlp"`` (q = w2 . act(x W1 + b1) + b2).
        mlp_width: hidden units of the MLP head (``head="mlp"`` only).
        act: the MLP's activation: ``"gelu"``, ``"relu"`` or ``"silu"``.
        out_act: applied to q: ``"identity"``, ``"sigmoid"`` (Q in (0, 1), e.g. a success
            probability) or ``"tanh"``.
        norm: ``"none"`` (the default: HF final hidden states are already normed), ``"rms"`` or
            ``"layer"``, with a learned weight (and bias for ``"layer"``).
        backbone: an HF model for :meth:`score_sequences`; ``None`` for hidden mode only.
        seed: initialises the head deterministically.
    """

    def __init__(
        self,
        hidden_size: int | None = None,
        *,
        head: HeadKind = "linear",
        mlp_width: int | None = None,
        act: str = "gelu",
        out_act: str = "identity",
        norm: str = "none",
        eps: float = 1e-6,
        backbone: nn.Module | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if backbone is not None:
            width = backbone_hidden_size(backbone)
            if hidden_size is not None and hidden_size != width:
                raise ValueError(
                    f"hidden_size={hidden_size} does not match the backbone's hidden size {width}: "
                    "omit hidden_size to take the backbone's, or pass a head built for this backbone"
                )
            hidden_size = width
        _check_config(hidden_size, head, mlp_width, act, out_act, norm, eps)
        self.hidden_size, self.head_kind, self.mlp_width = hidden_size, head, mlp_width
        self.act, self.out_act, self.norm, self.eps = act, out_act, norm, float(eps)
        self.backbone = backbone
        gen = torch.Generator().manual_seed(seed)
        std = 1.0 / math.sqrt(hidden_size)
        if head == "linear":
            self.w1 = nn.Parameter(torch.randn(hidden_size, generator=gen) * std)
            self.b1 = nn.Parameter(torch.zeros(1))
        else:
            self.w1 = nn.Parameter(torch.randn(hidden_size, mlp_width, generator=gen) * std)
            self.b1 = nn.Parameter(torch.zeros(mlp_width))
            self.w2 = nn.Parameter(torch.randn(mlp_width, generator=gen) / math.sqrt(mlp_width))
            self.b2 = nn.Parameter(torch.zeros(1))
        if norm != "none":
            self.norm_weight = nn.Parameter(torch.ones(hidden_size))
        if norm == "layer":
            self.norm_bias = nn.Parameter(torch.zeros(hidden_size))
        if backbone is not None:  # the head follows the backbone's device
            self.to(next(backbone.parameters()).device)

    # ---- the head ---------------------------------------------------------------------------

    @property
    def qhead(self) -> QHead:
        """The head's parameters as the kernel's :class:`~qstar_native.kernels.qhead.QHead`."""
        mlp = self.head_kind == "mlp"
        return QHead(
            w1=self.w1,
            b1=self.b1,
            w2=self.w2 if mlp else None,
            b2=self.b2 if mlp else 0.0,
            act=self.act,
            out_act=self.out_act,
            norm=self.norm,
            norm_weight=getattr(self, "norm_weight", None),
            norm_bias=getattr(self, "norm_bias", None),
            eps=self.eps,
        )

    def score_hidden(self, hidden: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
        """Scores N candidates from their last-token hidden states ``[N, H]``: returns q, fp32 ``[N]``.

        Differentiable with ``backend="torch"`` (train the head with it). Raises ValueError on an
        empty batch, a width other than the head's, or a NaN/inf hidden state (naming the row).

        >>> QValueModel(hidden_size=4).score_hidden(torch.zeros(2, 4)).tolist()  # b1 starts at 0
        [0.0, 0.0]
        """
        if not isinstance(hidden, torch.Tensor):
            raise TypeError(f"hidden must be a torch.Tensor [N, {self.hidden_size}], got {type(hidden).__name__}")
        if hidden.dim() != 2:
            raise ValueError(f"hidden must be 2-D [N, {self.hidden_size}] (one row per candidate), got shape {tuple(hidden.shape)}")
        n, width = hidden.shape
        if n == 0:
            raise ValueError("empty batch: hidden has 0 rows; skip scoring when there are no candidates")
        if width != self.hidden_size:
            raise ValueError(
                f"hidden has width {width} but this QValueModel's head reads width {self.hidden_size}: "
                "score hidden states of the backbone the head was trained on"
            )
        dev = self.w1.device
        hidden = hidden.to(dev).contiguous()
        return score_qhead(hidden, torch.arange(n, device=dev), self.qhead, backend=backend)

    # ---- sequence mode ----------------------------------------------------------------------

    @torch.no_grad()
    def hidden_states(self, seqs: Sequence[Tokens], *, batch_size: int = 16) -> torch.Tensor:
        """The backbone's final hidden state at the last token of each sequence, ``[N, H]``.

        Sequences run in right-padded batches of up to ``batch_size``, sorted by length so a batch
        holds similar lengths; pads are masked out and never change a row's result.
        """
        if self.backbone is None:
            raise ValueError(
                "this QValueModel has no backbone: pass backbone= to QValueModel / from_pretrained, "
                "or score the policy's hidden states with score_hidden"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        arrs = [as_tokens(s, f"seqs[{i}]") for i, s in enumerate(seqs)]
        if not arrs:
            raise ValueError("empty batch: seqs is empty; skip scoring when there are no candidates")
        for i, a in enumerate(arrs):
            if a.size == 0:
                raise ValueError(f"seqs[{i}] is empty; each sequence needs at least one token")
        dev = self.w1.device
        out = torch.empty(len(arrs), self.hidden_size, dtype=torch.float32, device=dev)
        order = sorted(range(len(arrs)), key=lambda i: len(arrs[i]))
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            lens = [len(arrs[i]) for i in idx]
            ids = torch.zeros(len(idx), max(lens), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(idx):
                ids[r, : lens[r]] = torch.from_numpy(arrs[i].astype(np.int64))
                mask[r, : lens[r]] = 1
            h = self._last_hidden(ids.to(dev), mask.to(dev))
            out[torch.tensor(idx, device=dev)] = h[torch.arange(len(idx), device=dev), torch.tensor(lens, device=dev) - 1].float()
        return out

    def _last_hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        base = getattr(bb, "base_model", None)
        # A causal LM's trunk gives the same final hidden states without the vocab-wide LM head.
        trunk = base if base is not None and base is not bb else bb
        out = trunk(input_ids=ids, attention_mask=mask)
        last = getattr(out, "last_hidden_state", None)
        if last is None:
            last = bb(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        return last

    def score_sequences(self, seqs: Sequence[Tokens], *, batch_size: int = 16, backend: str = "auto") -> torch.Tensor:
        """Scores full states (question + steps + candidate, as token ids) with the backbone;
        returns q, fp32 ``[N]``, like :meth:`score_hidden`."""
        return self.score_hidden(self.hidden_states(seqs, batch_size=batch_size), backend=backend)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """q for hidden states ``[N, H]`` (differentiable torch path, for training)."""
        return self.score_hidden(hidden, backend="torch")

    # ---- save / load ------------------------------------------------------------------------

    def config_dict(self) -> dict:
        """The head's configuration as written to ``config.json`` (backbone excluded)."""
        return dict(
            format_version=FORMAT_VERSION, hidden_size=self.hidden_size, head=self.head_kind,
            mlp_width=self.mlp_width, act=self.act, out_act=self.out_act, norm=self.norm, eps=self.eps,
        )  # fmt: skip

    def save_pretrained(self, directory: str | Path, *, save_backbone: bool = True) -> Path:
        """Writes ``config.json`` and ``model.safetensors`` into ``directory`` (created if
        missing) and returns its path. ``save_backbone=False`` writes the head only (load it with
        ``from_pretrained(directory, backbone=...)``)."""
        from safetensors.torch import save_file

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        cfg = self.config_dict()
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.named_parameters() if not k.startswith("backbone.")}
        if save_backbone and self.backbone is not None:
            bcfg = getattr(self.backbone, "config", None)
            if bcfg is None or not hasattr(bcfg, "to_dict"):
                raise TypeError(
                    f"cannot save a {type(self.backbone).__name__} backbone (no Hugging Face config); "
                    "pass save_backbone=False and give the backbone to from_pretrained"
                )
            cfg["backbone"] = {"class": type(self.backbone).__name__, "config": bcfg.to_dict()}
            seen: set[int] = set()
            for k, v in self.backbone.state_dict().items():
                if v.data_ptr() in seen:  # tied weights (embeddings / LM head) are stored once
                    continue
                seen.add(v.data_ptr())
                tensors["backbone." + k] = v.detach().cpu().contiguous()
        save_file(tensors, str(path / WEIGHTS_NAME), metadata={"format": "pt"})
        (path / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, backbone: nn.Module | None = None) -> "QValueModel":
        """Loads a model written by :meth:`save_pretrained`.

        ``backbone`` (optional) is used instead of a saved one; without it, a saved backbone is
        rebuilt from its config and weights, and a head saved alone loads for hidden mode.
        """
        from safetensors.torch import load_file

        path = Path(directory)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such directory; pass the directory written by QValueModel.save_pretrained")
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name} is missing: {path} is not a saved QValueModel (save_pretrained writes {CONFIG_NAME} and {WEIGHTS_NAME})")
        try:
            cfg = json.loads((path / CONFIG_NAME).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path / CONFIG_NAME} is not valid JSON ({exc.msg})") from None
        if not isinstance(cfg, dict) or cfg.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path / CONFIG_NAME}: unsupported format_version {cfg.get('format_version') if isinstance(cfg, dict) else None!r}; expected {FORMAT_VERSION}")
        tensors = load_file(str(path / WEIGHTS_NAME))
        saved_bb = cfg.get("backbone")
        if backbone is None and saved_bb is not None:
            backbone = _build_backbone(saved_bb, {k[9:]: v for k, v in tensors.items() if k.startswith("backbone.")})
        if backbone is not None and backbone_hidden_size(backbone) != cfg["hidden_size"]:
            raise ValueError(
                f"the saved head reads width {cfg['hidden_size']} but the backbone's hidden size is "
                f"{backbone_hidden_size(backbone)}: pass the backbone the head was trained on"
            )
        qvm = cls(
            cfg["hidden_size"], head=cfg["head"], mlp_width=cfg.get("mlp_width"), act=cfg["act"],
            out_act=cfg["out_act"], norm=cfg["norm"], eps=cfg["eps"],
        )  # fmt: skip
        head = {k: v for k, v in tensors.items() if not k.startswith("backbone.")}
        want = {k: tuple(v.shape) for k, v in qvm.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in head.items()}
        if want != got:
            raise ValueError(f"{path / WEIGHTS_NAME} does not fit {CONFIG_NAME}: the config needs head tensors {want}, the file has {got}")
        qvm.load_state_dict(head)
        if backbone is not None:
            qvm.backbone = backbone
            qvm.to(next(backbone.parameters()).device)
        return qvm


def _build_backbone(saved: dict, state: dict[str, torch.Tensor]) -> nn.Module:
    import transformers

    cls_name, cfg = saved.get("class"), saved.get("config")
    model_cls = getattr(transformers, str(cls_name), None)
    if model_cls is None or not isinstance(cfg, dict) or "model_type" not in cfg:
        raise ValueError(f"cannot rebuild the saved backbone {cls_name!r}: pass backbone= to from_pretrained")
    config = transformers.AutoConfig.for_model(**cfg)
    model = model_cls(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    model.tie_weights()  # tied weights (embeddings / LM head) were saved once
    sd = model.state_dict()
    loaded = {sd[k].data_ptr() for k in state if k in sd}
    absent = [k for k in missing if sd[k].data_ptr() not in loaded]
    if unexpected or absent:
        raise ValueError(f"saved backbone weights do not fit {cls_name}: missing {absent}, unexpected {unexpected}")
    return model.eval()


def _check_config(hidden_size, head, mlp_width, act, out_act, norm, eps) -> None:
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive int (the backbone's hidden size), got {hidden_size!r}; or pass backbone=")
    if head not in ("linear", "mlp"):
        raise ValueError(f"head={head!r}; pick 'linear' or 'mlp'")
    if head == "mlp" and (isinstance(mlp_width, bool) or not isinstance(mlp_width, int) or mlp_width < 1):
        raise ValueError(f"head='mlp' needs mlp_width, a positive int, got {mlp_width!r}")
    if head == "linear" and mlp_width is not None:
        raise ValueError("mlp_width is only for head='mlp'; drop it or pass head='mlp'")
    for name, value, allowed in (("act", act, _ACTS), ("out_act", out_act, _OUT_ACTS), ("norm", norm, _NORMS)):
        if value not in allowed:
            raise ValueError(f"{name}={value!r}; pick one of {list(allowed)}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
