"""The engine's ask/tell API: exact order, aggregation, budgets, and bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from qstar_native import Engine, Step, Steps


def test_select_order_is_f_descending_then_id_ascending():
    eng = Engine(aggregate="sum")
    root = eng.add_root([0])
    eng.select(1)
    eng.expand(root, [Step([1], q=1.0), Step([2], q=3.0), Step([3], q=1.0), Step([4], q=3.0)])
    assert eng.frontier() == [2, 4, 1, 3]
    assert eng.select(3).tolist() == [2, 4, 1]


@pytest.mark.parametrize(
    "aggregate, expected",
    [("min", -2.0), ("max", 3.0), ("sum", 1.5), ("mean", 0.5), ("product", -3.0), ("last", 0.5), ("zero", 0.0)],
)
def test_aggregates_are_incremental_and_exact(aggregate, expected):
    rewards = [3.0, -2.0, 0.5]
    eng = Engine(aggregate=aggregate, lam=0.0)
    node = eng.add_root([9])
    for i, r in enumerate(rewards):
        assert eng.select(1).tolist() == [node]
        (node,) = eng.expand(node, [Step([i], reward=r)])
    rec = eng.node(node)
    assert rec.g == pytest.approx(expected) and rec.f == rec.g and rec.depth == 3


def test_f_is_g_plus_lambda_h():
    eng = Engine(aggregate="min", lam=0.5)
    root = eng.add_root([1])
    eng.select(1)
    (c,) = eng.expand(root, [Step([2], reward=-1.0, q=4.0)])
    rec = eng.node(c)
    assert (rec.g, rec.h, rec.f) == (-1.0, 4.0, -1.0 + 0.5 * 4.0)


def test_path_steps_and_state_tokens():
    eng = Engine()
    root = eng.add_root([7, 8])
    eng.select(1)
    (a,) = eng.expand(root, [Step([1, 2])])
    eng.select(1)
    (b,) = eng.expand(a, [Step([3], terminal=True)])
    assert eng.path(b) == [root, a, b]
    assert [s.tolist() for s in eng.steps(b)] == [[1, 2], [3]]
    assert eng.state_tokens(b).tolist() == [7, 8, 1, 2, 3]
    assert eng.state_tokens(b).dtype == np.int32


def test_duplicate_token_state_merges_even_when_split_differently():
    eng = Engine(aggregate="sum")
    root = eng.add_root([0])
    eng.select(1)
    a, b = eng.expand(root, [Step([1], reward=-1.0), Step([1, 2], reward=-5.0)])
    eng.select(1)  # a (f=-1) first
    (c,) = eng.expand(a, [Step([2], reward=-1.0)])  # [0,1,2] again, via a better path
    assert c == b and eng.stats().merged == 1
    rec = eng.node(b)
    assert rec.parent == a and rec.g == -2.0 and rec.depth == 2
    assert eng.state_tokens(b).tolist() == [0, 1, 2]


def test_worse_duplicate_keeps_existing_path():
    eng = Engine(aggregate="sum")
    root = eng.add_root([0], key="s")
    eng.select(1)
    (a,) = eng.expand(root, [Step([1], reward=-1.0, key="a")])
    eng.select(1)
    assert eng.expand(a, [Step([1], reward=-1.0, key="s")]) == [root]  # back to the root: worse
    assert eng.node(root).parent == -1 and eng.stats().merged == 1


def test_batched_select_does_not_accept_a_terminal_below_a_handed_out_node():
    eng = Engine(aggregate="sum", num_solutions=1)
    root = eng.add_root([0])
    eng.select(1)
    a, t = eng.expand(root, [Step([1], q=5.0), Step([2], q=1.0, terminal=True)])
    assert eng.select(4).tolist() == [a]  # the terminal waits: a may still beat it
    assert eng.solutions == []
    (better,) = eng.expand(a, [Step([3], q=4.0, terminal=True)])
    assert eng.select(4).size == 0
    assert eng.solutions == [better] and eng.stop_reason == "solutions"


def test_num_solutions_are_returned_best_first():
    eng = Engine(aggregate="sum", num_solutions=2)
    root = eng.add_root([0])
    eng.select(1)
    eng.expand(root, [Step([i], reward=-float(i), terminal=True) for i in (3, 1, 2)])
    eng.select(1)
    assert eng.solutions == [2, 3] and eng.done


@pytest.mark.parametrize(
    "budget, reason",
    [({"max_expansions": 2}, "max_expansions"), ({"max_nodes": 4}, "max_nodes"), ({"max_tokens": 5}, "max_tokens")],
)
def test_budgets_stop_the_search_and_say_why(budget, reason):
    eng = Engine(aggregate="sum", **budget)
    root = eng.add_root([0])
    frontier = [root]
    while not eng.done:
        ids = eng.select(1)
        for n in ids:
            eng.expand(int(n), [Step([1, 1], reward=-1.0), Step([2, 2], reward=-2.0)])
        frontier.extend(ids)
    assert eng.stop_reason == reason
    stats = eng.stats()
    assert stats.nodes + stats.dropped_budget == 1 + stats.generated - stats.merged


def test_frontier_capacity_prunes_worst_and_counts_them():
    eng = Engine(aggregate="sum", frontier_capacity=2)
    root = eng.add_root([0])
    eng.select(1)
    ids = eng.expand(root, [Step([i], reward=-float(i)) for i in (1, 2, 3, 4)])
    assert eng.frontier() == ids[:2]
    assert [eng.node(i).status for i in ids[2:]] == ["pruned", "pruned"]
    assert eng.stats().pruned_capacity == 2


def test_max_steps_prunes_non_terminals_and_keeps_terminals():
    eng = Engine(max_steps=1)
    root = eng.add_root([0])
    eng.select(1)
    a, t = eng.expand(root, [Step([1], q=1.0), Step([2], terminal=True)])
    assert eng.node(a).status == "pruned" and eng.stats().pruned_depth == 1
    eng.select(1)
    assert eng.solutions == [t]


def test_release_puts_selected_nodes_back():
    eng = Engine()
    root = eng.add_root([0])
    assert eng.select(1).tolist() == [root]
    eng.release([root])
    assert eng.frontier() == [root] and not eng.done
    assert eng.select(1).tolist() == [root]


def test_empty_frontier_is_exhausted():
    eng = Engine()
    root = eng.add_root([0])
    eng.select(1)
    eng.expand(root, [])
    assert eng.done and eng.stop_reason == "exhausted"


# ---- bad input ------------------------------------------------------------------------------


def selected_engine(**kwargs) -> tuple[Engine, int]:
    eng = Engine(**kwargs)
    root = eng.add_root([0])
    eng.select(1)
    return eng, root


@pytest.mark.parametrize("field", ["reward", "q"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_reward_or_q_is_rejected_and_nothing_changes(field, bad):
    eng, root = selected_engine()
    before = eng.stats()
    with pytest.raises(ValueError, match=f"non-finite {field}"):
        eng.expand(root, [Step([1]), Step([2], **{field: bad})])
    assert replace(eng.stats(), engine_seconds=0) == replace(before, engine_seconds=0)
    assert eng.node(root).status == "selected"
    assert eng.expand(root, [Step([1])]) == [1]  # still usable


def test_wrong_token_dtype_or_shape():
    eng, root = selected_engine()
    with pytest.raises(TypeError, match="integer token ids.*np.int32"):
        eng.expand(root, [Step(np.array([1.5, 2.0]))])
    with pytest.raises(ValueError, match="1-D"):
        eng.expand(root, [Step(np.array([[1, 2]]))])
    with pytest.raises(TypeError, match="integer token ids"):
        Engine().add_root(["a", "b"])
    with pytest.raises(TypeError, match="reward of step 0 must be a real number"):
        eng.expand(root, [Step([1], reward="high")])
    with pytest.raises(TypeError, match="qstar_native.Step"):
        eng.expand(root, [([1], 0.0)])


def test_token_ids_out_of_range():
    eng, root = selected_engine(vocab_size=10)
    with pytest.raises(ValueError, match=r"token id 10 .*outside the vocabulary \[0, 10\)"):
        eng.expand(root, [Step([1, 10])])
    with pytest.raises(ValueError, match="token id -1"):
        eng.expand(root, [Step([-1])])
    with pytest.raises(ValueError, match=r"token id 4294967296"):
        eng.expand(root, [Step(np.array([2**32], dtype=np.int64))])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Engine(vocab_size=5).add_root([7])


def test_empty_step_is_rejected():
    eng, root = selected_engine()
    with pytest.raises(ValueError, match="empty step"):
        eng.expand(root, [Step([])])


def test_expanding_twice_or_unselected_or_unknown_nodes():
    eng, root = selected_engine()
    (a,) = eng.expand(root, [Step([1])])
    with pytest.raises(ValueError, match="already expanded"):
        eng.expand(root, [Step([2])])
    with pytest.raises(ValueError, match="not handed out by select"):
        eng.expand(a, [Step([2])])
    with pytest.raises(ValueError, match="does not exist"):
        eng.expand(99, [Step([2])])
    with pytest.raises(ValueError, match="appears twice"):
        eng.select(1)
        eng.expand_steps(np.array([a, a]), Steps.from_lists([[Step([2])], [Step([3])]]))
    assert eng.expand(a, [Step([2])]) == [2]


def test_keys_all_or_nothing():
    eng, root = selected_engine()
    with pytest.raises(ValueError, match="root has no key"):
        eng.expand(root, [Step([1], key="x")])
    with pytest.raises(ValueError, match="some steps have a key"):
        eng.expand(root, [Step([1], key="x"), Step([2])])


def test_bad_configuration_names_the_argument():
    with pytest.raises(ValueError, match="aggregate must be one of"):
        Engine(aggregate="median")
    with pytest.raises(ValueError, match="max_nodes must be at least 1"):
        Engine(max_nodes=0)
    with pytest.raises(ValueError, match="lam must be a finite"):
        Engine(lam=math.nan)
    with pytest.raises(TypeError, match="max_steps must be an int"):
        Engine(max_steps=2.5)
    with pytest.raises(RuntimeError, match="already has a root"):
        eng = Engine()
        eng.add_root([1])
        eng.add_root([1])
    with pytest.raises(IndexError, match="does not exist"):
        Engine().node(0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        Engine().select(0)


def test_product_overflow_is_an_error_not_an_infinite_f():
    eng = Engine(aggregate="product")
    root = eng.add_root([0])
    eng.select(1)
    (node,) = eng.expand(root, [Step([1], reward=1e200)])
    eng.select(1)
    with pytest.raises(ValueError, match="non-finite f"):
        eng.expand(node, [Step([1], reward=1e200)])
