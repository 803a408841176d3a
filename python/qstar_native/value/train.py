"""Training a :class:`~qstar_native.value.qvm.QValueModel` on Q-value labels.

Data (:class:`TrainData`) is one label per (state, candidate) and either token sequences (state +
candidate, what :meth:`QValueModel.score_sequences` reads) or precomputed hidden states:

- :meth:`TrainData.from_items`: the ``(items, rows)`` the labellers return (``rows[i]`` labels
  ``items[i]``); sequences are ``item.next_state``, exactly the tokens the policy produced, so no
  re-tokenisation. The preferred way.
- :meth:`TrainData.from_rows`: rows read back from a JSONL file, re-encoded piece by piece
  (prompt, each step, the candidate), as the policy produced them; a step whose text the
  tokenizer splits differently from the sampled tokens can still differ, so prefer
  ``from_items`` when the items are at hand.
- :meth:`TrainData.from_features`: hidden states ``[N, H]`` you already have (policy hidden
  states, synthetic data).

Rows with the same question and previous steps are *siblings* (``TrainData.state_ids``, set by
``from_items``/``from_rows``): the candidates A* ranks at one node.

:func:`train_qvm` splits by question id (no question on both sides), trains with AdamW on MSE or
BCE, optionally plus a within-state ranking term (:mod:`.ranking`; batches then hold whole sibling
groups), stops early on validation loss or sibling AUC, restores the best epoch's weights and
reports validation loss, pooled AUC, sibling AUC and the baselines of :mod:`.metrics`. With
``train_backbone=False`` (default) the backbone runs once over all rows and only the head trains,
on those cached features. :func:`fit_fn` plugs it into :func:`~qstar_native.labels.fitted_q_iteration`.

Example:
    >>> import torch
    >>> x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    >>> data = TrainData.from_features(x, torch.sigmoid(3 * x[:, 0]), [f"q{i % 8}" for i in range(64)])
    >>> qvm = QValueModel(4, out_act="sigmoid")
    >>> report = train_qvm(qvm, data, TrainConfig(loss="bce", lr=0.1, max_epochs=30, val_fraction=0.25), progress=False)
    >>> report.val_auc > 0.9, report.n_val_questions, report.best_val_loss < report.initial_val_loss
    (True, 2, True)

    With sibling groups (4 candidates per state here), a ranking term, and the sibling AUC:

    >>> sids, qids = [f"s{i // 4}" for i in range(64)], [f"q{i // 8}" for i in range(64)]
    >>> data = TrainData.from_features(x, (x[:, 1] > 0).float(), qids, state_ids=sids)
    >>> cfg = TrainConfig(loss="bce", rank_loss="pairwise", lr=0.1, max_epochs=30, val_fraction=0.25, select_by="sibling_auc")
    >>> report = train_qvm(QValueModel(4, out_act="sigmoid"), data, cfg, progress=False)
    >>> report.val_sibling_auc > 0.9, report.n_val_sibling_pairs > 0
    (True, True)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .._progress import progress_bar
from ..kernels.qhead import score_qhead
from ..labels import LabelRow, StateAction
from ..types import TokenArray, Tokens, as_tokens
from .qvm import QValueModel
from .ranking import (
    RANK_LOSSES, group_batches, group_index, positive_score_by_depth, question_mean_auc, rank_auc, rank_loss, sibling_auc, sibling_auc_ci,
    sibling_pair_count, state_id,
)  # fmt: skip

__all__ = ["QVMFit", "TrainConfig", "TrainData", "TrainReport", "fit_fn", "rank_auc", "split_by_question", "train_qvm"]

REPORT_NAME = "train_report.json"
Featurize = Callable[[Sequence[StateAction]], torch.Tensor]
"""Hidden states ``[N, H]`` of items, when the QVM has no backbone (e.g. a fixed encoder)."""


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`train_qvm` trains.

    Args:
        loss: ``"mse"`` regresses q on the labels. ``"bce"`` treats labels in [0, 1] as success
            probabilities and needs ``out_act="sigmoid"``: the head's pre-activation is trained as a
            logit with ``binary_cross_entropy_with_logits`` (stable, same optimum as BCE on
            ``q = sigmoid(logit)``), so q stays a probability at search time.
        pointwise_weight: weight of that pointwise term; 0 trains on the ranking term alone (q then
            orders siblings but is no longer a calibrated value).
        rank_loss: a within-state term on the head's pre-activation (the logit of a sigmoid head),
            added to the pointwise one (see :mod:`.ranking`): ``"pairwise"`` (logistic loss on
            sibling score differences, weighted by label difference), ``"listwise"`` (softmax
            cross-entropy per sibling group against labels normalised to sum 1; labels >= 0) or
            ``"none"``. Needs ``TrainData.state_ids``; batches then hold whole sibling groups.
            Pointwise targets stay Q (not the advantage Q - sibling mean): A* compares q across
            states on its open set, which an advantage cannot support; the ranking term supplies
            the within-state signal instead.
        rank_weight: weight of the ranking term.
        select_by: which validation epoch is best (for early stopping and the restored weights):
            ``"loss"`` (lowest total loss) or ``"sibling_auc"`` (highest AUC between siblings).
        lr, weight_decay: AdamW's.
        batch_size: rows per optimiser step.
        max_epochs: epochs at most.
        patience: stop after this many epochs without a validation loss below (sibling AUC above)
            the best by more than ``min_delta``; the best epoch's weights are restored.
        val_fraction: fraction of *question ids* held out (at least one question when > 0);
            0 trains on everything, without validation or early stopping.
        seed: seeds batch order (and dropout when the backbone trains); ``split_seed`` (default:
            ``seed``) seeds the split, so models trained with different seeds can share one.
        train_backbone: also train the backbone (needs one, and token sequences); by default the
            backbone is frozen, run once over all rows, and only the head trains.
        feature_batch_size: sequences per backbone forward.
        device: where to train (the QVM is moved there); None: where the QVM is.
    """

    loss: Literal["mse", "bce"] = "mse"
    pointwise_weight: float = 1.0
    rank_loss: Literal["none", "pairwise", "listwise"] = "none"
    rank_weight: float = 1.0
    select_by: Literal["loss", "sibling_auc"] = "loss"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    max_epochs: int = 50
    patience: int = 5
    min_delta: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    split_seed: int | None = None
    train_backbone: bool = False
    feature_batch_size: int = 16
    device: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "bce"):
            raise ValueError(f"loss={self.loss!r}; pick 'mse' or 'bce'")
        for name in ("batch_size", "max_epochs", "patience", "feature_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0 or not self.min_delta >= 0:
            raise ValueError(f"weight_decay and min_delta must be >= 0, got {self.weight_decay!r}, {self.min_delta!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1) (the share of question ids held out), got {self.val_fraction!r}")
        if self.rank_loss not in RANK_LOSSES:
            raise ValueError(f"rank_loss={self.rank_loss!r}; pick one of {list(RANK_LOSSES)}")
        if self.select_by not in ("loss", "sibling_auc"):
            raise ValueError(f"select_by={self.select_by!r}; pick 'loss' or 'sibling_auc'")
        for name in ("pointwise_weight", "rank_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.rank_loss == "none" and self.pointwise_weight == 0:
            raise ValueError("pointwise_weight=0 with rank_loss='none' leaves nothing to train; set rank_loss='pairwise' or 'listwise', or pointwise_weight > 0")
        if self.rank_loss != "none" and self.rank_weight == 0:
            raise ValueError(f"rank_weight=0 turns rank_loss={self.rank_loss!r} off; give rank_weight > 0 or rank_loss='none'")
        if self.select_by == "sibling_auc" and self.val_fraction == 0:
            raise ValueError("select_by='sibling_auc' needs validation questions; give val_fraction > 0 or select_by='loss'")


@dataclass(frozen=True, eq=False)  # eq=False: tensors do not compare to one bool
class TrainData:
    """Labels with their question ids and either ``seqs`` (token ids of state + candidate) or
    ``features`` (hidden states ``[N, H]``). Build with the ``from_*`` constructors.

    ``state_ids``: the sibling group of each row (rows with equal ids share a state; see
    :func:`~qstar_native.value.ranking.state_id`), needed by ranking losses and sibling metrics;
    None: no groups. ``depths``: steps before each row's candidate, for the per-depth report.
    ``from_items``/``from_rows`` fill both from the rows' question ids and steps.
    """

    labels: torch.Tensor
    question_ids: tuple[str, ...]
    seqs: tuple[TokenArray, ...] | None = None
    features: torch.Tensor | None = None
    state_ids: tuple[str, ...] | None = None
    depths: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.question_ids)
        if n == 0:
            raise ValueError("no rows to train on: label some (state, candidate) pairs first")
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape [{n}] (one per row), got {tuple(self.labels.shape)}")
        bad = (~torch.isfinite(self.labels)).nonzero()
        if len(bad):
            raise ValueError(f"label of row {int(bad[0, 0])} is {float(self.labels[bad[0, 0]])}; labels must be finite")
        if (self.seqs is None) == (self.features is None):
            raise ValueError("give exactly one of seqs (token sequences) and features (hidden states)")
        if self.features is not None and (self.features.dim() != 2 or self.features.shape[0] != n):
            raise ValueError(f"features must have shape [{n}, H] (one row per label), got {tuple(self.features.shape)}")
        if self.seqs is not None and len(self.seqs) != n:
            raise ValueError(f"got {len(self.seqs)} sequences for {n} labels")
        for name in ("state_ids", "depths"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"got {len(v)} {name} for {n} labels; pass one per row (or None)")

    def __len__(self) -> int:
        return len(self.question_ids)

    @classmethod
    def from_items(cls, items: Sequence[StateAction], rows: Sequence[LabelRow], *, featurize: Featurize | None = None) -> "TrainData":
        """From a labeller's output: ``rows[i]`` labels ``items[i]`` (checked by key). Sequences
        are ``item.next_state``; with ``featurize``, features ``featurize(items)`` instead."""
        items, rows = list(items), list(rows)
        if len(items) != len(rows):
            raise ValueError(f"got {len(items)} items and {len(rows)} rows; pass the items and the rows the labeller returned for them")
        for i, (it, r) in enumerate(zip(items, rows)):
            if it.key(r.method) != r.key:
                raise ValueError(f"rows[{i}] ({r.question_id!r}, candidate {r.candidate!r}) does not label items[{i}] ({it.question_id!r}, {it.candidate.text!r}); keep the labeller's order")
        labels = torch.tensor([r.label for r in rows], dtype=torch.float32)
        qids, groups = tuple(r.question_id for r in rows), _groups(rows)
        if featurize is not None:
            return cls(labels, qids, features=torch.as_tensor(featurize(items), dtype=torch.float32), **groups)
        return cls(labels, qids, seqs=tuple(it.next_state for it in items), **groups)

    @classmethod
    def from_rows(cls, rows: Sequence[LabelRow], *, encode: Callable[[str], Tokens], question_text: Callable[[str], str]) -> "TrainData":
        """From rows alone (e.g. ``read_labels(path)``): the prompt (``question_text`` of the
        question id), each step and the candidate encoded one piece at a time, as the policy
        produced them. See the module note on tokenisation."""
        rows = list(rows)
        prompts: dict[str, list[int]] = {}
        pieces: dict[str, list[int]] = {}

        def enc(text: str, cache: dict[str, list[int]]) -> list[int]:
            if text not in cache:
                cache[text] = [int(t) for t in encode(text)]
            return cache[text]

        seqs = tuple(
            as_tokens(enc(question_text(r.question_id), prompts) + [t for piece in (*r.steps, r.candidate) for t in enc(piece, pieces)], f"encoding of row {i}")
            for i, r in enumerate(rows)
        )
        return cls(torch.tensor([r.label for r in rows], dtype=torch.float32), tuple(r.question_id for r in rows), seqs=seqs, **_groups(rows))

    @classmethod
    def from_features(cls, features: torch.Tensor, labels: torch.Tensor | Sequence[float], question_ids: Sequence[str], *,
                      state_ids: Sequence[str] | None = None, depths: Sequence[int] | None = None) -> "TrainData":  # fmt: skip
        """From hidden states ``[N, H]`` (no backbone runs); ``state_ids``/``depths`` optional."""
        return cls(torch.as_tensor(labels, dtype=torch.float32).reshape(-1), tuple(str(q) for q in question_ids), features=torch.as_tensor(features, dtype=torch.float32),
                   state_ids=None if state_ids is None else tuple(str(s) for s in state_ids), depths=None if depths is None else tuple(int(d) for d in depths))  # fmt: skip


def _groups(rows: Sequence[LabelRow]) -> dict[str, tuple]:
    """``state_ids`` and ``depths`` of label rows (state = question id + previous steps)."""
    return {"state_ids": tuple(state_id(r.question_id, r.steps) for r in rows), "depths": tuple(len(r.steps) for r in rows)}


@dataclass
class TrainReport:
    """What :func:`train_qvm` did. Losses are per epoch (index 0 = epoch 1), sample-weighted:
    train losses are averaged over the epoch's batches, validation losses computed after it.
    Losses are the whole objective (pointwise and ranking terms, weighted).

    Validation metrics (of the restored weights, on q; see :mod:`.ranking`): ``val_auc`` (also
    ``val_pooled_auc`` in :meth:`to_dict`) over all rows; ``val_sibling_auc`` over the
    ``n_val_sibling_pairs`` sibling pairs with different labels, with its 95% bootstrap-by-question
    interval ``val_sibling_auc_ci``; ``val_question_mean_auc``, the pooled AUC of the oracle that
    scores each row by its question's mean validation label (how far telling questions apart
    alone goes); ``val_positive_q_by_depth``, mean q of rows labelled > 0.5 per depth. The
    sibling metrics need state ids (nan / 0 / [] without), the depth profile depths.
    """

    train_losses: list[float]
    val_losses: list[float]
    initial_val_loss: float  # the untrained head's; nan without validation
    best_epoch: int  # 1-based; the last epoch without validation
    best_val_loss: float
    val_auc: float  # of the restored weights: q of labels > 0.5 vs <= 0.5; nan if one class
    train_auc: float
    stopped_early: bool
    n_train: int
    n_val: int
    n_val_questions: int
    val_questions: list[str] = field(default_factory=list)
    checkpoint: str | None = None
    val_sibling_aucs: list[float] = field(default_factory=list)  # per epoch, when there are state ids
    val_sibling_auc: float = math.nan
    val_sibling_auc_ci: list[float] = field(default_factory=lambda: [math.nan, math.nan])
    train_sibling_auc: float = math.nan
    n_val_sibling_pairs: int = 0
    val_question_mean_auc: float = math.nan
    val_positive_q_by_depth: list[dict[str, float]] = field(default_factory=list)

    @property
    def epochs_run(self) -> int:
        return len(self.train_losses)

    @property
    def val_pooled_auc(self) -> float:
        """``val_auc``: the AUC over all validation rows, whichever state they come from."""
        return self.val_auc

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "val_pooled_auc": self.val_pooled_auc}


