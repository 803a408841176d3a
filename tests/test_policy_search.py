"""HFPolicy inside searches: accounting, one tree of KV pins, eviction under pressure, concurrency
invariance, limits, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from policy_tiny import char_tokenizer, step_logprob, tiny_model
from qstar_native import Searcher
from qstar_native.batch import Batch
from qstar_native.evaluation import evaluate
from qstar_native.methods import Beam, BestOfN, Context, Greedy, QStar
from qstar_native.policy import HFPolicy, KVCapacityError
from qstar_native.value import compose

TOK = char_tokenizer()
ROOT = np.asarray(TOK.encode("Q: Tom has 3 apples and buys 4 more. How many?\n"), dtype=np.int32)


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", seed=1)


def make_policy(model, **kw):
    args = dict(num_candidates=3, temperature=1.0, max_step_tokens=5, kv_blocks=4096, seed=7)
    args.update(kw)
    return HFPolicy(model, TOK, **args)


def run_search(policy, expansions=12, batch_size=3, scorer=None, check=None):
    """A search with the policy's expand callback, kept tree; ``check`` runs before every call."""
    expand = policy.as_expand(scorer)

    def watched(batch):
        if check is not None:
            check(batch)
        return expand(batch)

    watched.cache = expand.cache
    searcher = Searcher(watched, aggregate="mean", batch_size=batch_size, k=3, temperature=1.0, num_solutions=50, max_expansions=expansions)
    return searcher.search(ROOT, keep_tree=True, seed=7)


def distinct_tokens(result) -> int:
    return len(ROOT) + sum(len(n.step) for n in result.tree[1:])


def tree(result):
    return sorted(n.tokens.tobytes() for n in result.tree)


@pytest.mark.parametrize("block_size", [1, 4])
def test_forwarded_tokens_at_most_distinct_tree_tokens(model, block_size):
    """Each token's KV is computed once: forwarded tokens are at most the tree's distinct tokens
    plus one per expanded node (its last token, recomputed for the logits that start its decode)."""
    policy = make_policy(model, block_size=block_size)
    res = run_search(policy)
    distinct = distinct_tokens(res)
    assert res.stats.expanded == 12 and res.stats.nodes > 25
    assert distinct == len(ROOT) + res.stats.tokens
    extra = res.stats.expanded * (1 if block_size == 1 else block_size)
    assert policy.tokens_forwarded <= distinct + extra, (policy.tokens_forwarded, distinct)
    assert res.stats.forwarded_tokens == policy.tokens_forwarded and res.stats.generated_tokens == policy.tokens_generated
    assert policy.cache.stats().evictions == 0 and policy.writeback_skipped == 0


def test_one_tree_pins_are_exactly_the_live_nodes(model):
    """Between rounds the cache's pins are the engine's live nodes' pins (no pin of a pruned,
    expanded or finished node survives); when the search ends there are none."""
    policy = make_policy(model, num_candidates=4)
    seen = []

    def check(batch):
        eng = batch.engines[0]
        live = [n for n in eng.nodes() if n.status in ("open", "selected") and not n.terminal]
        assert set(eng.pinned_nodes()) <= {n.id for n in live}
        assert policy.cache.num_pins == eng.stats().pinned  # the policy holds none between calls
        seen.append(eng.stats().pinned)

    res = run_search(policy, expansions=10, check=check)
    assert max(seen) > 5  # children really were pinned while open
    assert policy.cache.num_pins == 0 and res.engine.stats().pinned == 0
    policy.cache.check_invariants()


def test_sharing_and_recompute_build_the_same_tree(model):
    shared, plain = make_policy(model), make_policy(model, prefix_sharing=False)
    t1, t2 = run_search(shared), run_search(plain)
    assert tree(t1) == tree(t2)
    assert plain.tokens_forwarded > 1.5 * shared.tokens_forwarded
    assert plain.cache is None and plain.cache_hit_tokens == 0


def test_search_under_pool_pressure_evicts_and_stays_exact(model):
    """A pool far smaller than the tree: allocation evicts unpinned KV, write-backs that find no
    room are skipped (the child is recomputed later), and every step's log-prob still equals the
    full-forward oracle."""
    policy = make_policy(model, kv_blocks=40, block_size=4, num_candidates=3)
    checked = []

    def scorer(batch, steps):
        off, node = steps.offsets, steps.node_index
        for i in range(len(steps)):
            tokens = steps.tokens[off[i] : off[i + 1]]
            assert steps.logprob[i] == pytest.approx(step_logprob(model, batch.state(int(node[i])), tokens), abs=1e-4)
            checked.append(1)
        return steps.logprob, np.zeros(len(steps))

    res = run_search(policy, expansions=12, batch_size=2, scorer=scorer)
    assert policy.cache.stats().evictions > 0
    assert len(checked) >= 20 and res.stats.expanded == 12
    assert policy.cache.num_pins == 0


def test_capacity_too_small_for_one_batch_is_a_clear_error(model):
    policy = make_policy(model, kv_blocks=8, block_size=4)
    with pytest.raises(KVCapacityError, match="raise kv_capacity"):
        policy.propose([ROOT])
    assert policy.cache.stats().blocks_in_use == 0 and policy.cache.num_pins == 0  # the failed batch freed what it took
    ok = make_policy(model, kv_blocks=40, block_size=4)
    steps = ok.propose([ROOT])
    for h in steps.kv_handles:
        ok.cache.unpin(int(h))


