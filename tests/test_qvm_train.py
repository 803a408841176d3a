"""Training a QValueModel: synthetic features with known labels, determinism, the question split,
early stopping and checkpoints, the rank AUC against brute force, bad input, and end to end on a
tiny Llama with labels from best_of_rollouts (sibling groups and ranking: test_qvm_ranking.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, LlamaConfig

from qstar_native.labels import LabelRow, best_of_rollouts, fitted_q_iteration, sample_trajectories, state_actions
from qstar_native.value import QValueModel, TrainConfig, TrainData, fit_fn, rank_auc, split_by_question, train_qvm
from qstar_native.value.ranking import sibling_pair_count
from qstar_native.value.ranking import state_id
from scripted_mdp import SMALL_OUTCOMES, SMALL_TREE, ScriptedPolicy, ScriptedTask

H, N_Q, PER_Q = 8, 40, 8


def synthetic(seed: int = 0, flip_questions: frozenset[str] = frozenset()) -> tuple[TrainData, torch.Tensor]:
    """Features x and labels sigmoid(3 w.x) (flipped to 1 - that for ``flip_questions``)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_Q * PER_Q, H, generator=g)
    w = torch.randn(H, generator=g)
    w = w / w.norm()
    qids = [f"q{i // PER_Q:02d}" for i in range(len(x))]
    y = torch.sigmoid(3 * x @ w)
    flip = torch.tensor([q in flip_questions for q in qids])
    return TrainData.from_features(x, torch.where(flip, 1 - y, y), qids), w


def brute_auc(s, p) -> float:
    pos = [a for a, b in zip(s, p) if b]
    neg = [a for a, b in zip(s, p) if not b]
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))


# ---- AUC ------------------------------------------------------------------------------------


@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=30))
def test_rank_auc_equals_pairwise_count_with_ties(pairs):
    s, p = [a for a, _ in pairs], [b for _, b in pairs]
    if all(p) or not any(p):
        assert math.isnan(rank_auc(s, p))  # one class: undefined, documented as nan
    else:
        assert rank_auc(s, p) == pytest.approx(brute_auc(s, p), abs=1e-12)


def test_rank_auc_edges():
    assert rank_auc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == 1.0
    assert rank_auc([0.9, 0.1], [False, True]) == 0.0
    assert rank_auc([0.5, 0.5, 0.5], [True, False, True]) == 0.5
    with pytest.raises(ValueError, match="NaN"):
        rank_auc([0.1, float("nan")], [True, False])
    with pytest.raises(ValueError, match="one label per score"):
        rank_auc([0.1, 0.2], [True])


# ---- learning a known function --------------------------------------------------------------


@pytest.mark.parametrize("loss, out_act", [("bce", "sigmoid"), ("mse", "sigmoid"), ("mse", "identity")])
def test_learns_known_function_and_beats_untrained(loss, out_act):
    data, w = synthetic()
    qvm = QValueModel(H, out_act=out_act)
    report = train_qvm(qvm, data, TrainConfig(loss=loss, lr=0.1, batch_size=32, max_epochs=20, val_fraction=0.25), progress=False)
    val = torch.tensor([q in set(report.val_questions) for q in data.question_ids])
    x, y = data.features[val], data.labels[val]
    untrained_auc = rank_auc(QValueModel(H, out_act=out_act).score_hidden(x), y > 0.5)
    assert report.val_auc > 0.95 and report.val_auc > untrained_auc + 0.2
    assert report.best_val_loss < report.initial_val_loss
    if loss == "bce":  # the floor is the labels' own entropy, reached at the true w
        floor = float(torch.nn.functional.binary_cross_entropy(y, y))
        assert report.best_val_loss < floor + 0.01
    elif out_act == "sigmoid":
        assert report.best_val_loss < 1e-3
    else:  # a linear q fits a sigmoid only roughly
        assert report.best_val_loss < 0.02
    assert report.n_train + report.n_val == len(data) and report.n_val == PER_Q * report.n_val_questions == 80
    # no state ids: no sibling metrics; the question-mean oracle needs none
    assert math.isnan(report.val_sibling_auc) and report.n_val_sibling_pairs == 0 and report.val_positive_q_by_depth == []
    assert 0.5 < report.val_question_mean_auc < 1 and report.to_dict()["val_pooled_auc"] == report.val_auc


