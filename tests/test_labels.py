"""Q-value labels on MDPs whose true Q-values are known: a wrong label fails a test."""

from __future__ import annotations

import json

import pytest

from qstar_native.labels import (
    LabelRow,
    LabelWriter,
    best_of_rollouts,
    fitted_q_iteration,
    iteration_method,
    read_labels,
    sample_trajectories,
    state_actions,
    stronger_model_completion,
)
from qstar_native.rollout import rollout_many
from scripted_mdp import SMALL_OUTCOMES, SMALL_TREE, ScriptedPolicy, ScriptedTask, true_q

TREE = SMALL_TREE
OUTCOMES = SMALL_OUTCOMES
TASK = ScriptedTask(OUTCOMES)


def items_of(policy: ScriptedPolicy):
    trajs = sample_trajectories(TASK, policy, ["q0"], n=4, temperature=1.0, seed=0, max_steps=5)
    return trajs, state_actions(trajs)


def labels_by_key(rows):
    return {("".join(r.steps), r.candidate): r.label for r in rows}


def test_sample_trajectories_round_robin_paths_and_counts():
    trajs, items = items_of(ScriptedPolicy(TREE))
    assert [(t.text, t.count, t.reward) for t in trajs] == [("ace", 1, 0.0), ("ad", 1, 0.5), ("bg", 1, 0.3), ("bh", 1, 0.0)]
    assert [("".join(s.text for s in it.steps), it.candidate.text) for it in items] == [
        ("", "a"), ("a", "c"), ("ac", "e"), ("a", "d"), ("", "b"), ("b", "g"), ("b", "h")]


def test_rollout_tree_keeps_counts_and_batches_one_call_per_depth():
    policy = ScriptedPolicy(TREE)
    out = rollout_many(policy, [[0], [0]], [6, 1], max_steps=5, temperature=1.0, seed=0)
    # 6 samples: a x3, b x3; after a: c x2, d x1; after a c: e, f; after b: g x2, h x1
    assert [(c.text, c.count, c.terminal) for c in out[0].leaves] == [
        ("ace", 1, True), ("acf", 1, True), ("ad", 1, True), ("bg", 2, True), ("bh", 1, True)]
    assert out[0].n == 6
    assert [(c.text, c.count) for c in out[1].leaves] == [("ace", 1)]
    cut = rollout_many(policy, [[0]], 1, max_steps=1, temperature=0.0, seed=0)[0]
    assert [(c.text, c.terminal) for c in cut.leaves] == [("a", False)]
    assert policy.calls == 3 + 1  # depths 1, 2, 3 for both start states together; then the cut one


@pytest.mark.parametrize(
    "n, expected",
    [
        # N=1 follows option 0: a->c->e. N=2 tries c and d after a. N=4 reaches f.
        (1, {("", "a"): 0.0, ("a", "c"): 0.0, ("ac", "e"): 0.0, ("a", "d"): 0.5, ("", "b"): 0.3, ("b", "g"): 0.3, ("b", "h"): 0.0}),
        (2, {("", "a"): 0.5, ("a", "c"): 1.0, ("ac", "e"): 0.0, ("a", "d"): 0.5, ("", "b"): 0.3, ("b", "g"): 0.3, ("b", "h"): 0.0}),
    ],
)
def test_best_of_rollouts_labels_exact(n, expected):
    _, items = items_of(ScriptedPolicy(TREE))
    rows = best_of_rollouts(items, ScriptedPolicy(TREE), TASK.outcome, n=n, temperature=1.0, max_steps=5, progress=False)
    assert labels_by_key(rows) == expected
    assert all(r.method == "best_of_rollouts" and r.meta["rollouts"] == n for r in rows)


def test_best_of_rollouts_with_enough_rollouts_equals_true_q_and_batches():
    _, items = items_of(ScriptedPolicy(TREE))
    policy = ScriptedPolicy(TREE)
    rows = best_of_rollouts(items, policy, TASK.outcome, n=4, temperature=1.0, max_steps=5, batch_size=100, progress=False)
    for it, r in zip(items, rows):
        path = tuple(s.text for s in it.steps)
        assert r.label == true_q(TREE, lambda t: TASK.outcome(None, t), path, it.candidate.text, it.candidate.terminal)
    assert policy.calls == 2  # all items rolled out together: one propose call per depth level
    # batching does not change labels
    small = best_of_rollouts(items, ScriptedPolicy(TREE), TASK.outcome, n=4, temperature=1.0, max_steps=5, batch_size=1, progress=False)
    assert small == rows
    twice = best_of_rollouts(items + items, ScriptedPolicy(TREE), TASK.outcome, n=4, temperature=1.0, max_steps=5, batch_size=3, progress=False)
    assert twice == rows + rows  # repeated items: labelled once, returned for every occurrence


