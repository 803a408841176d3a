"""Sibling groups and within-state ranking losses for training a QVM.

Rows that share a state (same question and same previous steps) are *siblings*: the candidates
A* chooses between at one node. A pointwise loss on Q-value labels is dominated by how hard the
question is (labels are mostly fixed by the question), so a head can fit it while ranking
siblings at chance. The losses here only see differences between siblings:

- :func:`pairwise_loss`: logistic loss on score differences of sibling pairs with different
  labels, each pair weighted by its label difference (RankNet).
- :func:`listwise_loss`: per sibling group, KL divergence from the labels normalised to sum 1
  to the softmax of the scores (ListNet); groups whose labels are all equal are skipped.

Scores are the head's pre-activation (the logit of a sigmoid head): ranking wants unbounded
differences, and a saturated sigmoid would give vanishing ones. :func:`group_batches` packs whole
groups into batches so every sibling pair can meet in one batch.

Example:
    >>> import torch
    >>> groups, y = np.array([0, 0, 0, 1]), torch.tensor([1.0, 0.0, 0.0, 1.0])
    >>> sibling_pairs(groups, y.numpy())  # (better, worse) row pairs
    (array([0, 0]), array([1, 2]))
    >>> right, wrong = torch.tensor([2.0, -2.0, -2.0, 0.0]), torch.tensor([-2.0, 2.0, 2.0, 0.0])
    >>> bool(pairwise_loss(right, y, groups) < pairwise_loss(wrong, y, groups))
    True
"""

from __future__ import annotations

import json
from typing import Hashable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["RANK_LOSSES", "group_batches", "group_index", "listwise_loss", "pairwise_loss", "rank_loss", "sibling_pairs", "state_id"]

RANK_LOSSES = ("none", "pairwise", "listwise")


def state_id(question_id: str, steps: Sequence[str]) -> str:
    """The group key of a row: its question and the texts of the steps before the candidate.

    >>> state_id("q1", ("a\\n",))
    '["q1", "a\\\\n"]'
    """
    return json.dumps([question_id, *steps], ensure_ascii=False)  # JSON: no two states share a key


def group_index(keys: Sequence[Hashable]) -> np.ndarray:
    """Dense int ids ``0..G-1`` of ``keys`` in order of first appearance.

    >>> group_index(["b", "a", "b"]).tolist()
    [0, 1, 0]
    """
    ids: dict[Hashable, int] = {}
    return np.fromiter((ids.setdefault(k, len(ids)) for k in keys), dtype=np.int64, count=len(keys))


def sibling_pairs(groups: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair ``(i, j)`` of rows in one group with ``labels[i] > labels[j]``, as two
    index arrays (sorted by i, then j). Costs the sum of squared group sizes, not N^2."""
    groups, labels = np.asarray(groups).reshape(-1), np.asarray(labels).reshape(-1)
    if groups.shape != labels.shape:
        raise ValueError(f"got {groups.size} group ids and {labels.size} labels; pass one group id per label")
    order = np.argsort(groups, kind="stable")
    _, start, count = np.unique(groups[order], return_index=True, return_counts=True)
    size, first = np.repeat(count, count), np.repeat(start, count)  # per sorted row: its group's size and start
    i = np.repeat(np.arange(len(order)), size)  # each sorted row, once per member of its group
    offset = np.arange(size.sum()) - np.repeat(np.cumsum(size) - size, size)
    j = np.repeat(first, size) + offset
    i, j = order[i], order[j]
    keep = labels[i] > labels[j]
    i, j = i[keep], j[keep]
    by = np.lexsort((j, i))
    return i[by], j[by]


def pairwise_loss(scores: torch.Tensor, labels: torch.Tensor, groups: np.ndarray) -> torch.Tensor:
    """``sum w * softplus(s_j - s_i) / sum w`` over sibling pairs with ``labels[i] > labels[j]``,
    ``w = labels[i] - labels[j]``; 0 (with a graph) when there is no such pair."""
    i, j = sibling_pairs(groups, labels.detach().cpu().numpy())
    if len(i) == 0:
        return scores.sum() * 0.0  # keeps backward() valid when a batch has no informative pair
    i, j = torch.as_tensor(i, device=scores.device), torch.as_tensor(j, device=scores.device)
    w = labels[i] - labels[j]
    return (w * F.softplus(scores[j] - scores[i])).sum() / w.sum()


def listwise_loss(scores: torch.Tensor, labels: torch.Tensor, groups: np.ndarray) -> torch.Tensor:
    """Mean over groups with unequal labels of ``KL(p || softmax(scores))``, ``p = labels /
    sum(labels)`` within the group; labels must be >= 0. 0 (with a graph) when no group qualifies."""
    dev = scores.device
    keys, inv = np.unique(np.asarray(groups).reshape(-1), return_inverse=True)
    g, n_groups = torch.as_tensor(inv.reshape(-1), device=dev), len(keys)
    hi = torch.full((n_groups,), -torch.inf, device=dev).scatter_reduce(0, g, labels, "amax")
    lo = torch.full((n_groups,), torch.inf, device=dev).scatter_reduce(0, g, labels, "amin")
    useful = hi > lo  # equal labels: the target would only pull siblings' scores together
    if not bool(useful.any()):
        return scores.sum() * 0.0
    p = labels / torch.zeros(n_groups, device=dev).index_add(0, g, labels)[g].clamp_min(1e-30)
    top = torch.full((n_groups,), -torch.inf, device=dev).scatter_reduce(0, g, scores.detach(), "amax")
    lse = torch.zeros(n_groups, device=dev).index_add(0, g, torch.exp(scores - top[g])).log() + top
    log_q = scores - lse[g]
    kl = torch.where(p > 0, p * (torch.log(p.clamp_min(1e-30)) - log_q), torch.zeros_like(p))
    per_group = torch.zeros(n_groups, device=dev).index_add(0, g, kl)
    return per_group[useful].mean()


def rank_loss(kind: str, scores: torch.Tensor, labels: torch.Tensor, groups: np.ndarray) -> torch.Tensor:
    """:func:`pairwise_loss` or :func:`listwise_loss` by name."""
    if kind == "pairwise":
        return pairwise_loss(scores, labels, groups)
    if kind == "listwise":
        return listwise_loss(scores, labels, groups)
    raise ValueError(f"rank_loss={kind!r}; pick 'pairwise' or 'listwise' (or 'none' for no ranking term)")


def group_batches(groups: np.ndarray, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    """Positions ``0..N-1`` in batches of whole groups, siblings never split: groups in a random
    order (drawn from ``generator``) fill a batch up to ``batch_size`` rows; a group larger than
    ``batch_size`` is a batch of its own.

    >>> [b.tolist() for b in group_batches(np.array([0, 1, 0, 2]), 2, torch.Generator().manual_seed(0))]
    [[3], [0, 2], [1]]
    """
    groups = np.asarray(groups).reshape(-1)
    _, inv = np.unique(groups, return_inverse=True)
    members = np.split(np.argsort(inv, kind="stable"), np.cumsum(np.bincount(inv))[:-1])
    batches: list[np.ndarray] = []
    current: list[np.ndarray] = []
    rows = 0
    for k in torch.randperm(len(members), generator=generator).tolist():
        if current and rows + len(members[k]) > batch_size:
            batches.append(np.concatenate(current))
            current, rows = [], 0
        current.append(members[k])
        rows += len(members[k])
    if current:
        batches.append(np.concatenate(current))
    return batches
