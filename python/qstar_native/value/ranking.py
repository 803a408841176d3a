"""Sibling ranking: groups, within-state ranking losses for training a QVM, and the metrics that
tell ranking siblings from telling questions apart.

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

Metrics. A* compares candidates of one state (and nodes of different depths on the open set), so
the pooled AUC over all rows can mislead: it rewards telling easy questions from hard ones, which
labels mostly encode. The metrics separate those effects:

- :func:`rank_auc`: pooled ROC AUC over all rows.
- :func:`sibling_auc`: AUC over pairs of siblings whose labels differ, the ranking A* needs when
  it expands a node; :func:`sibling_auc_ci` adds a bootstrap-by-question interval.
- :func:`question_mean_auc`: the pooled AUC of giving every row its question's mean label, an
  *oracle* of question difficulty (it reads the labels it is scored on): the upper reference for
  how much of a pooled AUC telling questions apart alone can explain.
- :func:`positive_score_by_depth`: mean score of positive rows per depth, to spot a score that
  falls with depth on correct paths (which biases A* towards shallow nodes).

Metric scores are compared as given (use q, what search sees; a saturated sigmoid's ties count 1/2).

Example:
    >>> import torch
    >>> groups, y = np.array([0, 0, 0, 1]), torch.tensor([1.0, 0.0, 0.0, 1.0])
    >>> sibling_pairs(groups, y.numpy())  # (better, worse) row pairs
    (array([0, 0]), array([1, 2]))
    >>> right, wrong = torch.tensor([2.0, -2.0, -2.0, 0.0]), torch.tensor([-2.0, 2.0, 2.0, 0.0])
    >>> bool(pairwise_loss(right, y, groups) < pairwise_loss(wrong, y, groups))
    True
    >>> scores, labels = [0.9, 0.1, 0.5, 0.5], [1.0, 0.0, 1.0, 0.0]
    >>> states, questions = ["s1", "s1", "s2", "s2"], ["a", "a", "b", "b"]
    >>> sibling_auc(scores, labels, states), sibling_pair_count(labels, states)
    (0.75, 2)
    >>> question_mean_auc(labels, questions)
    0.5
"""

from __future__ import annotations

import json
import math
from typing import Hashable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

__all__ = [
    "RANK_LOSSES", "group_batches", "group_index", "listwise_loss", "pairwise_loss", "positive_score_by_depth", "question_mean_auc",
    "rank_auc", "rank_loss", "sibling_auc", "sibling_auc_ci", "sibling_pair_count", "sibling_pairs", "state_id",
]  # fmt: skip

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


# Metrics

ArrayLike = Sequence[float] | np.ndarray | torch.Tensor


def _np(x: ArrayLike | Sequence[bool], dtype: type = np.float64) -> np.ndarray:
    return np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=dtype).reshape(-1)


