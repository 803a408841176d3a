"""Loading policies and QVMs from directories, and Solver.solve on the embedded default policy.

Every reported number of a solve is recomputed independently: g from the annotation rule on each
step's text, h by a full forward of the policy over prompt + steps (no KV cache) through the QVM
head, f = g + lam * h.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

import qstar_native
from qstar_native.pretrained import DEFAULT_POLICY_DIR, PolicySettings, load_policy, load_qvm, search_setup
from qstar_native.solver import Solver
from qstar_native.tasks import annotation_reward
from qstar_native.tasks.grounding import grounding_reward
from qstar_native.value import QValueModel

QUESTION = "A baker makes 12 trays of 8 muffins. He sells 30 muffins. How many muffins are left?"


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return load_policy()


@pytest.fixture(scope="module")
def qvm_dir(tmp_path_factory, policy):
    path = tmp_path_factory.mktemp("qvm")
    QValueModel(hidden_size=policy.model.config.hidden_size, head="mlp", mlp_width=8, out_act="sigmoid", seed=3).save_pretrained(path)
    return path


def test_default_policy_settings_and_prompt(policy):
    assert policy.path == DEFAULT_POLICY_DIR
    assert policy.settings == PolicySettings(prompt_template="{question}\n", step_delimiter="\n", max_step_tokens=96, max_steps=12,
                                             temperature=0.4, process_reward="grounded", calculator=True)
    assert policy.prompt("What is 2 + 2?") == "What is 2 + 2?\n"
    ids = policy.encode("3 + 4 = <<3+4=7>>7\n")
    assert policy.decode(ids) == "3 + 4 = <<3+4=7>>7\n"


@pytest.mark.parametrize("lam, process_reward, calculator", [(1.0, "annotations", False), (0.5, "default", None), (1.0, "grounded", True)])
def test_solve_reports_consistent_f_g_h(policy, qvm_dir, lam, process_reward, calculator):
    qvm = load_qvm(qvm_dir, policy)
    solver = Solver(policy, qvm, lam=lam, k=3, max_expansions=12, seed=1, process_reward=process_reward, calculator=calculator)
    grounded = (process_reward if process_reward != "default" else policy.settings.process_reward) == "grounded"
    result = solver.solve(QUESTION)
    assert result.search.tree is not None and len(result.search.tree) == result.search.stats.nodes
    if not result.steps:
        assert result.search.stop_reason != "solutions"
        return
    oracle = QValueModel.from_pretrained(qvm_dir, backbone=policy.model)
    prompt_ids = policy.encode(policy.prompt(QUESTION))
    best = result.search.best
    g, context = 0.0, QUESTION + "\n"
    state = list(prompt_ids)
    for i, (step, tok) in enumerate(zip(result.steps, best.steps)):
        state += tok.tolist()
        reward = annotation_reward(step.text) + (grounding_reward(context, step.text) if grounded else 0.0)
        if calculator or (calculator is None and policy.settings.calculator):
            assert annotation_reward(step.text) == 0.0  # the calculator made every result exact
        context += step.text
        g = reward if i == 0 else min(g, reward)
        with torch.no_grad():
            (h,) = oracle.score_sequences([state])
        assert step.reward == reward
        assert step.g == pytest.approx(g)
        assert step.h == pytest.approx(float(h), abs=1e-4)
        assert step.f == pytest.approx(step.g + lam * step.h, abs=1e-6)
    assert result.completion == "".join(s.text for s in result.steps)
    assert result.f == pytest.approx(result.steps[-1].f)
    path = result.chosen_path()
    tree = result.search.tree
    assert path[0] == 0 and path[-1] == best.node_id and len(path) == len(best.steps) + 1
    assert all(tree[c].parent == p for p, c in zip(path, path[1:]))
    assert tree[best.node_id].status == "solution"
    assert "answer:" in str(result)


@pytest.mark.parametrize("calculator", [False, True])
def test_qvm_reads_the_hidden_state_of_the_step_as_written(policy, qvm_dir, calculator):
    """h comes from the hidden state of the forward that computed each child's KV: with or
    without the calculator it equals the head over a full forward of the policy (no second pass)."""
    head = load_qvm(qvm_dir, policy)
    oracle = QValueModel.from_pretrained(qvm_dir, backbone=policy.model)
    setup = search_setup(policy, head, seed=0, calculator=calculator, temperature=1.0)
    root = np.asarray(policy.encode(policy.prompt(QUESTION)), dtype=np.int32)
    steps = setup.policy.propose([root])
    with torch.no_grad():
        q_hidden = head.score_hidden(steps.hidden)
        q_states = oracle.score_sequences([np.concatenate([root, steps.tokens[a:b]]) for a, b in zip(steps.offsets[:-1], steps.offsets[1:])])
    torch.testing.assert_close(q_hidden, q_states, atol=1e-4, rtol=0)
    for h in steps.kv_handles:
        setup.policy.cache.unpin(int(h))


def test_default_setting_forwards_each_tree_token_about_once(policy, qvm_dir):
    """Calculator on, QVM on the policy's hidden states: the model forwards at most 1.05x the
    tree's distinct tokens (prompt + every node's step), QVM included (it runs no backbone)."""
    solver = Solver(policy, load_qvm(qvm_dir, policy), k=4, max_expansions=24, seed=0, calculator=True)
    assert solver.setup.has_qvm and load_qvm(qvm_dir, policy).backbone is None
    hf = solver.setup.policy
    before = hf.tokens_forwarded
    result = solver.solve(QUESTION)
    distinct = len(policy.encode(policy.prompt(QUESTION))) + result.search.stats.tokens
    forwarded = hf.tokens_forwarded - before
    assert result.search.stats.expanded >= 3 and result.search.stats.nodes > 5 and forwarded == result.search.stats.forwarded_tokens
    assert forwarded <= 1.05 * distinct, (forwarded, distinct)


def test_solve_writes_each_tree_format(policy, qvm_dir, tmp_path):
    result = Solver(policy, load_qvm(qvm_dir, policy), k=2, max_expansions=6).solve(QUESTION)
    for suffix in ("html", "svg", "dot"):
        out = result.write_tree(tmp_path / f"tree.{suffix}")
        assert out.stat().st_size > 0
    assert "<svg" in (tmp_path / "tree.html").read_text()
    assert (tmp_path / "tree.dot").read_text().lstrip().startswith("digraph")


def test_same_seed_same_search(policy, qvm_dir):
    qvm = load_qvm(qvm_dir, policy)
    a = Solver(policy, qvm, k=3, max_expansions=8, seed=5).solve(QUESTION)
    b = Solver(policy, qvm, k=3, max_expansions=8, seed=5).solve(QUESTION)
    assert [s.text for s in a.steps] == [s.text for s in b.steps]
    fields = lambda t: [(n.parent, n.status, n.g, n.h, n.f, n.step.tolist()) for n in t]  # noqa: E731
    assert fields(a.search.tree) == fields(b.search.tree)


def test_solver_from_pretrained_and_budgets(qvm_dir):
    solver = qstar_native.Solver.from_pretrained(qvm=qvm_dir, k=2, max_expansions=1)
    result = solver.solve(QUESTION)
    assert result.search.stats.expanded <= 1
    if not result.steps:
        assert result.search.stop_reason == "max_expansions" and "no solution" in str(result)


def test_load_errors_name_the_fix(tmp_path, policy, qvm_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_policy(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_policy(tmp_path)
    bad = tmp_path / "bad_settings"
    shutil.copytree(DEFAULT_POLICY_DIR, bad)
    (bad / "qstar.json").write_text(json.dumps({"prompt_templat": "{question}"}))
    with pytest.raises(ValueError, match="unknown setting"):
        load_policy(bad)
    (bad / "qstar.json").write_text(json.dumps({"prompt_template": "no placeholder"}))
    with pytest.raises(ValueError, match=r"\{question\}"):
        load_policy(bad)
    wide = tmp_path / "wide_qvm"
    QValueModel(hidden_size=7).save_pretrained(wide)
    with pytest.raises(ValueError, match="width 7"):
        load_qvm(wide, policy)
    with pytest.raises(FileNotFoundError, match="qstar train-qvm"):
        load_qvm(tmp_path / "nope", policy)
    with pytest.raises(ValueError, match="non-empty"):
        Solver(policy).solve("  ")
    with pytest.raises(ValueError, match="question 1 must be a non-empty string"):
        Solver(policy).solve_many(["ok?", ""])
    with pytest.raises(ValueError, match="process_reward"):
        Solver(policy, process_reward="prm")
    (bad / "qstar.json").write_text(json.dumps({"process_reward": "prm"}))
    with pytest.raises(ValueError, match="process_reward"):
        load_policy(bad)
    with pytest.raises(ValueError, match="device"):
        load_policy(device="tpu:9")


def test_without_qvm_h_is_zero(policy):
    result = Solver(policy, None, k=2, max_expansions=10, process_reward=None).solve(QUESTION)
    assert all(n.g == 0.0 for n in result.search.tree)
    assert all(n.h == 0.0 for n in result.search.tree)
    assert all(math.isclose(s.f, s.g) for s in result.steps)


def test_solve_many_equals_one_at_a_time(policy, qvm_dir):
    qvm = load_qvm(qvm_dir, policy)
    questions = [QUESTION, "Tom has 4 boxes of 6 pens. He gives away 5 pens. How many pens does he have left?"]
    together = Solver(policy, qvm, k=3, max_expansions=8, seed=2).solve_many(questions)
    alone = [Solver(policy, qvm, k=3, max_expansions=8, seed=2).solve(q) for q in questions]
    assert [[s.text for s in r.steps] for r in together] == [[s.text for s in r.steps] for r in alone]


def test_greedy_first_proposes_the_greedy_step(policy, qvm_dir):
    # At temperature 1.5 samples rarely repeat the greedy step; greedy_first always proposes it.
    qvm = load_qvm(qvm_dir, policy)
    first = Solver(policy, qvm, k=1, temperature=0.0, max_expansions=16).solve(QUESTION).steps[0].text
    for seed in range(3):
        solver = Solver(policy, qvm, k=3, temperature=1.5, max_expansions=4, seed=seed, greedy_first=True, min_p=0.05)
        assert solver.method.greedy_first and solver.method.config.greedy_first and solver.setup.policy.min_p == 0.05
        assert first in solver.solve(QUESTION).node_texts.values()