def test_same_seed_same_weights_other_split_seed_other_split():
    data, _ = synthetic()
    cfg = TrainConfig(loss="bce", lr=0.05, batch_size=32, max_epochs=5, val_fraction=0.25, seed=3)
    a, b = QValueModel(H, out_act="sigmoid"), QValueModel(H, out_act="sigmoid")
    ra, rb = train_qvm(a, data, cfg, progress=False), train_qvm(b, data, cfg, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert ra.to_dict() == rb.to_dict()
    rc = train_qvm(QValueModel(H, out_act="sigmoid"), data, TrainConfig(**{**cfg.__dict__, "split_seed": 4}), progress=False)
    assert rc.val_questions != ra.val_questions
    rd = train_qvm(QValueModel(H, out_act="sigmoid"), data, TrainConfig(**{**cfg.__dict__, "seed": 4, "split_seed": 3}), progress=False)
    assert rd.val_questions == ra.val_questions and rd.train_losses != ra.train_losses  # other batch order


def test_split_by_question_has_no_overlap_and_ignores_row_order():
    ids = [f"q{i % 13}" for i in range(100)]
    train, val = split_by_question(ids, 0.3, seed=1)
    assert not set(train) & set(val) and set(train) | set(val) == set(ids) and len(val) == 4
    assert split_by_question(list(reversed(ids)), 0.3, seed=1) == (train, val)
    assert split_by_question(ids, 0.3, seed=2) != (train, val)
    assert split_by_question(["a", "b"], 0.01, seed=0)[1] != [] and split_by_question(["a", "b"], 0.99, seed=0)[0] != []
    assert split_by_question(ids, 0.0, seed=0) == (sorted(set(ids)), [])


def test_early_stopping_restores_the_best_epoch(tmp_path):
    cfg = TrainConfig(loss="mse", lr=0.02, batch_size=32, max_epochs=50, patience=3, val_fraction=0.25)
    _, val_ids = split_by_question([f"q{i:02d}" for i in range(N_Q)], cfg.val_fraction, cfg.seed)
    data, _ = synthetic(flip_questions=frozenset(val_ids))  # validation wants the opposite function
    qvm = QValueModel(H, head="mlp", mlp_width=4, out_act="sigmoid")
    report = train_qvm(qvm, data, cfg, checkpoint_dir=tmp_path, progress=False)
    assert report.val_questions == val_ids
    assert report.stopped_early and report.epochs_run == report.best_epoch + cfg.patience < cfg.max_epochs
    assert report.best_val_loss == min(report.val_losses) == report.val_losses[report.best_epoch - 1]
    assert report.val_losses[-1] > report.best_val_loss  # so restoring the best is visible
    val = torch.tensor([q in set(val_ids) for q in data.question_ids])
    x, y = data.features[val], data.labels[val]
    q = qvm.score_hidden(x).detach()
    assert float(torch.nn.functional.mse_loss(q, y)) == pytest.approx(report.best_val_loss, rel=1e-6)
    loaded = QValueModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.score_hidden(x), q)
    assert json.loads((tmp_path / "train_report.json").read_text())["best_epoch"] == report.best_epoch


def test_no_validation_trains_every_epoch():
    data, _ = synthetic()
    report = train_qvm(QValueModel(H), data, TrainConfig(lr=0.05, max_epochs=3, val_fraction=0), progress=False)
    assert report.best_epoch == 3 and report.val_losses == [] and math.isnan(report.val_auc) and report.train_auc > 0.9


# ---- bad input ------------------------------------------------------------------------------


