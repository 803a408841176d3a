"""Beam selection in the engine against a direct implementation of step-level beam search.

The reference is the textbook loop: every round, all live beams propose their children; the
best ``width - finished`` children (by f, ties to the earlier beam and earlier step) survive;
terminal survivors are finished. The engine must finish the same paths in the same order.
One refinement over the plain loop: in the last round (depth = max_steps) a non-terminal child
can never finish, so it does not take a slot (the engine prunes it when it is inserted).
"""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qstar_native import Engine, SearchConfig, Step


def children_of(seed: int, path: tuple[int, ...], max_children: int) -> list[tuple[int, float, float, bool]]:
    """A fixed random tree: (token, reward, q, terminal) per child, from a hash of the path."""
    h = hashlib.blake2b(repr((seed, path)).encode(), digest_size=16).digest()
    rng = np.random.default_rng(int.from_bytes(h, "little"))
    n = int(rng.integers(0, max_children + 1))
    return [(int(rng.integers(0, 50)), float(rng.integers(-3, 1)), float(rng.integers(0, 4)) / 2, bool(rng.random() < 0.25)) for _ in range(n)]


def reference_beam(seed, width, max_children, max_steps, lam):
    beams: list[tuple[tuple[int, ...], float]] = [((), 0.0)]  # (path, g = min of rewards)
    finished: list[tuple[int, ...]] = []
    rounds = 0
    while beams and len(finished) < width and rounds < max_steps:
        rounds += 1
        kids = []
        for path, g in beams:
            for tok, r, q, term in children_of(seed, path, max_children):
                cg = r if not path else min(g, r)
                if term or rounds < max_steps:
                    kids.append((path + (tok,), cg, cg + lam * q, term))
        keep = sorted(kids, key=lambda c: -c[2])[: width - len(finished)]  # stable: ties keep creation order
        finished += [c[0] for c in keep if c[3]]
        beams = [(c[0], c[1]) for c in keep if not c[3]]
    return finished


def engine_beam(seed, width, max_children, max_steps, lam, batch):
    cfg = SearchConfig(selection="beam", beam_width=width, num_solutions=width, max_steps=max_steps, lam=lam, aggregate="min", dedup=False)
    eng = Engine(cfg)
    eng.add_root([0])
    paths = {0: ()}
    while not eng.done:
        for n in eng.select(batch):
            path = paths[int(n)]
            kids = children_of(seed, path, max_children)
            landed = eng.expand(int(n), [Step([t], reward=r, q=q, terminal=term) for t, r, q, term in kids])
            for (t, *_), c in zip(kids, landed):
                paths[c] = path + (t,)
    return [paths[s] for s in eng.solutions]


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), width=st.integers(1, 5), max_children=st.integers(0, 5), max_steps=st.integers(1, 6),
       lam=st.sampled_from([0.0, 1.0, 2.0]), batch=st.sampled_from([1, 2, 100]))  # fmt: skip
def test_engine_beam_equals_reference(seed, width, max_children, max_steps, lam, batch):
    assert engine_beam(seed, width, max_children, max_steps, lam, batch) == reference_beam(seed, width, max_children, max_steps, lam)


def test_beam_keeps_width_minus_finished():
    # Level 1: a terminal (best) and three open nodes; width 3 keeps the terminal and two others.
    eng = Engine(selection="beam", beam_width=3, num_solutions=3, aggregate="sum")
    eng.add_root([0])
    (root,) = eng.select(10)
    t, a, b, c = eng.expand(int(root), [Step([1], q=9, terminal=True), Step([2], q=3), Step([3], q=2), Step([4], q=1)])
    assert eng.solutions == [t]
    assert eng.frontier() == [a, b] and eng.node(c).status == "pruned"
    # Level 2: 2 slots left; the best child of each beam is kept.
    sel = [int(x) for x in eng.select(10)]
    assert sel == [a, b]
    (a1, a2) = eng.expand(a, [Step([5], q=5), Step([6], q=0)])
    (b1,) = eng.expand(b, [Step([7], q=4, terminal=True)])
    assert eng.solutions == [t, b1] and eng.frontier() == [a1] and eng.node(a2).status == "pruned"
    assert eng.stats().pruned_capacity == 2


def test_unlimited_width_keeps_every_child_and_accepts_every_terminal():
    eng = Engine(selection="beam", beam_width=None, num_solutions=None, dedup=False)
    eng.add_root([0])
    eng.select(10)
    ids = eng.expand(0, [Step([1], terminal=True, count=3), Step([1], count=1), Step([2], terminal=True)])
    assert eng.solutions == [ids[0], ids[2]] and eng.frontier() == [ids[1]]
    assert [eng.node(i).samples for i in ids] == [3, 1, 1]
    eng.select(10)
    eng.expand(ids[1], [])
    assert eng.done and eng.stop_reason == "exhausted"
