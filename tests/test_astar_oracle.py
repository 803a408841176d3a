"""Optimality against an independent oracle: shortest paths from networkx.

On random positive-weight digraphs, with step reward = -edge weight, aggregate "sum" and an
admissible heuristic as q, A* (exact, and batched) must return a path whose cost is networkx's
shortest-path length. Heuristics include inconsistent ones, which need A*'s reopening of closed
nodes to stay optimal.
"""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qstar_native import Step, Searcher


@st.composite
def graphs(draw):
    n = draw(st.integers(2, 10))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.integers(1, 20)), max_size=40))
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    for u, v, w in edges:
        if u != v and (not g.has_edge(u, v) or g[u][v]["weight"] > w):
            g.add_edge(u, v, weight=w)
    source, target = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    # Admissible heuristic: a random fraction of the true remaining cost (inconsistent in general).
    to_target = nx.single_source_dijkstra_path_length(g.reverse(copy=True), target)
    fractions = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=n, max_size=n))
    heuristic = {v: fractions[v] * to_target.get(v, 0) for v in range(n)}
    return g, source, target, heuristic


def graph_expander(g: nx.DiGraph, target: int, heuristic: dict[int, float], calls: list[int]):
    def expand(nodes):
        calls.append(len(nodes))
        out = []
        for node in nodes:
            u = int(node.tokens[-1])
            out.append([
                Step([v], reward=-g[u][v]["weight"], q=-heuristic[v], terminal=v == target, key=str(v))
                for v in sorted(g.successors(u))
            ])
        return out

    return expand


@pytest.mark.parametrize("batch_size", [1, 3])
@given(case=graphs())
def test_best_solution_cost_equals_networkx_shortest_path(case, batch_size):
    g, source, target, heuristic = case
    calls: list[int] = []
    searcher = Searcher(graph_expander(g, target, heuristic, calls), aggregate="sum", batch_size=batch_size)
    result = searcher.search([source], key=str(source))
    assert all(c <= batch_size for c in calls)
    if not nx.has_path(g, source, target):
        assert result.best is None and result.stop_reason == "exhausted"
        return
    expected = nx.shortest_path_length(g, source, target, weight="weight")
    best = result.best
    assert best is not None and result.stop_reason == "solutions"
    assert -best.g == expected
    # The returned path is a real path of the graph whose weights sum to the cost.
    vertices = [source] + [int(s[0]) for s in best.steps]
    assert vertices[-1] == target
    assert sum(g[u][v]["weight"] for u, v in zip(vertices, vertices[1:])) == expected
    assert best.rewards == [-g[u][v]["weight"] for u, v in zip(vertices, vertices[1:])]


@given(case=graphs())
def test_token_states_without_keys_find_the_same_cost(case):
    """Without keys every path is its own state (a tree search): still optimal, only slower."""
    g, source, target, heuristic = case
    searcher = Searcher(
        lambda nodes: [
            [Step([v], reward=-g[int(n.tokens[-1])][v]["weight"], q=-heuristic[v], terminal=v == target)
             for v in sorted(g.successors(int(n.tokens[-1])))]
            for n in nodes
        ],
        aggregate="sum",
        max_steps=len(g),  # simple paths suffice; bounds the tree on cyclic graphs
    )
    result = searcher.search([source])
    if nx.has_path(g, source, target):
        assert -result.best.g == nx.shortest_path_length(g, source, target, weight="weight")
    else:
        assert result.best is None