def test_pool_grows_by_need_up_to_its_cap(model):
    policy = make_policy(model, kv_blocks=None, kv_capacity=64 * 2**20)
    start = policy.pool.num_blocks
    run_search(policy, expansions=30, batch_size=4)
    assert policy.pool.num_blocks >= start and policy.pool.num_blocks <= policy.max_blocks
    assert policy.cache.num_blocks == policy.pool.num_blocks


def test_greedy_duplicates_collapse_into_one_candidate(model):
    policy = make_policy(model, temperature=0.0, num_candidates=4)
    steps = policy.propose([ROOT])
    assert steps.count.tolist() == [4]
    assert policy.decode_tokens == len(steps.tokens)  # one row, not four (its last token fed once for KV + hidden)


def test_stop_strings_and_terminal_detector(model):
    policy = make_policy(model, max_step_tokens=6, num_candidates=6, stop_strings=("a",), is_terminal=lambda text: text.endswith("b"))
    steps = policy.propose([ROOT])
    for i in range(len(steps)):
        if steps.finish[i] == "stop":
            assert "a" in steps.texts[i] and steps.terminal[i]
        assert steps.terminal[i] == (steps.finish[i] in ("stop", "eos") or steps.texts[i].endswith("b"))


def test_records_do_not_depend_on_concurrency_or_order(model):
    """Real sampling, real KV sharing: each problem's record (wall time aside) is the same
    whether problems run one at a time or many together, in any order."""
    from qstar_native.tasks.math_task import MathTask
    from qstar_native.tasks.problem import Problem
    from qstar_native.tasks.problem_set import ProblemSet

    problems = [Problem(f"p{i}", f"Q{i}: what is {i} + {i + 2}?", str(2 * i + 2)) for i in range(5)]
    task = MathTask(ProblemSet(problems), encode=lambda s: TOK.encode(s))
    methods = [Greedy(max_steps=3), BestOfN(3, "majority", temperature=1.0, max_steps=3), Beam(2, 2, temperature=1.0, max_steps=3),
               QStar(k=2, temperature=1.0, max_steps=3, max_expansions=6, fallback=True)]  # fmt: skip

    def records(concurrency, order):
        policy = make_policy(model, max_step_tokens=4)
        reports = evaluate(task, methods, policy.as_expand(compose()), order, decode=policy.decode, seed=3, concurrency=concurrency)
        assert policy.cache.num_pins == 0
        return [[dataclasses.replace(r, wall_seconds=0.0) for r in rep.records] for rep in reports]

    base = records(1, problems)
    assert records(16, problems[::-1]) == base
    assert records(3, problems[2:] + problems[:2]) == base


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(num_candidates=0), "num_candidates"),
        (dict(max_step_tokens=0), "max_step_tokens"),
        (dict(top_p=0.0), "top_p"),
        (dict(temperature=float("nan")), "temperature must be a finite number"),
        (dict(step_delimiter=""), "step_delimiter"),
        (dict(kv_blocks=None, kv_capacity=10), "kv_capacity=10 bytes holds no block"),
    ],
)
def test_bad_arguments_name_the_argument(model, kw, match):
    with pytest.raises(ValueError, match=match):
        make_policy(model, **kw)


def test_model_that_fails_the_kv_layout_check_is_refused(model, monkeypatch):
    from qstar_native.policy import runner

    real = runner.ModelRunner._check_gathered
    monkeypatch.setattr(runner.ModelRunner, "_check_gathered", lambda self, *a: real(self, *a) + 1.0)
    with pytest.raises(ValueError, match="failed the KV layout check on this model: gathered-cache logits differ"):
        make_policy(model)


def test_bad_nodes(model):
    policy = make_policy(model)
    with pytest.raises(ValueError, match="node 1 has no tokens"):
        policy.propose([ROOT, []])
    with pytest.raises(TypeError, match="integer token ids"):
        policy.propose([np.array([1.5, 2.0])])
    assert len(policy.propose([])) == 0
    assert policy.cache.stats().pinned_blocks == 0


def test_greedy_first_puts_the_greedy_step_among_the_samples(model):
    greedy = make_policy(model, temperature=0.0, num_candidates=1).propose([ROOT])
    mixed = make_policy(model, temperature=1.5, num_candidates=4, greedy_first=True).propose([ROOT])
    texts = mixed.texts
    assert greedy.texts[0] in texts and len(texts) > 1  # the greedy step, and sampled others
    plain = make_policy(model, temperature=1.5, num_candidates=4).propose([ROOT])
    assert plain.texts != texts  # the flag changes the first sample only, so the sets differ here


def test_greedy_first_per_node_from_the_batch_equals_the_policy_option(model):
    other = np.concatenate([ROOT, ROOT[:2]])
    batch = Batch.of_states([ROOT, other], k=4, temperature=1.5, seed=7)
    batch.greedy_first = np.array([True, False])
    mixed = make_policy(model, temperature=1.5, num_candidates=4).propose(batch)
    on = make_policy(model, temperature=1.5, num_candidates=4, greedy_first=True).propose([ROOT])
    off = make_policy(model, temperature=1.5, num_candidates=4).propose([other])
    assert [s.tokens.tolist() for s in mixed.of_node(0)] == [s.tokens.tolist() for s in on.of_node(0)]
    assert [s.tokens.tolist() for s in mixed.of_node(1)] == [s.tokens.tolist() for s in off.of_node(0)]
    seen = []
    Searcher(lambda b: seen.append(b.greedy_first.tolist()) or [[] for _ in b], greedy_first=True).search(ROOT)
    assert seen == [[True]]  # SearchConfig.greedy_first reaches the policy through the batch
