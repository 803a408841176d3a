"""Training a QVM to rank siblings: sibling metrics against brute force, the ranking losses against
direct formulas, group-preserving batches, bad configs, and a synthetic set where pooled training
tells questions apart but ranks siblings backwards while a ranking term ranks them right."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from qstar_native.value import QValueModel, ranking
from qstar_native.value import train as train_mod
from qstar_native.value.ranking import positive_score_by_depth, question_mean_auc, sibling_auc, sibling_auc_ci, sibling_pair_count
from qstar_native.value.ranking import group_batches, listwise_loss, pairwise_loss
from qstar_native.value.train import TrainConfig, TrainData, train_qvm

D_Q, K, N_NOISE = 6, 4, 2


def confounded(seed: int = 0, n_q: int = 60, n_states: int = 4) -> TrainData:
    """Questions x states x K sibling candidates; features = [question embedding (scale 2) |
    step feature z | 2 noise dims].

    A question's sign of ``e[0]`` fixes its fate: 3/4 of its states are all-solved (good
    questions) or all-dead (bad ones), so the question part explains most of the pooled label
    variance. The other states are mixed: the 2 candidates with the highest step deviation
    ``d`` are labelled 1. The step feature is ``z = offset + d`` where the state offset tracks its
    fate (solved -1, mixed 0, dead +1), a confound like a score that falls along correct paths:
    pooled, higher z means worse, within a state higher z means better.
    """
    g = torch.Generator().manual_seed(seed)
    e = 2.0 * torch.randn(n_q, D_Q, generator=g)
    feats, labels, qids, states, depths = [], [], [], [], []
    for q in range(n_q):
        for s in range(n_states):
            kind = "mixed" if float(torch.rand(1, generator=g)) < 0.25 else "solved" if e[q, 0] > 0 else "dead"
            offset = {"solved": -1.0, "mixed": 0.0, "dead": 1.0}[kind]
            d = 0.25 * torch.randn(K, generator=g)
            top = set(torch.argsort(d, descending=True)[:2].tolist())
            for c in range(K):
                feats.append(torch.cat([e[q], (offset + d[c]).reshape(1), 0.3 * torch.randn(N_NOISE, generator=g)]))
                labels.append(float(c in top) if kind == "mixed" else float(kind == "solved"))
                qids.append(f"q{q:02d}")
                states.append(f"q{q:02d}/s{s}")
                depths.append(s)
    return TrainData.from_features(torch.stack(feats), labels, qids, state_ids=states, depths=depths)


def fit(data: TrainData, **kw) -> train_mod.TrainReport:
    cfg = TrainConfig(**{"loss": "bce", "lr": 0.05, "batch_size": 64, "max_epochs": 20, "patience": 20, "val_fraction": 0.25, **kw})
    return train_qvm(QValueModel(data.features.shape[1], out_act="sigmoid"), data, cfg, progress=False)


# ---- the synthetic set: pooled training tells questions apart, ranking tells steps apart ------


def test_pointwise_ranks_siblings_backwards_ranking_ranks_them_right():
    data = confounded()
    point = fit(data)
    # The failure measured on the real QVM: a high pooled AUC, siblings at or below chance.
    assert point.val_auc > 0.95 and point.val_question_mean_auc > 0.9
    assert point.val_sibling_auc < 0.3 and point.val_sibling_auc_ci[1] < 0.5 and point.n_val_sibling_pairs == 40
    # On these confounded features a linear head cannot have both: the ranking term gives up some
    # pooled AUC (about 0.68 at rank_weight=4) to order siblings.
    for kw in ({"rank_loss": "pairwise", "rank_weight": 4.0}, {"rank_loss": "listwise", "rank_weight": 4.0},
               {"rank_loss": "pairwise", "pointwise_weight": 0.0}):  # fmt: skip
        ranked = fit(data, **kw)
        assert ranked.val_sibling_auc > 0.8 and ranked.val_sibling_auc_ci[0] > 0.5, (kw, ranked.val_sibling_auc)
        assert ranked.n_val_sibling_pairs == point.n_val_sibling_pairs and ranked.val_questions == point.val_questions


def test_select_by_sibling_auc_restores_its_best_epoch():
    data = confounded()
    r = fit(data, rank_loss="pairwise", select_by="sibling_auc", patience=4)
    aucs = r.val_sibling_aucs
    assert len(aucs) == r.epochs_run and r.val_sibling_auc == aucs[r.best_epoch - 1] == max(aucs)
    assert r.best_val_loss == r.val_losses[r.best_epoch - 1]
    assert r.to_dict()["val_pooled_auc"] == r.val_auc
    assert [d["depth"] for d in r.val_positive_q_by_depth] == [0, 1, 2, 3] and all(0 < d["mean_q"] < 1 for d in r.val_positive_q_by_depth)


def test_ranking_batches_keep_sibling_groups_whole(monkeypatch):
    data = confounded(n_q=12)
    seen: list[np.ndarray] = []
    real = train_mod._loss

    def spy(qvm, x, y, cfg, groups):
        if torch.is_grad_enabled():  # training batches, not evaluations
            seen.append(groups.copy())
        return real(qvm, x, y, cfg, groups)

    monkeypatch.setattr(train_mod, "_loss", spy)
    r = fit(data, rank_loss="listwise", batch_size=10, max_epochs=2)
    assert seen and sum(len(b) for b in seen) == 2 * r.n_train
    for b in seen:
        assert len(b) <= 10 and all((b == g).sum() == K for g in np.unique(b))  # every group of the batch, whole


@given(st.lists(st.integers(1, 6), min_size=1, max_size=12), st.integers(1, 8), st.integers(0, 3))
def test_group_batches_cover_every_row_once_and_split_no_group(sizes, batch_size, seed):
    groups = np.repeat(np.arange(len(sizes)), sizes)[np.random.default_rng(seed).permutation(sum(sizes))]
    batches = group_batches(groups, batch_size, torch.Generator().manual_seed(seed))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(groups)))
    for b in batches:
        assert len(b) <= batch_size or len(set(groups[b])) == 1
        for g in set(groups[b].tolist()):
            assert (groups[b] == g).sum() == (groups == g).sum()


# ---- metrics against brute force --------------------------------------------------------------


def brute_sibling(scores, labels, states, threshold=None):
    y = [float(v > threshold) for v in labels] if threshold is not None else list(labels)
    credit = [(scores[i] > scores[j]) + 0.5 * (scores[i] == scores[j])
              for i in range(len(y)) for j in range(len(y)) if states[i] == states[j] and y[i] > y[j]]  # fmt: skip
    return (sum(credit) / len(credit) if credit else math.nan), len(credit)


rows_st = st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.sampled_from("abcde")), max_size=25)


@given(rows_st, st.sampled_from([None, 0.5, 0.25]))
def test_sibling_auc_equals_brute_force_with_ties_and_singletons(rows, threshold):
    s, y, g = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    want, n = brute_sibling(s, y, g, threshold)
    got = sibling_auc(s, y, g, threshold=threshold)
    assert sibling_pair_count(y, g, threshold=threshold) == n
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-12)


@given(rows_st)
def test_ranking_losses_equal_their_formulas(rows):
    s = torch.tensor([float(r[0]) - 1.5 for r in rows])
    y = torch.tensor([r[1] for r in rows])
    g = np.array([ord(r[2]) for r in rows], dtype=np.int64)
    pairs = [(i, j) for i in range(len(rows)) for j in range(len(rows)) if g[i] == g[j] and y[i] > y[j]]
    want = sum((y[i] - y[j]) * math.log1p(math.exp(s[j] - s[i])) for i, j in pairs) / sum(y[i] - y[j] for i, j in pairs) if pairs else 0.0
    assert float(pairwise_loss(s, y, g)) == pytest.approx(float(want), abs=1e-5)
    kls = []
    for k in set(g.tolist()):
        m = torch.tensor(g == k)
        if y[m].max() > y[m].min():
            p, logq = y[m] / y[m].sum(), torch.log_softmax(s[m], 0)
            kls.append(float(sum(pi * (math.log(pi) - lq) for pi, lq in zip(p, logq) if pi > 0)))
    assert float(listwise_loss(s, y, g)) == pytest.approx(float(np.mean(kls)) if kls else 0.0, abs=1e-5)


def test_ranking_losses_have_gradients_even_without_pairs():
    s = torch.zeros(3, requires_grad=True)
    for loss in (pairwise_loss, listwise_loss):
        loss(s, torch.tensor([1.0, 1.0, 0.0]), np.array([0, 0, 1])).backward()
        assert s.grad is not None and not s.grad.any()


def test_sibling_interval_question_mean_and_depth_profile():
    rng = np.random.default_rng(0)
    states = [f"q{i // 8}/s{i // 4}" for i in range(160)]
    qids = [s.split("/")[0] for s in states]
    y = rng.integers(0, 2, 160).astype(float)
    s = y + rng.normal(0, 1.0, 160)
    auc, lo, hi = sibling_auc_ci(s, y, states, qids, seed=1)
    assert auc == sibling_auc(s, y, states) and lo < auc < hi and (lo, hi) == sibling_auc_ci(s, y, states, qids, seed=1)[1:]
    assert all(math.isnan(v) for v in sibling_auc_ci([0.1, 0.2], [1.0, 1.0], ["a", "a"], ["q", "q"]))
    # every row its question's own mean: constant within a question
    assert question_mean_auc([1, 0, 1, 1], ["a", "a", "b", "b"]) == pytest.approx(2.5 / 3)  # a: 0.5, 0.5; b: 1, 1
    assert math.isnan(question_mean_auc([1, 1], ["a", "b"]))
    assert positive_score_by_depth([0.2, 0.4, 0.9], [1, 0, 1], [2, 2, 0]) == [{"depth": 0, "n": 1, "mean_q": 0.9}, {"depth": 2, "n": 1, "mean_q": 0.2}]


@pytest.mark.parametrize("module", [ranking, train_mod])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


# ---- bad configs name the argument and the fix -------------------------------------------------


def test_bad_ranking_config_names_the_fix():
    data = confounded(n_q=8)
    plain = TrainData.from_features(data.features, data.labels, data.question_ids)
    assert plain.state_ids is None and plain.depths is None
    for kw in ({"rank_loss": "pairwise"}, {"select_by": "sibling_auc"}):
        with pytest.raises(ValueError, match=r"needs sibling groups.*state_ids=.*TrainData.from_items / from_rows"):
            train_qvm(QValueModel(data.features.shape[1]), plain, TrainConfig(**kw))
    with pytest.raises(ValueError, match="rank_loss='listwise' .* labels >= 0.*'pairwise'"):
        neg = TrainData.from_features(data.features, data.labels - 0.5, data.question_ids, state_ids=data.state_ids)
        train_qvm(QValueModel(data.features.shape[1]), neg, TrainConfig(rank_loss="listwise"))
    with pytest.raises(ValueError, match="select_by='sibling_auc' but no validation state has siblings"):
        flat = TrainData.from_features(data.features, torch.ones(len(data)), data.question_ids, state_ids=data.state_ids)
        train_qvm(QValueModel(data.features.shape[1]), flat, TrainConfig(select_by="sibling_auc"))
    with pytest.raises(ValueError, match="got 3 state_ids for 4 labels"):
        TrainData.from_features(torch.zeros(4, 2), [0.0] * 4, "abcd", state_ids=["s"] * 3)
    for kw, msg in [({"rank_loss": "lambdarank"}, "rank_loss='lambdarank'; pick one of"), ({"select_by": "auc"}, "select_by='auc'"),
                    ({"pointwise_weight": 0.0}, "pointwise_weight=0 with rank_loss='none' leaves nothing to train"),
                    ({"rank_loss": "pairwise", "rank_weight": 0.0}, "rank_weight=0 turns rank_loss='pairwise' off"),
                    ({"rank_weight": -1.0}, "rank_weight must be a finite number >= 0"),
                    ({"select_by": "sibling_auc", "val_fraction": 0}, "select_by='sibling_auc' needs validation questions")]:  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            TrainConfig(**kw)
