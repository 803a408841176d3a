"""Q* with the paper's h (SearchConfig.lookahead): a node's h is the max q over the steps proposed
at it, proposed one round early. Checked against a brute-force recomputation on a scripted policy,
and on a real HFPolicy for consistency with the steps the node gets when it is expanded."""

from __future__ import annotations

import numpy as np
import pytest

from policy_tiny import char_tokenizer, tiny_model
from qstar_native import Searcher
from qstar_native.batch import Batch, Steps
from qstar_native.methods import QStar, parse_methods
from qstar_native.policy import HFPolicy
from qstar_native.value.scorers import step_states


class Scripted:
    """Children of a state: tokens 1..3 while the state is shorter than 6, the step [9] ends it."""

    def propose(self, batch: Batch) -> Steps:
        per = []
        for i in range(len(batch)):
            s = batch.state(i)
            per.append([[t] for t in (1, 2, 3)] if len(s) < 6 else [[9]])
        counts = [len(c) for c in per]
        flat = [t for c in per for t in c]
        return Steps(np.array(counts), np.array([x for t in flat for x in t], np.int32), np.ones(len(flat), np.int64),
                     terminal=np.array([t == [9] for t in flat]), generated=np.array(counts), forwarded=np.array(counts))  # fmt: skip


def q_of(state: np.ndarray) -> float:
    return float((int(state.sum()) * 7919 + len(state)) % 101) / 101


def scorer(batch: Batch, steps: Steps):
    return np.zeros(len(steps)), np.array([q_of(s) for s in step_states(batch, steps)])


def test_h_is_the_max_q_of_the_nodes_own_proposals():
    policy = Scripted()
    expand = _expand(policy)
    result = Searcher(expand, k=3, lookahead=True, aggregate="zero", max_expansions=20, max_steps=5).search([4, 4], keep_tree=True)
    checked = 0
    for node in result.tree:
        if node.parent < 0:
            continue
        own = q_of(node.tokens)
        if node.terminal or node.depth >= 5:
            assert node.h == pytest.approx(own)
            continue
        kids = policy.propose(Batch.of_states([node.tokens]))
        best = max(q_of(np.concatenate([node.tokens, kids.tokens[i : i + 1]])) for i in range(len(kids)))
        assert node.h == pytest.approx(best)
        checked += 1
    assert checked > 5
    plain = Searcher(_expand(policy), k=3, aggregate="zero", max_expansions=20, max_steps=5).search([4, 4])
    assert result.stats.generated_tokens > plain.stats.generated_tokens  # the look-ahead's proposals are charged


def _expand(policy):
    from qstar_native.scheduler import PolicyExpand

    return PolicyExpand(policy, scorer)


def test_on_hfpolicy_h_equals_the_max_q_of_the_children_the_node_gets():
    tok = char_tokenizer()
    policy = HFPolicy(tiny_model("llama"), tok, max_step_tokens=4, kv_blocks=4096, seed=3)
    raw: dict[bytes, float] = {}

    def recording(batch, steps):
        states = step_states(batch, steps)
        q = np.array([q_of(s) for s in states])
        raw.update((s.astype(np.int32).tobytes(), v) for s, v in zip(states, q))
        return np.zeros(len(steps)), q

    root = np.asarray(tok.encode("Q: 3 + 4?\n"), np.int32)
    result = Searcher(policy.as_expand(recording), k=3, temperature=1.2, lookahead=True, aggregate="zero", max_expansions=8,
                      max_steps=4).search(root, seed=5, keep_tree=True)  # fmt: skip
    by_parent: dict[int, list] = {}
    for n in result.tree:
        by_parent.setdefault(n.parent, []).append(n)
    checked = 0
    for n in result.tree:
        kids = by_parent.get(n.id, [])
        if n.parent >= 0 and kids and n.status == "expanded":
            assert n.h == pytest.approx(max(raw[k.tokens.astype(np.int32).tobytes()] for k in kids))
            checked += 1
    assert checked >= 3
    assert policy.cache.stats().pinned_blocks == 0  # the look-ahead's pins were released


def test_lookahead_method_and_config():
    (m,) = parse_methods("qstar-lookahead:8", k=2, lam=1.0, temperature=1.0, max_steps=4)
    assert m.lookahead and m.config.lookahead and m.name.endswith("_lookahead")
    assert not QStar().config.lookahead
    with pytest.raises(TypeError, match="lookahead must be a bool"):
        QStar(lookahead="yes")
