"""Fused Q-value-head scoring: gather each candidate's last-token hidden state from packed hidden
states, apply the head and the output activation, giving q. One launch per batch.

q is the search's h. This module computes q only: g and f = g + lambda * h live in the C++
engine alone (one place for each rule), so nothing here takes g or lambda or returns f.

Design:
- Input is packed: ``hidden`` [T, H] holds all candidates' tokens end to end, ``last_index`` [B]
  names the row of each candidate's last token (``last_index_from_cu_seqlens`` derives it from
  varlen offsets). The kernel reads only those B rows, never the T x H tensor.
- The head is a linear layer (``w1`` [H]) or a 2-layer MLP (``w1`` [H, M], any strides, so an
  ``nn.Linear.weight.T`` view works without a copy), optionally behind the backbone's final norm
  (RMSNorm for Llama/Qwen, LayerNorm for GPT-2) when the hidden states are taken before it.
- All arithmetic is fp32 whatever the input dtype; the MLP's first layer runs on tensor cores in
  the weights' dtype on a GPU (fp32 "ieee" dot for fp32 inputs and in the interpreter, where a
  bf16 ``tl.dot`` is silently wrong).
- NaN/inf: the kernel adds (s - s), s = sum |x| of the gathered row, to q: 0 for a finite row and
  NaN otherwise, so a bad row shows in q even where sigmoid(inf) = 1 would hide it. ``score_qhead``
  then raises naming the candidate (one host sync; ``check=False`` skips it and leaves NaN in q).
- Linear head: one program per BLOCK_B candidates, looping over H. MLP head: a grid of
  (candidate blocks) x (BLOCK_M hidden units), each program a [BLOCK_B, BLOCK_M] tile of the
  first layer; the partial sums over M are added by the last program of each candidate block to
  arrive (atomic counter), in a fixed order so results are deterministic. Without that split a
  small batch kept only B / BLOCK_B SMs busy (0.1x eager at B = 64, H = 4096 on an H100).
- Block sizes come from a small heuristic, not autotune (several configs fail in the interpreter).

Example (CPU, torch reference):

>>> import torch
>>> hidden = torch.randn(10, 8)                    # two candidates of 4 and 6 tokens
>>> last = last_index_from_cu_seqlens(torch.tensor([0, 4, 10]))
>>> head = QHead(w1=torch.randn(8), b1=0.1, out_act="sigmoid")
>>> q = score_qhead(hidden, last, head)
>>> q.shape, q.dtype, bool(((q > 0) & (q < 1)).all())
(torch.Size([2]), torch.float32, True)
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

# Decorators below turn into interpreter functions iff this is set now (see tests/conftest.py).
_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
_NORMS = {"none": 0, "rms": 1, "layer": 2}
_ACTS = {"gelu": 0, "relu": 1, "silu": 2}
_OUT_ACTS = {"identity": 0, "sigmoid": 1, "tanh": 2}


class QHead(NamedTuple):
    """Parameters of a Q-value head; tensors may be fp32, fp16 or bf16.

    Linear head: ``w1`` [H], ``b1`` scalar. MLP head: ``w1`` [H, M], ``b1`` [M], ``w2`` [M], ``b2``
    scalar, ``act`` between the layers. ``norm`` ("none", "rms", "layer") is applied to the
    gathered row first with ``norm_weight`` [H] (and ``norm_bias`` [H] or None for "layer").
    ``out_act`` is "identity", "sigmoid" or "tanh". Scalars may be floats or 1-element tensors.
    """

    w1: torch.Tensor
    b1: torch.Tensor | float = 0.0
    w2: torch.Tensor | None = None
    b2: torch.Tensor | float = 0.0
    act: str = "gelu"
    out_act: str = "identity"
    norm: str = "none"
    norm_weight: torch.Tensor | None = None
    norm_bias: torch.Tensor | None = None
    eps: float = 1e-6


# ----------------------------------------------------------------------------- kernel


@triton.jit
def _hidden_act(x, KIND: tl.constexpr):
    if KIND == 0:  # exact (erf) GELU, as torch.nn.functional.gelu
        y = 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))
    elif KIND == 1:  # relu written so that NaN stays NaN, like torch.relu
        y = tl.where(x < 0.0, 0.0, x)
    else:  # silu
        y = x * tl.sigmoid(x)
    return y


@triton.jit
def _output_act(x, KIND: tl.constexpr):
    y = x
    if KIND == 1:
        y = tl.sigmoid(x)
    elif KIND == 2:  # tanh(x) = 2 sigmoid(2x) - 1; tl has no tanh
        y = 2.0 * tl.sigmoid(2.0 * x) - 1.0
    return y


@triton.jit
def _load_normed(row_ptrs, mask_b, offs_h, H, mean, rstd, nw_ptr, nb_ptr, NORM: tl.constexpr):
    """[BLOCK_B, BLOCK_H] chunk of the gathered rows in fp32, normalised; zero where h >= H."""
    mask_h = offs_h < H
    x = tl.load(row_ptrs + offs_h[None, :], mask=mask_b[:, None] & mask_h[None, :], other=0.0)
    x = x.to(tl.float32)
    if NORM != 0:
        nw = tl.load(nw_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
        x = (x - mean[:, None]) * rstd[:, None] * nw[None, :]
        if NORM == 2:
            x += tl.load(nb_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)[None, :]
    return x


@triton.jit
def _finish(pre, abs_sum, offs_b, mask_b, q_ptr, OUT_ACT: tl.constexpr):
    # (abs_sum - abs_sum) is 0 for a finite row, NaN if the row holds NaN or inf.
    q = _output_act(pre, OUT_ACT) + (abs_sum - abs_sum)
    tl.store(q_ptr + offs_b, q, mask=mask_b)


@triton.jit
def _qhead_kernel(
    hidden_ptr, stride_ht, last_ptr, q_ptr,
    w1_ptr, stride_w1h, stride_w1m, b1_ptr, w2_ptr, b2_ptr, nw_ptr, nb_ptr, part_ptr, count_ptr,
    B, H, M, eps,
    IS_MLP: tl.constexpr, NORM: tl.constexpr, ACT: tl.constexpr, OUT_ACT: tl.constexpr,
    DOT_FP32: tl.constexpr, SPLIT_M: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    pid_b = tl.program_id(0)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_b = offs_b < B
    rows = tl.load(last_ptr + offs_b, mask=mask_b, other=0).to(tl.int64)
    row_ptrs = hidden_ptr + rows[:, None] * stride_ht
    arange_h = tl.arange(0, BLOCK_H)
    abs_sum = tl.zeros([BLOCK_B], dtype=tl.float32)
    mean = tl.zeros([BLOCK_B], dtype=tl.float32)
    rstd = tl.full([BLOCK_B], 1.0, dtype=tl.float32)

    # Pass 1 (not needed by a plain linear head): norm statistics and sum |x|. The row is
    # re-read by pass 2 from L2; E[x^2] - E[x]^2 is fine in fp32 for hidden states.
    if IS_MLP or NORM != 0:
        s1 = tl.zeros([BLOCK_B], dtype=tl.float32)
        s2 = tl.zeros([BLOCK_B], dtype=tl.float32)
        for h0 in range(0, H, BLOCK_H):
            offs_h = h0 + arange_h
            m = mask_b[:, None] & (offs_h < H)[None, :]
            x = tl.load(row_ptrs + offs_h[None, :], mask=m, other=0.0).to(tl.float32)
            s1 += tl.sum(x, axis=1)
            s2 += tl.sum(x * x, axis=1)
            abs_sum += tl.sum(tl.abs(x), axis=1)
        if NORM == 1:
            rstd = 1.0 / tl.sqrt(s2 / H + eps)
        elif NORM == 2:
            mean = s1 / H
            rstd = 1.0 / tl.sqrt(tl.maximum(s2 / H - mean * mean, 0.0) + eps)

    if not IS_MLP:
        acc = tl.zeros([BLOCK_B], dtype=tl.float32)
        for h0 in range(0, H, BLOCK_H):
            offs_h = h0 + arange_h
            x = _load_normed(row_ptrs, mask_b, offs_h, H, mean, rstd, nw_ptr, nb_ptr, NORM)
            w = tl.load(w1_ptr + offs_h * stride_w1h, mask=offs_h < H, other=0.0).to(tl.float32)
            acc += tl.sum(x * w[None, :], axis=1)
            if NORM == 0:
                abs_sum += tl.sum(tl.abs(x), axis=1)
        pre = acc + tl.load(b1_ptr).to(tl.float32)
        _finish(pre, abs_sum, offs_b, mask_b, q_ptr, OUT_ACT)
    else:
        # This program's BLOCK_M hidden units: a GEMM tile [BLOCK_B, BLOCK_M] over H.
        pid_m = tl.program_id(1)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        mask_m = offs_m < M
        hid = tl.zeros([BLOCK_B, BLOCK_M], dtype=tl.float32)
        for h0 in range(0, H, BLOCK_H):
            offs_h = h0 + arange_h
            x = _load_normed(row_ptrs, mask_b, offs_h, H, mean, rstd, nw_ptr, nb_ptr, NORM)
            w1_ptrs = w1_ptr + offs_h[:, None] * stride_w1h + offs_m[None, :] * stride_w1m
            w1 = tl.load(w1_ptrs, mask=(offs_h < H)[:, None] & mask_m[None, :], other=0.0)
            if DOT_FP32:
                hid = tl.dot(x, w1.to(tl.float32), hid, input_precision="ieee")
            else:
                hid = tl.dot(x.to(w1.dtype), w1, hid)
        b1 = tl.load(b1_ptr + offs_m, mask=mask_m, other=0.0).to(tl.float32)
        w2 = tl.load(w2_ptr + offs_m, mask=mask_m, other=0.0).to(tl.float32)
        pre = tl.sum(_hidden_act(hid + b1[None, :], ACT) * w2[None, :], axis=1)
        b2 = tl.load(b2_ptr).to(tl.float32)
        if SPLIT_M:
            # Split over M in one launch, deterministically: each program stores its partial
            # sum; the last one of a candidate block to arrive (atomic counter, acq_rel) adds
            # all partials in a fixed order, finishes, and re-zeroes the counter for reuse.
            n_split = tl.num_programs(1)
            tl.store(part_ptr + pid_m * B + offs_b, pre, mask=mask_b)
            tl.debug_barrier()  # every thread's partial is written before the release
            if tl.atomic_add(count_ptr + pid_b, 1, sem="acq_rel") == n_split - 1:
                total = tl.zeros([BLOCK_B], dtype=tl.float32)
                for s in range(0, n_split):
                    part = part_ptr + s * B + offs_b
                    total += tl.load(part, mask=mask_b, other=0.0, cache_modifier=".cg")
                tl.atomic_xchg(count_ptr + pid_b, 0)
                _finish(total + b2, abs_sum, offs_b, mask_b, q_ptr, OUT_ACT)
        else:
            _finish(pre + b2, abs_sum, offs_b, mask_b, q_ptr, OUT_ACT)


# ----------------------------------------------------------------------------- validation


def _tensor(name: str, t: object, device: torch.device, ndim: int, dtypes: tuple) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but hidden is on {device}: move it with .to()")
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise ValueError(f"{name} has dtype {t.dtype}; pass one of {names} (e.g. {name}.float())")
    return t


def _vector(name: str, t: object, device: torch.device, n: int, what: str) -> torch.Tensor:
    t = _tensor(name, t, device, 1, _FLOATS)
    if t.shape[0] != n:
        raise ValueError(f"{name} has width {t.shape[0]} but must be {n} ({what})")
    if not t.is_contiguous():
        raise ValueError(f"{name} is not contiguous: pass {name}.contiguous()")
    return t


def _scalar(name: str, v: object, device: torch.device) -> torch.Tensor:
    """A scalar as a 1-element fp32-or-half tensor the kernel loads (no host sync for tensors)."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1 or v.device != device or v.dtype not in _FLOATS:
            raise ValueError(f"{name} must be a float or a 1-element float tensor on {device}")
        return v.reshape(1)
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite float, got {v!r}")
    return torch.full((1,), float(v), dtype=torch.float32, device=device)