def rank_auc(scores: ArrayLike, positive: Sequence[bool] | np.ndarray | torch.Tensor) -> float:
    """ROC AUC: the probability that a random positive scores above a random negative, ties
    counting one half (Mann-Whitney U from average ranks). Returns nan when only one class is
    present (AUC is undefined there); raises on NaN scores or mismatched lengths.

    >>> rank_auc([0.1, 0.4, 0.4, 0.9], [False, False, True, True])
    0.875
    """
    s, p = _np(scores), _np(positive, bool)
    if s.shape != p.shape:
        raise ValueError(f"got {s.size} scores and {p.size} labels; pass one label per score")
    if np.isnan(s).any():
        raise ValueError(f"score {int(np.isnan(s).argmax())} is NaN; AUC needs comparable scores")
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based rank of each distinct value, ties averaged
    ranks = avg_rank[inverse.reshape(-1)]
    return float((ranks[p].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _pairs(labels: ArrayLike, state_ids: Sequence[Hashable], threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(better, worse) sibling pairs; with ``threshold``, only positive-negative pairs."""
    y = _np(labels)
    if len(state_ids) != y.size:
        raise ValueError(f"got {len(state_ids)} state ids for {y.size} labels; pass one state id per row")
    if threshold is not None:
        y = (y > threshold).astype(np.float64)
    return sibling_pairs(group_index(state_ids), y)


def _pair_credit(scores: ArrayLike, labels: ArrayLike, state_ids: Sequence[Hashable], threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per sibling pair: its better row's index and 1 / 0.5 / 0 for ranked right / tied / wrong."""
    s = _np(scores)
    i, j = _pairs(labels, state_ids, threshold)
    if s.size != len(state_ids):
        raise ValueError(f"got {s.size} scores for {len(state_ids)} rows; pass one score per row")
    if np.isnan(s).any():
        raise ValueError(f"score {int(np.isnan(s).argmax())} is NaN; AUC needs comparable scores")
    return i, (s[i] > s[j]) + 0.5 * (s[i] == s[j])


def sibling_pair_count(labels: ArrayLike, state_ids: Sequence[Hashable], *, threshold: float | None = None) -> int:
    """How many sibling pairs :func:`sibling_auc` averages over."""
    return len(_pairs(labels, state_ids, threshold)[0])


def sibling_auc(scores: ArrayLike, labels: ArrayLike, state_ids: Sequence[Hashable], *, threshold: float | None = None) -> float:
    """The fraction of sibling pairs (rows with the same state id) with different labels that
    the scores order like the labels, ties counting 1/2; nan when there is no such pair.

    ``threshold=None`` compares soft labels (a pair: one label strictly higher); a number
    compares classes, positive meaning ``label > threshold`` as in the pooled AUC of
    :func:`~qstar_native.value.train.train_qvm`. For 0/1 labels both give the same pairs.

    >>> sibling_auc([0.2, 0.3, 0.9], [0.0, 1.0, 0.5], ["s", "s", "t"])
    1.0
    """
    _, credit = _pair_credit(scores, labels, state_ids, threshold)
    return float(credit.mean()) if len(credit) else math.nan


def sibling_auc_ci(scores: ArrayLike, labels: ArrayLike, state_ids: Sequence[Hashable], question_ids: Sequence[str], *,
                   threshold: float | None = None, level: float = 0.95, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:  # fmt: skip
    """``(sibling AUC, lower, upper)``: the percentile interval of the AUC over ``n_boot``
    resamplings of whole questions (pairs of one question are not independent). nans when
    there is no sibling pair.

    >>> auc, lo, hi = sibling_auc_ci([1, 0, 1, 0, 0, 1], [1, 0, 1, 0, 1, 0], list("aabbcc"), list("aabbcc"))
    >>> round(auc, 3), lo <= auc <= hi
    (0.667, True)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level!r}")
    if len(question_ids) != len(state_ids):
        raise ValueError(f"got {len(question_ids)} question ids for {len(state_ids)} rows; pass one per row")
    better, credit = _pair_credit(scores, labels, state_ids, threshold)
    if len(credit) == 0:
        return math.nan, math.nan, math.nan
    q = group_index(question_ids)
    n_q = int(q.max()) + 1
    right = np.bincount(q[better], weights=credit, minlength=n_q)  # per question: pairs ranked right
    total = np.bincount(q[better], minlength=n_q).astype(np.float64)  # and pairs
    rng = np.random.default_rng(seed)
    boots = []
    for lo in range(0, n_boot, 256):  # chunks bound memory at 256 x questions
        draw = rng.integers(0, n_q, size=(min(256, n_boot - lo), n_q))
        with np.errstate(invalid="ignore", divide="ignore"):
            boots.append(right[draw].sum(1) / total[draw].sum(1))  # nan where a draw holds no pair
    b = np.concatenate(boots)
    tail = (1 - level) / 2 * 100
    lo_, hi_ = np.nanpercentile(b, [tail, 100 - tail])
    return float(credit.mean()), float(lo_), float(hi_)


def question_mean_auc(labels: ArrayLike, question_ids: Sequence[str], *, threshold: float = 0.5) -> float:
    """Pooled AUC (positive: ``label > threshold``) of scoring each row by the mean label of its
    question over the rows given. An oracle (it reads the labels it is judged on): a model whose
    pooled AUC is near it may only be telling questions apart; compare :func:`sibling_auc`.

    >>> question_mean_auc([1, 1, 0, 1, 0, 0], ["a", "a", "a", "b", "b", "b"])
    0.6666666666666666
    """
    y = _np(labels)
    if len(question_ids) != y.size:
        raise ValueError(f"got {len(question_ids)} question ids for {y.size} labels; pass one per row")
    q = group_index(question_ids)
    mean = np.bincount(q, weights=y) / np.bincount(q)
    return rank_auc(mean[q], y > threshold)


def positive_score_by_depth(scores: ArrayLike, labels: ArrayLike, depths: Sequence[int], *, threshold: float = 0.5) -> list[dict[str, float]]:
    """``[{"depth": d, "n": rows, "mean_q": mean score}]`` over rows with ``label > threshold``,
    by depth (number of steps before the candidate), ascending. On correct paths a good Q stays
    high with depth; a falling mean_q makes A* prefer shallow nodes.

    >>> positive_score_by_depth([0.9, 0.7, 0.5, 0.1], [1, 1, 1, 0], [0, 1, 1, 1])
    [{'depth': 0, 'n': 1, 'mean_q': 0.9}, {'depth': 1, 'n': 2, 'mean_q': 0.6}]
    """
    s, y, d = _np(scores), _np(labels), np.asarray(depths, dtype=np.int64).reshape(-1)
    if not s.size == y.size == d.size:
        raise ValueError(f"got {s.size} scores, {y.size} labels and {d.size} depths; pass one of each per row")
    keep = y > threshold
    return [{"depth": int(k), "n": int((d[keep] == k).sum()), "mean_q": float(s[keep][d[keep] == k].mean())} for k in np.unique(d[keep])]