def test_bad_input_names_the_fix():
    data, _ = synthetic()
    with pytest.raises(ValueError, match="no rows to train on"):
        TrainData.from_features(torch.zeros(0, H), [], [])
    with pytest.raises(ValueError, match=r"label of row 1 is 1.5, outside \[0.0, 1.0\] which loss='bce' needs"):
        train_qvm(QValueModel(H, out_act="sigmoid"), TrainData.from_features(torch.zeros(2, H), [0.0, 1.5], ["a", "b"]), TrainConfig(loss="bce"))
    with pytest.raises(ValueError, match="loss='bce' needs a QValueModel with out_act='sigmoid'"):
        train_qvm(QValueModel(H), data, TrainConfig(loss="bce"))
    with pytest.raises(ValueError, match="features have width 8 but the QVM's head reads width 5"):
        train_qvm(QValueModel(5), data, TrainConfig())
    bad = data.features.clone()
    bad[5, 2] = float("inf")
    with pytest.raises(ValueError, match="features of row 5 hold NaN/inf"):
        train_qvm(QValueModel(H), TrainData.from_features(bad, data.labels, data.question_ids), TrainConfig())
    with pytest.raises(ValueError, match="label of row 0 is nan"):
        TrainData.from_features(torch.zeros(1, H), [float("nan")], ["a"])
    with pytest.raises(ValueError, match="at least 2 question ids.*val_fraction=0"):
        train_qvm(QValueModel(H), TrainData.from_features(torch.zeros(2, H), [0.0, 1.0], ["a", "a"]), TrainConfig())
    with pytest.raises(ValueError, match="no backbone"):
        train_qvm(QValueModel(H), TrainData(torch.tensor([0.0]), ("a",), seqs=(np.array([1], np.int32),)), TrainConfig(val_fraction=0))
    with pytest.raises(ValueError, match="train_backbone=True needs"):
        train_qvm(QValueModel(H), data, TrainConfig(train_backbone=True))
    for kw, msg in [({"loss": "l1"}, "loss='l1'"), ({"patience": 0}, "patience must be a positive int"),
                    ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"), ({"lr": 0}, "lr must be > 0")]:  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            TrainConfig(**kw)


# ---- end to end with a tiny Llama and labelled items -----------------------------------------

TREE = SMALL_TREE
TASK = ScriptedTask(SMALL_OUTCOMES)


def labelled():
    policy = ScriptedPolicy(TREE)
    items = state_actions(sample_trajectories(TASK, policy, [f"p{i}" for i in range(4)], n=4, temperature=1.0, seed=0, max_steps=5))
    return items, best_of_rollouts(items, policy, TASK.outcome, n=4, temperature=1.0, max_steps=5, progress=False)


def tiny_lm() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=32, eos_token_id=31, pad_token_id=0)  # fmt: skip
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.parametrize("train_backbone", [False, True])
def test_end_to_end_tiny_llama_checkpoint_round_trip(tmp_path, train_backbone):
    items, rows = labelled()
    assert len(items) == 28 and {r.question_id for r in rows} == {"p0", "p1", "p2", "p3"}
    lm = tiny_lm()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    qvm = QValueModel(backbone=lm, head="mlp", mlp_width=8, out_act="sigmoid")
    cfg = TrainConfig(loss="bce", lr=0.02, batch_size=8, max_epochs=4, val_fraction=0.25, train_backbone=train_backbone)
    report = train_qvm(qvm, (items, rows), cfg, checkpoint_dir=tmp_path, progress=False)
    assert report.n_val == 7 and report.n_train == 21 and report.epochs_run >= 1
    seqs = [it.next_state for it in items]
    q = qvm.score_sequences(seqs)
    changed = any(not torch.equal(before[k], v) for k, v in lm.state_dict().items())
    assert changed == train_backbone
    # A frozen backbone is not in the checkpoint (pass it back); a trained one is.
    loaded = QValueModel.from_pretrained(tmp_path) if train_backbone else QValueModel.from_pretrained(tmp_path, backbone=tiny_lm())
    assert torch.equal(loaded.score_sequences(seqs), q)
    # rows re-encoded from text, piece by piece, give the same sequences here (one token per step;
    # the prompt "^" is the root token 0)
    tok = {**ScriptedPolicy(TREE).token_of, "^": 0}
    again = TrainData.from_rows(rows, encode=lambda s: [tok[c] for c in s], question_text=lambda qid: "^")
    assert all(np.array_equal(a, b) for a, b in zip(again.seqs, seqs))
    with pytest.raises(ValueError, match=r"rows\[0\] .* does not label items\[0\]"):
        TrainData.from_items(items, rows[1:] + rows[:1])


