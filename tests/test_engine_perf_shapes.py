"""Shapes the engine's flat data structures must handle exactly as the specification says.

The frontier is an indexed heap, states live in an open-addressing table, nodes in fixed-size
blocks and step tokens in fixed-size chunks. These tests drive them past the sizes the stateful
tests reach: a frontier of thousands of entries (a heap many levels deep) with capacity pruning,
duplicate states reached through different step splits deep in a tree, more nodes than one block,
a step longer than one token chunk, and release() given the same node twice. No timing here.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine_model import INF, EngineModel
from qstar_native import Engine, Step, Steps


@pytest.mark.parametrize("seed,capacity", [(0, None), (1, 150)])
def test_large_search_matches_the_model(seed, capacity):
    """A few thousand nodes from a 3-token alphabet (many duplicates, merges and reopenings) and
    integer scores (many f ties), checked against the plain-Python model of the specification."""
    rng = random.Random(seed)
    kwargs = dict(aggregate="sum", num_solutions=10**6, max_nodes=2000)
    model = EngineModel(aggregate="sum", num_solutions=10**6, max_nodes=2000,
                        frontier_capacity=INF if capacity is None else capacity)  # fmt: skip
    eng = Engine(frontier_capacity=capacity, **kwargs)
    assert eng.add_root([0]) == model.add_root((0,)) == 0
    step = 0
    while not eng.done:
        step += 1
        k = rng.choice([1, 2, 4])
        got = [int(x) for x in eng.select(k)]
        assert got == model.select(k)
        for node in got:  # one call per node, as the model expands
            children = [(tuple(rng.randrange(3) for _ in range(rng.randint(1, 2))), float(rng.randint(-3, 0)),
                         float(rng.randint(0, 3)), rng.random() < 0.05) for _ in range(rng.randint(0, 6))]  # fmt: skip
            steps = Steps.from_lists([[Step(list(t), reward=r, q=q, terminal=term) for t, r, q, term in children]])
            landed = [int(x) for x in eng.expand_steps(np.array([node]), steps)]
            assert landed == model.expand(node, children)
        if step % 25 == 0 or eng.done:
            assert eng.frontier() == model.frontier()
            assert eng.solutions == model.solutions
    s = eng.stats()
    assert (s.merged, s.reopened, s.pruned_capacity, s.dropped_budget, s.expanded, s.nodes) == (
        model.merged, model.reopened, model.pruned_capacity, model.dropped, model.expanded, len(model.nodes))
    assert s.merged > 100 and s.nodes == 2000
    assert eng.stop_reason == model.stop
    for i in range(0, eng.num_nodes, 7):
        n, rec = model.nodes[i], eng.node(i)
        assert (rec.parent, rec.depth, rec.status, rec.g, rec.f) == (n.parent, n.depth, n.status, n.g, n.f)
        assert tuple(eng.state_tokens(i).tolist()) == n.tokens


def test_many_nodes_pop_in_rank_order():
    """More nodes than one node block; the frontier pops f descending, ties by id."""
    eng = Engine(aggregate="sum", num_solutions=None, batch_size=64)
    eng.add_root([1])
    eng.select(1)
    n = 10_000
    rng = np.random.default_rng(0)
    q = rng.integers(0, 50, n).astype(np.float64)  # many ties
    tokens = np.arange(2 * n, dtype=np.int32)
    landed = eng.expand_steps(np.array([0]), Steps(np.array([n]), tokens, np.full(n, 2), q=q))
    assert landed.tolist() == list(range(1, n + 1))
    want = sorted(range(1, n + 1), key=lambda i: (-q[i - 1], i))
    assert eng.frontier() == want
    assert eng.frontier(limit=5) == want[:5]
    got = []
    while not eng.done:
        ids = eng.select(64)
        got += ids.tolist()
        eng.expand_steps(ids, Steps.empty(len(ids)))
    assert got == want
    infos = eng._core.infos(np.arange(n + 1, dtype=np.int64))
    assert infos["parent"].tolist() == [-1] + [0] * n
    assert infos["f"][1:].tolist() == q.tolist()


def test_duplicates_through_different_splits_deep_in_the_tree():
    eng = Engine(aggregate="sum", num_solutions=None)
    eng.add_root(list(range(100)))  # a long shared prefix
    eng.select(1)
    a, b = eng.expand(0, [Step([1, 2], reward=-1.0), Step([1], reward=-1.0)])
    eng.select(2)
    eng.expand(a, [Step([3, 4], reward=-5.0)])
    (b2,) = eng.expand(b, [Step([2, 3], reward=-1.0)])
    eng.select(1)
    (merged,) = eng.expand(b2, [Step([4], reward=-1.0)])  # same state as a's child, better g
    assert merged == a + 2 and eng.stats().merged == 1
    assert eng.node(merged).parent == b2 and eng.node(merged).g == -3.0
    assert eng.state_tokens(merged).tolist() == list(range(100)) + [1, 2, 3, 4]
    assert eng.path(merged) == [0, b, b2, merged]


def test_steps_longer_than_a_token_chunk_and_an_empty_root():
    eng = Engine(num_solutions=None)
    eng.add_root([])
    eng.select(1)
    long = np.arange(70_000, dtype=np.int32) % 1000
    ids = eng.expand_steps(np.array([0]), Steps(np.array([3]), np.concatenate([long, [5], long]), np.array([70_000, 1, 70_000])))
    assert ids.tolist() == [1, 2, 1]  # the third child is the first one's state: merged
    assert eng.stats().merged == 1
    assert eng.state_tokens(1).tolist() == long.tolist() and eng.step_tokens(2).tolist() == [5]


def test_release_of_the_same_node_twice_is_one_release():
    eng = Engine(aggregate="sum", num_solutions=None, batch_size=2)
    eng.add_root([0])
    eng.select()
    eng.expand(0, [Step([1], q=1.0), Step([2], q=2.0), Step([3], q=3.0)])
    ids = eng.select(2).tolist()
    assert ids == [3, 2]
    eng.release([3, 3, 2])
    assert eng.frontier() == [3, 2, 1] and eng.stats().selected == 0
    assert eng.select(3).tolist() == [3, 2, 1]