def _validate(hidden, last_index, head) -> tuple[int, int, int]:
    """Checks every argument by raising; returns (B, H, M) with M = 0 for a linear head."""
    if not isinstance(hidden, torch.Tensor):
        raise TypeError(f"hidden must be a torch.Tensor, got {type(hidden).__name__}")
    dev = hidden.device
    _tensor("hidden", hidden, dev, 2, _FLOATS)
    T, H = hidden.shape
    if T == 0 or H == 0:
        raise ValueError(f"hidden has shape {tuple(hidden.shape)}: need >= 1 token and width >= 1")
    if hidden.stride(1) != 1:
        raise ValueError("hidden rows are not contiguous: pass hidden.contiguous()")
    _tensor("last_index", last_index, dev, 1, (torch.int32, torch.int64))
    B = last_index.shape[0]
    if B == 0:
        raise ValueError("empty batch (last_index has 0 candidates): skip scoring when a batch "
                         "has no candidates")  # fmt: skip
    if not last_index.is_contiguous():
        raise ValueError("last_index is not contiguous: pass last_index.contiguous()")
    for field, allowed in (("norm", _NORMS), ("act", _ACTS), ("out_act", _OUT_ACTS)):
        if getattr(head, field) not in allowed:
            raise ValueError(f"head.{field}={getattr(head, field)!r}; pick one of {list(allowed)}")
    if isinstance(head.w1, torch.Tensor) and head.w1.dim() not in (1, 2):
        raise ValueError(f"w1 must be [H] (linear) or [H, M] (MLP), got {tuple(head.w1.shape)}")
    w1 = _tensor("w1", head.w1, dev, getattr(head.w1, "ndim", 1), _FLOATS)
    if w1.shape[0] != H:
        raise ValueError(f"w1 has width {w1.shape[0]} but the backbone's hidden size is {H}: pass a "
                         f"head built for this backbone (w1 of shape [{H}] or [{H}, M])")  # fmt: skip
    M = 0
    if w1.dim() == 1:
        if w1.stride(0) != 1:
            raise ValueError("w1 is not contiguous: pass w1.contiguous()")
        if head.w2 is not None:
            raise ValueError("w2 is set but w1 is 1-D: a linear head has no w2 (MLP: w1 [H, M])")
        _scalar("b1", head.b1, dev)
    else:
        M = w1.shape[1]
        if M == 0:
            raise ValueError("w1 has shape [H, 0]: the MLP needs at least one hidden unit")
        _vector("b1", head.b1, dev, M, "one bias per MLP hidden unit")
        if head.w2 is None:
            raise ValueError(f"w2 is missing: an MLP head (w1 [H, M]) needs w2 of shape [{M}]")
        _vector("w2", head.w2, dev, M, "w1.shape[1], the MLP hidden size")
        _scalar("b2", head.b2, dev)
    if head.norm != "none":
        if head.norm_weight is None:
            raise ValueError(f"norm={head.norm!r} needs norm_weight of shape [{H}]")
        _vector("norm_weight", head.norm_weight, dev, H, "the backbone's hidden size")
        if head.norm_bias is not None:
            _vector("norm_bias", head.norm_bias, dev, H, "the backbone's hidden size")
        if not head.eps > 0:
            raise ValueError(f"eps must be > 0, got {head.eps!r}")
    return B, H, M


