"""Stateful property tests: the native engine against the Python model in engine_model.py.

Small token alphabets and integer rewards make duplicate states and f ties common, so merges,
reopenings, tie-breaking by id, capacity pruning and budgets are all exercised.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine_model import INF, EngineModel
from qstar_native import Child, Engine

AGGREGATES = ["min", "max", "sum", "mean", "product", "last", "zero"]

child_st = st.tuples(
    st.lists(st.integers(0, 2), min_size=1, max_size=2).map(tuple),  # step tokens
    st.integers(-3, 3).map(float),  # reward
    st.integers(-2, 2).map(float),  # q
    st.booleans(),  # terminal
)


def _limit(x: float) -> int | None:
    return None if x == INF else int(x)


class EngineVsModel(RuleBasedStateMachine):
    @initialize(
        aggregate=st.sampled_from(AGGREGATES),
        lam=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
        num_solutions=st.integers(1, 4),
        max_expansions=st.sampled_from([INF, 3, 8]),
        max_nodes=st.sampled_from([INF, 6, 20]),
        max_depth=st.sampled_from([INF, 2, 4]),
        max_tokens=st.sampled_from([INF, 10, 30]),
        frontier_capacity=st.sampled_from([INF, 2, 5]),
        root=st.lists(st.integers(0, 5), max_size=3).map(tuple),
    )
    def setup(self, aggregate, lam, num_solutions, max_expansions, max_nodes, max_depth, max_tokens,
              frontier_capacity, root):
        kwargs = dict(lam=lam, aggregate=aggregate, num_solutions=num_solutions, max_expansions=max_expansions,
                      max_nodes=max_nodes, max_depth=max_depth, max_tokens=max_tokens,
                      frontier_capacity=frontier_capacity)
        self.model = EngineModel(**kwargs)
        self.engine = Engine(**{k: (_limit(v) if isinstance(v, float) and k != "lam" else v) for k, v in kwargs.items()})
        assert self.engine.add_root(root) == self.model.add_root(root) == 0
        self.selected: list[int] = []

    @rule(k=st.integers(1, 3))
    def select(self, k):
        got = [int(x) for x in self.engine.select(k)]
        assert got == self.model.select(k)
        self.selected.extend(got)

    @precondition(lambda self: self.selected)
    @rule(data=st.data(), children=st.lists(child_st, max_size=4))
    def expand(self, data, children):
        node = self.selected.pop(data.draw(st.integers(0, len(self.selected) - 1)))
        got = self.engine.expand(node, [Child(list(t), r, q, term) for t, r, q, term in children])
        assert got == self.model.expand(node, children)

    @invariant()
    def same_state(self):
        eng, model = self.engine, self.model
        assert eng.num_nodes == len(model.nodes)
        assert eng.frontier() == model.with_status("open")  # same order: f desc, id asc
        assert eng.solutions == model.solutions
        assert eng.stop_reason == model.stop
        s = eng.stats()
        assert (s.merged, s.reopened, s.pruned_depth, s.pruned_capacity, s.dropped_budget, s.expanded, s.tokens) == (
            model.merged, model.reopened, model.pruned_depth, model.pruned_capacity, model.dropped,
            model.expanded, model.tokens)
        # No node lost: every node is in exactly one state, and the counts add up.
        statuses = [eng.node(i).status for i in range(eng.num_nodes)]
        assert statuses == [n.status for n in model.nodes]
        assert s.frontier == statuses.count("open") and s.selected == statuses.count("selected")
        for i, n in enumerate(model.nodes):
            rec = eng.node(i)
            assert (rec.parent, rec.depth, rec.g, rec.h, rec.f) == (n.parent, n.depth, n.g, n.h, n.f)
            assert tuple(eng.state_tokens(i).tolist()) == n.tokens


EngineVsModel.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestEngineVsModel = EngineVsModel.TestCase
