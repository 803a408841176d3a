"""Stateful property tests: the native engine against the Python model in engine_model.py.

Small token alphabets and integer rewards make duplicate states and f ties common, so merges,
reopenings, tie-breaking by id, capacity pruning, beam levels and budgets are all exercised.

Every child brings a KV pin on its state in a real PrefixCache, as a policy's children do. The
invariant "one tree": the cache's pins are exactly the pins of the engine's live nodes (open or
selected, non-terminal, search running), the blocks it keeps locked are exactly those nodes'
blocks, and nothing stays pinned once the search is done.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import numpy as np

from engine_model import INF, EngineModel
from qstar_native import Engine, PrefixCache, Step, Steps

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
        max_steps=st.sampled_from([INF, 2, 4]),
        max_tokens=st.sampled_from([INF, 10, 30]),
        frontier_capacity=st.sampled_from([INF, 2, 5]),
        beam=st.sampled_from([None, None, 1, 2, 3, INF]),  # None: best-first; else the beam width
        root=st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple),
    )
    def setup(self, aggregate, lam, num_solutions, max_expansions, max_nodes, max_steps, max_tokens,
              frontier_capacity, beam, root):
        kwargs = dict(lam=lam, aggregate=aggregate, num_solutions=num_solutions, max_expansions=max_expansions,
                      max_nodes=max_nodes, max_steps=max_steps, max_tokens=max_tokens,
                      frontier_capacity=frontier_capacity)
        if beam is not None:
            kwargs.update(selection="beam", beam_width=beam)
        self.model = EngineModel(**kwargs)
        self.cache = PrefixCache(num_blocks=4096, block_size=1)
        self.engine = Engine(cache=self.cache, **{k: (_limit(v) if isinstance(v, float) and k != "lam" else v) for k, v in kwargs.items()})
        assert self.engine.add_root(root) == self.model.add_root(root) == 0
        self.selected: list[int] = []

    def pin_state(self, tokens: tuple[int, ...]) -> int:
        """Caches a state's (fake) KV and pins it, as a policy does for each child it proposes."""
        arr = np.asarray(tokens, np.int32)
        m = self.cache.match(arr)
        self.cache.insert(arr, np.concatenate([m.slots, self.cache.allocate(len(arr) - m.length)]))
        return self.cache.pin(arr)

    @rule(k=st.integers(1, 3))
    def select(self, k):
        got = [int(x) for x in self.engine.select(k)]
        assert got == self.model.select(k)
        self.selected.extend(got)

    @precondition(lambda self: self.selected)
    @rule(data=st.data(), children=st.lists(child_st, max_size=4))
    def expand(self, data, children):
        node = self.selected.pop(data.draw(st.integers(0, len(self.selected) - 1)))
        state = tuple(self.engine.state_tokens(node).tolist())
        handles = [self.pin_state(state + t) if data.draw(st.booleans()) else -1 for t, _, _, _ in children]
        steps = Steps.from_lists([[Step(list(t), reward=r, q=q, terminal=term) for t, r, q, term in children]])
        steps.kv_handles = np.asarray(handles, np.int64)
        got = [int(x) for x in self.engine.expand_steps(np.array([node]), steps)]
        assert got == self.model.expand(node, children, handles)

    @invariant()
    def same_state(self):
        eng, model = self.engine, self.model
        assert eng.num_nodes == len(model.nodes)
        assert eng.frontier() == model.frontier()  # same order: f desc, id asc (beam: this level, then the next)
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

    @invariant()
    def one_tree(self):
        eng, model, cache = self.engine, self.model, self.cache
        assert eng.pinned_nodes() == sorted(model.pins)
        assert [eng.node(i)._field("kv_handle") for i in sorted(model.pins)] == [model.pins[i] for i in sorted(model.pins)]
        assert cache.num_pins == len(model.pins) == eng.stats().pinned  # no pin lost or leaked
        live_blocks = sorted({int(b) for h in model.pins.values() for b in cache.pin_blocks(h)})
        assert cache.pinned_block_ids().tolist() == live_blocks
        if eng.done:
            assert cache.num_pins == 0
        cache.check_invariants()


EngineVsModel.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestEngineVsModel = EngineVsModel.TestCase