# ----------------------------------------------------------------------------- launcher


def _config(B: int, H: int, M: int, interpreted: bool, dot_fp32: bool) -> tuple[int, int, int, int]:
    """(BLOCK_B, BLOCK_H, BLOCK_M, num_warps): few big blocks in the interpreter, enough
    programs on a GPU (tuned on an H100, see bench/RESULTS.md)."""
    if M == 0:
        h = triton.next_power_of_2(H)
        if interpreted:
            return min(triton.next_power_of_2(B), 16), min(h, 1024), 1, 4
        block_b = 1 if B <= 1024 else (2 if B <= 4096 else 4)
        return block_b, min(h, 2048 // block_b), 1, 4
    # tl.dot needs every block dim >= 16; the MLP grid is (B blocks) x (M blocks).
    m16 = max(16, triton.next_power_of_2(M))
    if interpreted:
        return 16, 128, 16, 4  # M = 33 -> three M blocks: the split path is tested on CPU
    if B >= 4096 and not dot_fp32:
        return 128, 64, min(m16, 128), 8
    if B >= 1024:
        return 64, 64, min(m16, 64), 4
    return 16, 128, min(m16, 32), 4


_COUNTERS: dict[tuple, torch.Tensor] = {}


def _counters(dev: torch.device, n: int) -> torch.Tensor:
    """Zeroed int32 arrival counters for the split-M MLP, one buffer per (device, stream).

    The kernel leaves them zeroed, so no memset per launch. NOTE: under CUDA-graph capture, call
    once before capturing so the buffer is not allocated inside the graph's pool.
    """
    stream = torch.cuda.current_stream(dev).cuda_stream if dev.type == "cuda" else 0
    buf = _COUNTERS.get((dev, stream))
    if buf is None or buf.numel() < n:
        buf = torch.zeros(max(n, 1024), dtype=torch.int32, device=dev)
        _COUNTERS[(dev, stream)] = buf
    return buf


def _launch(hidden, last_index, head, B, H, M) -> torch.Tensor:
    dev = hidden.device
    q = torch.empty(B, dtype=torch.float32, device=dev)
    w1 = head.w1
    is_mlp = M > 0
    b1 = head.b1 if is_mlp else _scalar("b1", head.b1, dev)
    w2 = head.w2 if is_mlp else w1  # unused pointer when linear
    b2 = _scalar("b2", head.b2, dev) if is_mlp else b1
    nw = head.norm_weight if head.norm_weight is not None else w1
    nb = head.norm_bias if head.norm_bias is not None else nw  # only read when given
    if head.norm == "layer" and head.norm_bias is None:
        nb = torch.zeros_like(nw)
    interpreted = dev.type == "cpu"
    dot_fp32 = interpreted or torch.float32 in (hidden.dtype, w1.dtype)
    block_b, block_h, block_m, warps = _config(B, H, M, interpreted, dot_fp32)
    grid = (triton.cdiv(B, block_b), triton.cdiv(M, block_m) if is_mlp else 1)
    split = grid[1] > 1
    part = torch.empty((grid[1], B), dtype=torch.float32, device=dev) if split else q
    count = _counters(dev, grid[0]) if split else q
    _qhead_kernel[grid](
        hidden, hidden.stride(0), last_index, q,
        w1, w1.stride(0), w1.stride(1) if is_mlp else 0, b1, w2, b2, nw, nb, part, count,
        B, H, max(M, 1), float(head.eps),
        IS_MLP=is_mlp, NORM=_NORMS[head.norm], ACT=_ACTS[head.act],
        OUT_ACT=_OUT_ACTS[head.out_act], DOT_FP32=dot_fp32, SPLIT_M=split,
        BLOCK_B=block_b, BLOCK_H=block_h, BLOCK_M=block_m, num_warps=warps,
    )  # fmt: skip
    return q


def qhead_triton(hidden: torch.Tensor, last_index: torch.Tensor, head: QHead) -> torch.Tensor:
    """Validate by raising, then run the Triton kernel once; returns q, fp32 [B].

    Needs CUDA tensors, or CPU tensors with TRITON_INTERPRET=1 set before this module was
    imported. Does no host sync: last_index is not range-checked, NaN rows give NaN in q.
    """
    B, H, M = _validate(hidden, last_index, head)
    _check_triton_device(hidden.device)
    return _launch(hidden, last_index, head, B, H, M)


def _check_triton_device(dev: torch.device) -> None:
    if dev.type == "cpu" and not _INTERPRETED:
        raise ValueError("backend='triton' got CPU tensors: move them to CUDA, set TRITON_INTERPRET"
                         "=1 before importing this module, or use backend='torch'")  # fmt: skip
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"backend='triton' supports cuda tensors, got {dev.type}")


