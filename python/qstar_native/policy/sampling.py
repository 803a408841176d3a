"""Sampling distributions and reproducible per-node random streams.

Each node gets its own ``torch.Generator`` seeded from the policy seed and the node's tokens, so a
node's candidates depend only on (seed, state): not on which other nodes share its batch, nor on
whether its prefix came from the KV cache or was recomputed.

Example:
    >>> import torch
    >>> p = sampling_probs(torch.tensor([[2.0, 1.0, -5.0]]), temperature=1.0, top_p=0.9)
    >>> [round(x, 3) for x in p[0].tolist()]
    [0.731, 0.269, 0.0]
    >>> node_seed(0, [1, 2, 3]) == node_seed(0, [1, 2, 3]) != node_seed(1, [1, 2, 3])
    True
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def sampling_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Row-wise sampling distribution: softmax(logits / temperature) restricted to the top-p nucleus.

    The nucleus is the smallest set of most likely tokens whose mass reaches ``top_p`` (the token
    that crosses it is kept). ``temperature == 0`` means greedy and is handled by the caller.
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass strictly above each token
    sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)
    out = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return out / out.sum(-1, keepdim=True)


def node_seed(seed: int, tokens: np.ndarray | list[int]) -> int:
    """A 63-bit seed from the policy seed and a node's state tokens (stable across runs)."""
    h = hashlib.blake2b(np.asarray(tokens, dtype=np.int64).tobytes(), digest_size=8, key=str(int(seed)).encode())
    return int.from_bytes(h.digest(), "little") >> 1


def draw(probs: torch.Tensor, n: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """``n`` independent draws from one distribution, grouped: ``[(token, count), ...]`` in
    order of first appearance (deterministic given the generator)."""
    picks = torch.multinomial(probs, n, replacement=True, generator=generator).tolist()
    counts: dict[int, int] = {}
    for t in picks:
        counts[t] = counts.get(t, 0) + 1
    return list(counts.items())