def split_by_question(question_ids: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, validation ids), each sorted: ``round(val_fraction * n)`` of the n distinct
    ids, at least one when ``val_fraction > 0``, chosen by ``seed`` (independent of row order).

    >>> split_by_question(["a", "b", "a", "c", "d"], 0.25, seed=0)
    (['a', 'b', 'd'], ['c'])
    """
    ids = sorted(set(question_ids))
    if val_fraction == 0:
        return ids, []
    if len(ids) < 2:
        raise ValueError(f"val_fraction={val_fraction} needs at least 2 question ids to split by question, got {len(ids)}; pass val_fraction=0 to train without validation")
    n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
    perm = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in perm[:n_val])
    return sorted(set(ids) - set(val)), val


def _check_labels(qvm: QValueModel, labels: torch.Tensor, loss: str) -> None:
    """Labels must lie where q can reach them (and be probabilities for BCE)."""
    if loss == "bce" and qvm.out_act != "sigmoid":
        raise ValueError(f"loss='bce' needs a QValueModel with out_act='sigmoid' (q is then a probability), got out_act={qvm.out_act!r}; use loss='mse' for it")
    if loss == "bce" or qvm.out_act == "sigmoid":
        lo, hi, why = 0.0, 1.0, "loss='bce'" if loss == "bce" else "out_act='sigmoid'"
    elif qvm.out_act == "tanh":
        lo, hi, why = -1.0, 1.0, "out_act='tanh'"
    else:
        return
    bad = ((labels < lo) | (labels > hi)).nonzero()
    if len(bad):
        raise ValueError(f"label of row {int(bad[0, 0])} is {float(labels[bad[0, 0]])}, outside [{lo}, {hi}] which {why} needs; rescale the labels or use loss='mse' with out_act='identity'")


_OUT = {"identity": lambda t: t, "sigmoid": torch.sigmoid, "tanh": torch.tanh}  # as score_qhead applies out_act


def _loss(qvm: QValueModel, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, groups: np.ndarray | None) -> torch.Tensor:
    """The objective on features ``x``: ``pointwise_weight`` x MSE of q (or BCE on the logit, see
    TrainConfig) plus ``rank_weight`` x the ranking term on the pre-activation among ``groups``."""
    n = x.shape[0]
    pre = score_qhead(x, torch.arange(n, device=x.device), qvm.qhead._replace(out_act="identity"), backend="torch", check=False)
    terms = []  # TrainConfig ensures at least one
    if cfg.pointwise_weight > 0:
        point = F.binary_cross_entropy_with_logits(pre, y) if cfg.loss == "bce" else F.mse_loss(_OUT[qvm.out_act](pre), y)
        terms.append(cfg.pointwise_weight * point)
    if cfg.rank_loss != "none":
        assert groups is not None  # train_qvm checks state ids up front
        terms.append(cfg.rank_weight * rank_loss(cfg.rank_loss, pre, y, groups))
    return sum(terms[1:], terms[0])


def _padded_hidden(qvm: QValueModel, seqs: Sequence[TokenArray]) -> torch.Tensor:
    """Last-token hidden states of a batch, with gradients (QValueModel.hidden_states has none)."""
    dev, lens = qvm.w1.device, [len(s) for s in seqs]
    ids = torch.zeros(len(seqs), max(lens), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(seqs):
        ids[r, : lens[r]], mask[r, : lens[r]] = torch.from_numpy(s.astype(np.int64)), 1
    h = qvm._last_hidden(ids.to(dev), mask.to(dev))
    return h[torch.arange(len(seqs), device=dev), torch.tensor(lens, device=dev) - 1].float()


def train_qvm(
    qvm: QValueModel,
    data: TrainData | tuple[Sequence[StateAction], Sequence[LabelRow]],
    config: TrainConfig = TrainConfig(),
    *,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> TrainReport:
    """Trains ``qvm`` in place and returns a :class:`TrainReport`; ``qvm`` ends with the best
    epoch's weights (lowest validation loss, or highest sibling AUC with
    ``select_by="sibling_auc"``; the last epoch's without validation).

    ``data``: a :class:`TrainData` or a labeller's ``(items, rows)``. ``checkpoint_dir``: each new
    best is written there with ``save_pretrained`` (the backbone only when it trains: otherwise
    load with ``QValueModel.from_pretrained(dir, backbone=the_same_backbone)``), and the report as
    ``train_report.json`` at the end. Deterministic for a given config on one machine.
    """
    if not isinstance(qvm, QValueModel):
        raise TypeError(f"qvm must be a QValueModel, got {type(qvm).__name__}")
    if not isinstance(data, TrainData):
        data = TrainData.from_items(*data)
    cfg = config
    _check_labels(qvm, data.labels, cfg.loss)
    if data.features is not None and data.features.shape[1] != qvm.hidden_size:
        raise ValueError(f"features have width {data.features.shape[1]} but the QVM's head reads width {qvm.hidden_size}: use features of the backbone the head is for")
    if data.seqs is not None and qvm.backbone is None:
        raise ValueError("data holds token sequences but the QVM has no backbone: pass backbone= to QValueModel, or give features (TrainData.from_features)")
    if cfg.train_backbone and (qvm.backbone is None or data.seqs is None):
        raise ValueError("train_backbone=True needs a QVM with a backbone and token-sequence data; use train_backbone=False to train the head on features")
    for on, what in ((cfg.rank_loss != "none", f"rank_loss={cfg.rank_loss!r}"), (cfg.select_by == "sibling_auc", "select_by='sibling_auc'")):
        if on and data.state_ids is None:
            raise ValueError(f"{what} needs sibling groups but the data has no state_ids: pass state_ids= to TrainData.from_features, or build the data with TrainData.from_items / from_rows (they set them)")
    if cfg.rank_loss == "listwise" and bool((data.labels < 0).any()):
        raise ValueError(f"rank_loss='listwise' normalises labels to sum 1 and needs labels >= 0, got label {float(data.labels.min())}; use rank_loss='pairwise'")
    if cfg.device is not None:
        qvm.to(cfg.device)
    dev = qvm.w1.device
    train_ids, val_ids = split_by_question(data.question_ids, cfg.val_fraction, cfg.seed if cfg.split_seed is None else cfg.split_seed)
    val_set = set(val_ids)
    val_idx = [i for i, q in enumerate(data.question_ids) if q in val_set]
    train_idx = [i for i, q in enumerate(data.question_ids) if q not in val_set]
    groups = None if data.state_ids is None else group_index(data.state_ids)
    val_states = [] if data.state_ids is None else [data.state_ids[i] for i in val_idx]
    n_val_pairs = sibling_pair_count(data.labels[val_idx], val_states) if val_states else 0
    if cfg.select_by == "sibling_auc" and n_val_pairs == 0:
        raise ValueError("select_by='sibling_auc' but no validation state has siblings with different labels; use select_by='loss', or more questions / val_fraction")
    y = data.labels.to(dev)
    seqs = data.seqs
    # Frozen backbone: one pass over all rows, then the head trains on these features.
    feats = data.features.to(dev) if data.features is not None else None
    if feats is None and not cfg.train_backbone:
        feats = qvm.hidden_states(list(seqs), batch_size=cfg.feature_batch_size)  # type: ignore[arg-type]
    if feats is not None and not bool(torch.isfinite(feats).all()):
        raise ValueError(f"features of row {int((~torch.isfinite(feats)).any(dim=1).nonzero()[0, 0])} hold NaN/inf; check the backbone's output or the features passed")

    def features(idx: list[int], grad: bool) -> torch.Tensor:
        if feats is not None:
            return feats[torch.tensor(idx, device=dev)]
        picked = [seqs[i] for i in idx]  # type: ignore[index]
        return _padded_hidden(qvm, picked) if grad else qvm.hidden_states(picked, batch_size=cfg.feature_batch_size)

    def groups_of(idx: list[int]) -> np.ndarray | None:
        return None if groups is None else groups[idx]

    @torch.no_grad()
    def evaluate(idx: list[int]) -> tuple[float, torch.Tensor]:
        x = features(idx, grad=False)
        return float(_loss(qvm, x, y[idx], cfg, groups_of(idx))), qvm.score_hidden(x, backend="torch")

    head_names = {n for n, _ in qvm.named_parameters() if not n.startswith("backbone.")}
    params = [p for n, p in qvm.named_parameters() if cfg.train_backbone or n in head_names]
    was_training = qvm.training
    report = TrainReport(train_losses=[], val_losses=[], initial_val_loss=math.nan, best_epoch=0, best_val_loss=math.nan,
                         val_auc=math.nan, train_auc=math.nan, stopped_early=False, n_train=len(train_idx),
                         n_val=len(val_idx), n_val_questions=len(val_ids), val_questions=val_ids, n_val_sibling_pairs=n_val_pairs)  # fmt: skip
    best_sibling_auc = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    bar = progress_bar(cfg.max_epochs, "train QVM", progress)
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(cfg.seed)  # dropout, if the backbone trains; the caller's RNG is untouched
            gen = torch.Generator().manual_seed(cfg.seed)
            opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
            if val_idx:
                report.initial_val_loss = evaluate(val_idx)[0]
            bad_epochs = 0
            for epoch in range(1, cfg.max_epochs + 1):
                qvm.train(cfg.train_backbone)
                if cfg.rank_loss != "none":  # whole sibling groups per batch, so their pairs meet
                    batches = [[train_idx[j] for j in b] for b in group_batches(groups[train_idx], cfg.batch_size, gen)]  # type: ignore[index]
                else:
                    order = torch.randperm(len(train_idx), generator=gen).tolist()
                    batches = [[train_idx[j] for j in order[lo : lo + cfg.batch_size]] for lo in range(0, len(order), cfg.batch_size)]
                total = 0.0
                for idx in batches:
                    opt.zero_grad(set_to_none=True)
                    loss = _loss(qvm, features(idx, grad=True), y[idx], cfg, groups_of(idx))
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                train_loss = total / len(train_idx)
                if not math.isfinite(train_loss):
                    raise FloatingPointError(f"training diverged at epoch {epoch} (train loss {train_loss}); lower lr (now {cfg.lr})")
                report.train_losses.append(train_loss)
                qvm.eval()
                improved = not val_idx
                if val_idx:
                    vl, vq = evaluate(val_idx)
                    if not math.isfinite(vl):
                        raise FloatingPointError(f"validation loss is {vl} at epoch {epoch}; lower lr (now {cfg.lr})")
                    report.val_losses.append(vl)
                    if n_val_pairs:
                        report.val_sibling_aucs.append(sibling_auc(vq, data.labels[val_idx], val_states))
                    if cfg.select_by == "sibling_auc":
                        improved = report.val_sibling_aucs[-1] > best_sibling_auc + cfg.min_delta
                        best_sibling_auc = report.val_sibling_aucs[-1] if improved else best_sibling_auc
                    else:
                        improved = math.isnan(report.best_val_loss) or vl < report.best_val_loss - cfg.min_delta
                if improved:
                    report.best_epoch, report.best_val_loss, bad_epochs = epoch, report.val_losses[-1] if val_idx else math.nan, 0
                    # an in-memory copy (the whole model when the backbone trains) to restore at the end
                    best_state = {k: v.detach().clone() for k, v in qvm.state_dict().items() if cfg.train_backbone or k in head_names}
                    if checkpoint_dir is not None:
                        report.checkpoint = str(qvm.save_pretrained(checkpoint_dir, save_backbone=cfg.train_backbone))
                else:
                    bad_epochs += 1
                bar.update(1)
                if bad_epochs >= cfg.patience:
                    report.stopped_early = True
                    break
        assert best_state is not None  # epoch 1 is always a best
        qvm.load_state_dict(best_state, strict=False)
    finally:
        bar.close()
        qvm.train(was_training)
    _report_metrics(report, data, train_idx, val_idx, evaluate(train_idx)[1], evaluate(val_idx)[1] if val_idx else None, cfg.seed)
    if checkpoint_dir is not None:
        (Path(checkpoint_dir) / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _report_metrics(report: TrainReport, data: TrainData, train_idx: list[int], val_idx: list[int], q_train: torch.Tensor, q_val: torch.Tensor | None, seed: int) -> None:
    """Fills the report's AUCs and depth profile from the restored weights' q (see TrainReport)."""
    y = data.labels
    report.train_auc = rank_auc(q_train, y[train_idx] > 0.5)
    if data.state_ids is not None:
        report.train_sibling_auc = sibling_auc(q_train, y[train_idx], [data.state_ids[i] for i in train_idx])
    if q_val is None:
        return
    yv, qids = y[val_idx], [data.question_ids[i] for i in val_idx]
    report.val_auc = rank_auc(q_val, yv > 0.5)
    report.val_question_mean_auc = question_mean_auc(yv, qids)
    if data.state_ids is not None:
        auc, lo, hi = sibling_auc_ci(q_val, yv, [data.state_ids[i] for i in val_idx], qids, seed=seed)
        report.val_sibling_auc, report.val_sibling_auc_ci = auc, [lo, hi]
    if data.depths is not None:
        report.val_positive_q_by_depth = positive_score_by_depth(q_val, yv, [data.depths[i] for i in val_idx])


class QVMFit:
    """A ``fit(items, rows) -> q_fn`` for :func:`~qstar_native.labels.fitted_q_iteration`: each
    call trains a fresh QVM from ``make_qvm()`` (fresh, so a resumed run refits exactly what an
    uninterrupted one did) and returns ``q_fn(items)``, its q of ``item.next_state`` (or of
    ``featurize(items)``). ``reports`` collects each call's :class:`TrainReport`; with
    ``checkpoint_dir``, each call checkpoints into ``checkpoint_dir/<rows' method>``.
    """

    def __init__(self, make_qvm: Callable[[], QValueModel], config: TrainConfig, *, featurize: Featurize | None = None,
                 checkpoint_dir: str | Path | None = None, batch_size: int = 16, progress: bool = False) -> None:  # fmt: skip
        if not callable(make_qvm):
            raise TypeError("make_qvm must be a callable returning a new QValueModel, e.g. lambda: QValueModel(backbone=lm)")
        self.make_qvm, self.config, self.featurize = make_qvm, config, featurize
        self.checkpoint_dir, self.batch_size, self.progress = checkpoint_dir, batch_size, progress
        self.reports: list[TrainReport] = []
        self.qvm: QValueModel | None = None  # the last one trained

    def __call__(self, items: list[StateAction], rows: list[LabelRow]) -> Callable[[Sequence[StateAction]], list[float]]:
        qvm = self.make_qvm()
        if self.featurize is None and qvm.backbone is None:
            raise ValueError("make_qvm() gave a QValueModel without a backbone: give it one, or pass featurize= to score items")
        data = TrainData.from_items(items, rows, featurize=self.featurize)
        ckpt = None if self.checkpoint_dir is None or not rows else Path(self.checkpoint_dir) / rows[0].method
        self.reports.append(train_qvm(qvm, data, self.config, checkpoint_dir=ckpt, progress=self.progress))
        self.qvm = qvm

        @torch.no_grad()
        def q_fn(xs: Sequence[StateAction]) -> list[float]:
            if not xs:
                return []
            if self.featurize is not None:
                return qvm.score_hidden(torch.as_tensor(self.featurize(xs), dtype=torch.float32)).tolist()
            return qvm.score_sequences([x.next_state for x in xs], batch_size=self.batch_size).tolist()

        return q_fn


def fit_fn(make_qvm: Callable[[], QValueModel], config: TrainConfig, **kw: Any) -> QVMFit:
    """:class:`QVMFit` (keywords as there), for ``fitted_q_iteration(..., fit=fit_fn(...))``.

    >>> fit = fit_fn(lambda: QValueModel(backbone=lm), TrainConfig(val_fraction=0.2))  # doctest: +SKIP
    >>> rows = fitted_q_iteration(items, policy, task.outcome, fit=fit, gamma=0.9, k=4, iterations=3)  # doctest: +SKIP
    """
    return QVMFit(make_qvm, config, **kw)

