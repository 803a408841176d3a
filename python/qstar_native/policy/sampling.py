"""Sampling on the device's terms, reproducible per node.

Every sample of a node has its own counter-based random stream: the uniform for sample ``j`` of a
node at step position ``t`` is a hash of (the node's seed, j, t), where the node's seed is a hash
of (the policy seed, the node's state tokens). So a node's samples depend only on (seed, state):
not on which nodes share its batch, on the row a sample sits in, or on whether its prefix came
from the KV cache. A token is drawn by inverse CDF (``searchsorted`` on the cumulative
probabilities, all rows at once on the device); no per-row Python and no host generator.

Example:
    >>> import torch
    >>> p = sampling_probs(torch.tensor([[2.0, 1.0, -5.0]]), torch.tensor([1.0]), top_p=0.9)
    >>> [round(x, 3) for x in p[0].tolist()]
    [0.731, 0.269, 0.0]
    >>> u = uniforms(np.array([node_seed(0, [1, 2, 3])] * 2, np.uint64), np.array([0, 1]), np.array([0, 0]))
    >>> bool(0 <= u.min() and u.max() < 1 and u[0] != u[1])
    True
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def check_sampling(temperature: float, top_p: float, min_p: float) -> None:
    """Sampling settings a policy accepts: finite, temperature >= 0, 0 < top_p <= 1, 0 <= min_p < 1."""
    for name, v in (("temperature", temperature), ("top_p", top_p), ("min_p", min_p)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if temperature < 0 or not 0 < top_p <= 1 or not 0 <= min_p < 1:
        raise ValueError(f"need temperature >= 0, 0 < top_p <= 1 and 0 <= min_p < 1, got {temperature}, {top_p} and {min_p}")


def node_seed(seed: int, tokens: np.ndarray | list[int]) -> int:
    """A 64-bit seed from the policy seed and a node's state tokens (stable across runs)."""
    h = hashlib.blake2b(np.asarray(tokens, dtype=np.int64).tobytes(), digest_size=8, key=str(int(seed)).encode())
    return int.from_bytes(h.digest(), "little")


def _mix(x: np.ndarray) -> np.ndarray:  # splitmix64 finalizer, elementwise on uint64
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def uniforms(seeds: np.ndarray, sample: np.ndarray, step: np.ndarray) -> np.ndarray:
    """float64 uniforms in [0, 1): one per (node seed, sample index, step position)."""
    with np.errstate(over="ignore"):
        x = _mix(seeds.astype(np.uint64) ^ _mix(sample.astype(np.uint64) * _GOLDEN + np.uint64(1)))
        x = _mix(x ^ _mix(step.astype(np.uint64) * _M1 + np.uint64(2)))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def sampling_probs(logits: torch.Tensor, temperature: torch.Tensor, top_p: float, min_p: float = 0.0) -> torch.Tensor:
    """Row-wise sampling distribution: softmax(logits / temperature), without the tokens below
    ``min_p`` times the row's most likely one, restricted to the top-p nucleus (the smallest set of
    most likely tokens whose mass reaches ``top_p``; the token that crosses it is kept). Rows with
    temperature 0 are greedy and handled by the caller."""
    t = torch.where(temperature > 0, temperature, torch.ones_like(temperature)).to(logits.device, torch.float32)
    probs = torch.softmax(logits.float() / t[:, None], dim=-1)
    if min_p > 0.0:
        probs = probs.masked_fill(probs < min_p * probs.amax(-1, keepdim=True), 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass strictly above each token
    sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)
    out = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return out / out.sum(-1, keepdim=True)


def draw(logits: torch.Tensor, temperature: torch.Tensor, top_p: float, u: torch.Tensor, *, min_p: float = 0.0,
         greedy_samples: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Tokens ``[rows, m]`` for uniforms ``u [rows, m]``: greedy (argmax) on rows whose temperature
    is 0 and for the samples ``greedy_samples`` marks, inverse-CDF draws elsewhere. Only tokens of
    positive probability can come out."""
    greedy = logits.argmax(-1, keepdim=True).expand_as(u)
    if bool((temperature == 0).all()):
        return greedy
    cdf = sampling_probs(logits, temperature, top_p, min_p).double().cumsum(-1)
    # u scaled by the row's total and kept strictly below it: the first entry of the cumulative
    # sum above it then always belongs to a token of positive probability.
    total = cdf[:, -1:]
    v = torch.minimum(u.to(cdf.device, torch.float64) * total, torch.nextafter(total, torch.zeros_like(total)))
    drawn = torch.searchsorted(cdf, v, right=True)
    take_greedy = (temperature == 0)[:, None].to(drawn.device)
    if greedy_samples is not None:
        take_greedy = take_greedy | greedy_samples
    return torch.where(take_greedy, greedy, drawn)