# ----------------------------------------------------------------------------- reference


def qhead_reference(hidden: torch.Tensor, last_index: torch.Tensor, head: QHead) -> torch.Tensor:
    """Plain torch ops in fp32 (gather, norm, matmul, activation): the semantics the kernel must
    match. No validation (``score_qhead`` validates); returns q, fp32 [B], differentiable."""
    x = hidden.index_select(0, last_index.long()).float()
    finite = torch.isfinite(x).all(dim=1)
    H = x.shape[1]
    if head.norm == "rms":
        rms = torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + head.eps)
        x = x * rms * head.norm_weight.float()
    elif head.norm == "layer":
        nb = None if head.norm_bias is None else head.norm_bias.float()
        x = torch.nn.functional.layer_norm(x, (H,), head.norm_weight.float(), nb, head.eps)
    b1 = torch.as_tensor(head.b1, device=x.device).float().reshape(-1)
    if head.w1.dim() == 1:
        pre = x @ head.w1.float() + b1
    else:
        F = torch.nn.functional
        act = {"gelu": F.gelu, "relu": torch.relu, "silu": F.silu}
        hid = act[head.act](x @ head.w1.float() + b1)
        pre = hid @ head.w2.float() + torch.as_tensor(head.b2, device=x.device).float().reshape(-1)
    q = {"identity": lambda t: t, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[head.out_act](pre)
    return torch.where(finite, q, torch.full_like(q, math.nan))


# ----------------------------------------------------------------------------- public entry


def last_index_from_cu_seqlens(cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Row of each candidate's last token from varlen offsets [B+1] (0, len0, len0+len1, ...).

    >>> last_index_from_cu_seqlens(torch.tensor([0, 3, 4, 9])).tolist()
    [2, 3, 8]
    """
    _tensor("cu_seqlens", cu_seqlens, cu_seqlens.device, 1, (torch.int32, torch.int64))
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    if cu_seqlens.numel() and (cu_seqlens[0] != 0 or (lengths <= 0).any()):  # host sync
        raise ValueError("cu_seqlens must start at 0 and strictly increase: every candidate "
                         "needs at least one token")  # fmt: skip
    return cu_seqlens[1:] - 1


def score_qhead(
    hidden: torch.Tensor,
    last_index: torch.Tensor,
    head: QHead,
    *,
    backend: str = "auto",
    check: bool = True,
) -> torch.Tensor:
    """Score B candidates: q = out_act(head(norm(hidden[last_index]))), fp32 [B].

    ``backend``: "auto" (Triton on CUDA, the torch reference otherwise), "triton" or "torch".
    ``check``: also range-check last_index before the launch and raise if a q is NaN/inf,
    naming the candidate (two host syncs); with False a bad row leaves NaN in q.

    >>> score_qhead(torch.ones(3, 4), torch.tensor([2]), QHead(w1=torch.ones(4), b1=0.5)).tolist()
    [4.5]
    """
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend={backend!r}; pick 'auto', 'triton' or 'torch'")
    B, H, M = _validate(hidden, last_index, head)
    if check:
        lo, hi = (int(v) for v in torch.aminmax(last_index))
        if lo < 0 or hi >= hidden.shape[0]:
            raise ValueError(f"last_index holds rows in [{lo}, {hi}] but hidden has "
                             f"{hidden.shape[0]} rows: indices must lie in [0, T)")  # fmt: skip
    use_triton = backend == "triton" or (backend == "auto" and hidden.device.type == "cuda")
    if use_triton:
        _check_triton_device(hidden.device)
        q = _launch(hidden, last_index, head, B, H, M)
    else:
        q = qhead_reference(hidden, last_index, head)
    if check:
        _raise_if_not_finite(q, hidden, last_index)
    return q


def _raise_if_not_finite(q: torch.Tensor, hidden: torch.Tensor, last_index: torch.Tensor) -> None:
    bad = ~torch.isfinite(q)
    if not bool(bad.any()):
        return
    i = int(bad.nonzero()[0, 0])
    row = int(last_index[i])
    if not bool(torch.isfinite(hidden[row]).all()):
        raise ValueError(f"hidden state of candidate {i} (row {row}) holds NaN/inf: check the "
                         "backbone's output before scoring")  # fmt: skip
    raise ValueError(f"q of candidate {i} is NaN/inf although its hidden row {row} is finite: "
                     "the head parameters hold NaN/inf or the head overflows")  # fmt: skip