def test_from_items_and_rows_group_siblings_and_ranking_trains_the_backbone():
    items, rows = labelled()
    data = TrainData.from_items(items, rows)
    assert data.depths == tuple(len(r.steps) for r in rows)
    key = [(r.question_id, r.steps) for r in rows]  # same state id exactly when question and previous steps agree
    assert all((data.state_ids[i] == data.state_ids[j]) == (key[i] == key[j]) for i in range(len(rows)) for j in range(len(rows)))
    assert data.state_ids[0] == state_id(rows[0].question_id, rows[0].steps)
    tok = ScriptedPolicy(TREE).token_of
    again = TrainData.from_rows(rows, encode=lambda s: [0] + [tok[c] for c in s], question_text=lambda qid: "")
    assert again.state_ids == data.state_ids and again.depths == data.depths
    assert sibling_pair_count(data.labels, data.state_ids) > 0  # the scripted tree has mixed states
    cfg = TrainConfig(loss="bce", rank_loss="pairwise", lr=0.02, batch_size=8, max_epochs=2, val_fraction=0.25, train_backbone=True)
    report = train_qvm(QValueModel(backbone=tiny_lm(), head="mlp", mlp_width=8, out_act="sigmoid"), data, cfg, progress=False)
    val = [i for i, r in enumerate(rows) if r.question_id in set(report.val_questions)]
    assert report.n_val_sibling_pairs == sibling_pair_count(data.labels[val], [data.state_ids[i] for i in val])
    assert report.epochs_run == 2 and all(math.isfinite(v) for v in report.train_losses)


def test_fit_fn_drives_fitted_q_iteration():
    # chain: A0 -> A1 -> A2 (terminal, outcome 1) with an exit B_d (terminal, outcome 0.2) at each depth
    chain = {tuple(f"A{i}" for i in range(d)): [(f"A{d}", d == 2), (f"B{d}", True)] for d in range(3)}

    def outcome(problem, text):
        return 1.0 if text.endswith("A2") else 0.2 if "B" in text else 0.0

    items = state_actions(sample_trajectories(TASK, ScriptedPolicy(chain), ["q0"], n=8, temperature=1.0, seed=0, max_steps=4))
    paths = sorted({"".join(s.text for s in it.steps) + it.candidate.text for it in items})

    def featurize(xs):  # one-hot of the path: a linear head can fit any table
        return torch.eye(len(paths))[[paths.index("".join(s.text for s in x.steps) + x.candidate.text) for x in xs]]

    fit = fit_fn(lambda: QValueModel(len(paths)), TrainConfig(lr=0.1, batch_size=8, max_epochs=300, patience=300, val_fraction=0), featurize=featurize)
    rows = fitted_q_iteration(items, ScriptedPolicy(chain), outcome, fit=fit, gamma=0.9, k=2, iterations=3, temperature=1.0, progress=False)
    got = {r.candidate: r.label for r in rows}
    assert got == pytest.approx({"A0": 0.81, "A1": 0.9, "A2": 1.0, "B0": 0.2, "B1": 0.2, "B2": 0.2}, abs=0.02)
    assert len(fit.reports) == 2 and isinstance(rows[0], LabelRow)