def test_stronger_model_completion_uses_the_strong_policy():
    _, items = items_of(ScriptedPolicy(TREE))
    # The strong model's greedy choice is the best option everywhere; token ids differ (+100).
    strong_tree = {(): [("a", False), ("b", False)], ("a",): [("c", False), ("d", True)],
                   ("a", "c"): [("f", True), ("e", True)], ("b",): [("g", True), ("h", True)]}
    strong = ScriptedPolicy(strong_tree, token_offset=100)

    def encode(it):
        return [100] + [strong.token_of[s.text] for s in it.steps + (it.candidate,)]

    rows = stronger_model_completion(items, strong, TASK.outcome, max_steps=5, encode=encode, progress=False)
    assert labels_by_key(rows) == {("", "a"): 1.0, ("a", "c"): 1.0, ("ac", "e"): 0.0, ("a", "d"): 0.5,
                                   ("", "b"): 0.3, ("b", "g"): 0.3, ("b", "h"): 0.0}
    assert rows[0].method == "stronger_model" and strong.calls == 2
    # the weak policy's greedy completion would have labelled (root, a) 0.0
    weak = stronger_model_completion(items, ScriptedPolicy(TREE), TASK.outcome, max_steps=5, progress=False)
    assert labels_by_key(weak)[("", "a")] == 0.0


# ---- fitted Q-iteration on a chain with a known fixed point ---------------------------------

T, GAMMA, B_OUT = 4, 0.9, [0.75, 0.1, 0.2, 0.3]
CHAIN = {tuple(f"A{i}" for i in range(d)): [(f"A{d}", d == T - 1), (f"B{d}", True)] for d in range(T)}


def chain_outcome(problem, text: str) -> float:
    if text.endswith(f"A{T - 1}"):
        return 1.0
    return B_OUT[int(text[-1])] if text.endswith(tuple(f"B{d}" for d in range(T))) else 0.0


def chain_items():
    trajs = sample_trajectories(TASK, ScriptedPolicy(CHAIN), ["q0"], n=16, temperature=1.0, seed=0, max_steps=T + 1)
    return state_actions(trajs)


def tabular_fit(items, rows):
    table = {it.key(""): r.label for it, r in zip(items, rows)}
    return lambda xs: [table.get(x.key(""), 0.0) for x in xs]


def q_after(l: int, path: tuple[str, ...], text: str, terminal: bool) -> float:
    """Oracle for exact tabular FQI: Q_0 = 0, Q_l(s, a) = r + gamma * max_a' Q_{l-1}(s', a')."""
    new = path + (text,)
    if terminal:
        return chain_outcome(None, "".join(new))
    if l == 1:
        return 0.0
    return GAMMA * max(q_after(l - 1, new, t, term) for t, term in CHAIN[new])


@pytest.mark.parametrize("iterations", [1, 2, T, T + 2])
def test_fqi_matches_exact_iterates_and_true_q(iterations):
    items = chain_items()
    assert len(items) == 2 * T  # every A and B of the chain
    rows = fitted_q_iteration(items, ScriptedPolicy(CHAIN), chain_outcome, fit=tabular_fit, gamma=GAMMA, k=2,
                              iterations=iterations, temperature=1.0, progress=False)
    for it, r in zip(items, rows):
        path = tuple(s.text for s in it.steps)
        assert r.label == pytest.approx(q_after(iterations, path, it.candidate.text, it.candidate.terminal), abs=1e-12)
        if iterations >= T:  # converged: the true Q of the chain
            q = true_q(CHAIN, lambda t: chain_outcome(None, t), path, it.candidate.text, it.candidate.terminal, GAMMA)
            assert abs(r.label - q) < 1e-9
        assert r.method == iteration_method("fqi", iterations)
    if iterations >= T:
        got = {(len(r.steps), r.candidate): r.label for r in rows}
        assert got[(0, "A0")] == pytest.approx(0.729) and got[(0, "B0")] == 0.75 and got[(2, "A2")] == pytest.approx(0.9)


