"""HFPolicy inside a search: accounting, pins, eviction under pressure, limits, fallback, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from policy_tiny import char_tokenizer, step_logprob, tiny_model
from qstar_native import Searcher
from qstar_native.policy import HFPolicy, KVCapacityError, tree_tokens

TOK = char_tokenizer()
ROOT = np.asarray(TOK.encode("Q: Tom has 3 apples and buys 4 more. How many?\n"), dtype=np.int32)


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", seed=1)


def make_policy(model, **kw):
    args = dict(num_candidates=3, temperature=1.0, max_step_tokens=5, kv_blocks=4096, seed=7)
    args.update(kw)
    return HFPolicy(model, TOK, **args)


def run_search(policy, expansions=12, batch_size=3, scorer=None):
    """Ask/tell with the policy's expand callback; returns the engine (to read the tree)."""
    searcher = Searcher(policy.as_expand(scorer), aggregate="mean", batch_size=batch_size, num_solutions=50,
                        max_expansions=expansions)
    eng = searcher.new_engine()
    eng.add_root(ROOT)
    expand = policy.as_expand(scorer)
    while True:
        ids = eng.select(batch_size)
        if ids.size == 0:
            break
        nodes = [eng.view(int(i)) for i in ids]
        eng.expand_many([n.id for n in nodes], expand(nodes))
    return eng


def tree(eng):
    return sorted(eng.state_tokens(n).tobytes() for n in range(eng.num_nodes))


@pytest.mark.parametrize("block_size", [1, 4])
def test_forwarded_tokens_at_most_distinct_tree_tokens(model, block_size):
    policy = make_policy(model, block_size=block_size)
    eng = run_search(policy)
    distinct = tree_tokens(eng)
    assert eng.stats().expanded == 12 and eng.num_nodes > 25
    assert distinct == len(ROOT) + eng.stats().tokens
    limit = 1.0 if block_size == 1 else 1.05
    assert policy.tokens_forwarded <= limit * distinct, (policy.tokens_forwarded, distinct)
    assert policy.cache.stats().evictions == 0 and policy.writeback_skipped == 0


def test_sharing_and_recompute_build_the_same_tree(model):
    shared, plain = make_policy(model), make_policy(model, prefix_sharing=False)
    t1, t2 = run_search(shared), run_search(plain)
    assert tree(t1) == tree(t2)
    assert plain.tokens_forwarded > 1.5 * shared.tokens_forwarded
    assert plain.cache is None and plain.cache_hit_tokens == 0


def test_search_under_pool_pressure_evicts_and_stays_exact(model):
    """A pool far smaller than the tree: allocation evicts (and drops frontier pins) instead of
    failing, and every candidate's log-prob still equals the full-forward oracle."""
    policy = make_policy(model, kv_blocks=24, block_size=4, num_candidates=3)
    checked = []

    def scorer(nodes, cands):
        for n, cs in zip(nodes, cands):
            for c in cs:
                assert c.logprob == pytest.approx(step_logprob(model, n.tokens, c.tokens), abs=1e-4)
                checked.append(1)
        return [[c.logprob for c in cs] for cs in cands], [[0.0] * len(cs) for cs in cands]

    eng = run_search(policy, expansions=12, batch_size=2, scorer=scorer)
    stats = policy.cache.stats()
    assert stats.evictions > 0 and policy.pins_dropped > 0
    assert len(checked) >= 20 and eng.stats().expanded == 12


def test_pins_follow_the_frontier(model):
    policy = make_policy(model, num_candidates=2)
    cands = policy.propose([ROOT])[0]
    # pinned: the trie of every child's state minus its last (never fed) token
    forwarded = {tuple(np.concatenate([ROOT, c.tokens[:-1]])[:k]) for c in cands for k in range(1, len(ROOT) + len(c.tokens))}
    assert policy.cache.stats().pinned_blocks == len(forwarded)
    child = np.concatenate([ROOT, cands[0].tokens])
    assert child.tobytes() in policy._frontier
    policy.propose([child])
    assert child.tobytes() not in policy._frontier  # expanded: its own pin is gone
    policy.release_pins()
    assert policy.cache.stats().pinned_blocks == 0


def test_capacity_too_small_for_one_batch_is_a_clear_error(model):
    policy = make_policy(model, kv_blocks=8, block_size=4)
    with pytest.raises(KVCapacityError, match=r"raise kv_capacity to at least \d+ bytes \(kv_blocks=\d+\)"):
        policy.propose([ROOT])
    assert policy.cache.stats().blocks_in_use == 0  # the failed batch freed what it took
    ok = make_policy(model, kv_blocks=30, block_size=4)
    assert ok.propose([ROOT])


def test_greedy_duplicates_collapse_into_one_candidate(model):
    policy = make_policy(model, temperature=0.0, num_candidates=4)
    (c,) = policy.propose([ROOT])[0]
    assert c.count == 4
    assert policy.decode_tokens == len(c.tokens) - 1  # one row, not four


def test_stop_strings_and_terminal_detector(model):
    policy = make_policy(model, max_step_tokens=6, num_candidates=6, stop_strings=("a",),
                         is_terminal=lambda text: text.endswith("b"))
    for c in policy.propose([ROOT])[0]:
        if c.finish == "stop":
            assert "a" in c.text and c.terminal and "a" not in TOK.decode(c.tokens[:-1].tolist())
        assert c.terminal == (c.finish in ("stop", "eos") or c.text.endswith("b"))


def test_model_without_kv_sharing_falls_back_with_a_warning(model, monkeypatch):
    from qstar_native.policy import runner

    real = runner.ModelRunner._check_gathered
    monkeypatch.setattr(runner.ModelRunner, "_check_gathered", lambda self, *a: real(self, *a) + 1.0)
    with pytest.warns(RuntimeWarning, match="recomputing every node's full prefix"):
        policy = make_policy(model)
    assert not policy.sharing and policy.pool is None
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reference = make_policy(model)
    eng1, eng2 = run_search(policy, expansions=4), run_search(reference, expansions=4)
    assert tree(eng1) == tree(eng2)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(num_candidates=0), "num_candidates"),
        (dict(max_step_tokens=0), "max_step_tokens"),
        (dict(top_p=0.0), "top_p"),
        (dict(step_delimiter=""), "step_delimiter"),
        (dict(kv_blocks=None, kv_capacity=10), "kv_capacity=10 bytes holds no block"),
        (dict(kv_capacity=1000), "exactly one of kv_capacity"),
    ],
)
def test_bad_arguments_name_the_argument(model, kw, match):
    with pytest.raises(ValueError, match=match):
        make_policy(model, **kw)


def test_bad_nodes(model):
    policy = make_policy(model)
    with pytest.raises(ValueError, match="node 1 has no tokens"):
        policy.propose([ROOT, []])
    with pytest.raises(TypeError, match="integer token ids"):
        policy.propose([np.array([1.5, 2.0])])
    assert policy.propose([]) == []
    assert policy.cache.stats().pinned_blocks == 0