def test_fqi_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="gamma"):
        fitted_q_iteration([], ScriptedPolicy(CHAIN), chain_outcome, fit=tabular_fit, gamma=1.5, k=2, iterations=1)
    with pytest.raises(ValueError, match="iterations"):
        fitted_q_iteration([], ScriptedPolicy(CHAIN), chain_outcome, fit=tabular_fit, gamma=0.9, k=2, iterations=0)


# ---- resumability ---------------------------------------------------------------------------


def run_bor(path, policy):
    _, items = items_of(ScriptedPolicy(TREE))
    return best_of_rollouts(items, policy, TASK.outcome, n=4, temperature=1.0, max_steps=5, batch_size=2,
                            writer=LabelWriter(path), progress=False)


def test_best_of_rollouts_resumes_after_a_crash_and_a_torn_line(tmp_path):
    full = tmp_path / "full.jsonl"
    rows_full = run_bor(full, ScriptedPolicy(TREE))
    part = tmp_path / "part.jsonl"
    with pytest.raises(RuntimeError, match="scripted crash"):
        run_bor(part, ScriptedPolicy(TREE, fail_after=2))  # dies in the third batch
    done = read_labels(part)
    assert 0 < len(done) < len(rows_full)
    with open(part, "ab") as f:
        f.write(b'{"question_id": "q0", "steps": ["a"')  # a write cut off by the crash
    with pytest.warns(RuntimeWarning, match="truncated last line"):
        rows = run_bor(part, ScriptedPolicy(TREE))
    assert rows == rows_full
    assert part.read_bytes() == full.read_bytes()
    keys = [r.key for r in read_labels(part)]
    assert len(keys) == len(set(keys)) == 7


def crashing_fit(after: int):
    """tabular_fit whose q_fn raises on its call number ``after + 1`` (a crash mid-iteration)."""
    calls = [0]

    def fit(items, rows):
        q = tabular_fit(items, rows)

        def q_fn(xs):
            calls[0] += 1
            if calls[0] > after:
                raise RuntimeError("crash while scoring")
            return q(xs)

        return q_fn

    return fit


def test_fqi_resumes_inside_an_iteration(tmp_path):
    items = chain_items()  # order: A0 A1 A2 A3 B3 B2 B1 B0; batches of 2 -> q_fn scores batches 1, 2
    kw = dict(gamma=GAMMA, k=2, iterations=3, temperature=1.0, batch_size=2, progress=False)
    full = tmp_path / "full.jsonl"
    fitted_q_iteration(items, ScriptedPolicy(CHAIN), chain_outcome, fit=tabular_fit, writer=LabelWriter(full), **kw)
    part = tmp_path / "part.jsonl"
    with pytest.raises(RuntimeError, match="crash while scoring"):
        fitted_q_iteration(items, ScriptedPolicy(CHAIN), chain_outcome, fit=crashing_fit(1), writer=LabelWriter(part), **kw)
    assert [r.method for r in read_labels(part)] == ["fqi_iter1"] * 8 + ["fqi_iter2"] * 2
    fitted_q_iteration(items, ScriptedPolicy(CHAIN), chain_outcome, fit=tabular_fit, writer=LabelWriter(part), **kw)
    assert part.read_bytes() == full.read_bytes()
    # a run with every iteration in the file proposes nothing and fits nothing it does not need
    again = ScriptedPolicy(CHAIN, fail_after=0)
    rows = fitted_q_iteration(items, again, chain_outcome, fit=crashing_fit(0), writer=LabelWriter(part), **kw)
    assert again.calls == 0 and [r.method for r in rows] == [iteration_method("fqi", 3)] * len(items)


def test_writer_rejects_duplicates_and_corrupt_middle_lines(tmp_path):
    path = tmp_path / "l.jsonl"
    row = LabelRow("q", ("a",), "b", 1.0, "m")
    with LabelWriter(path) as w:
        w.write([row])
        with pytest.raises(ValueError, match="already labelled"):
            w.write([row])
    text = path.read_text()
    path.write_text("not json\n" + text)
    with pytest.raises(ValueError, match="line 1"):
        LabelWriter(path)
    assert json.loads(text)["label"] == 1.0
    with pytest.raises(ValueError, match="finite"):
        LabelRow("q", (), "b", float("nan"), "m").to_json()
