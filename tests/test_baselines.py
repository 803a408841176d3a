"""Baselines and Q* on a scripted policy whose choices and outcomes are known."""

from __future__ import annotations

import pytest

from qstar_native.baselines import aggregate, beam_search, best_of_n, greedy, qstar
from scripted_mdp import SMALL_OUTCOMES, SMALL_TREE, ScriptedPolicy, ScriptedTask

TREE = SMALL_TREE
OUTCOMES = SMALL_OUTCOMES
STEP_REWARD = {"a": 0.9, "b": 0.8, "c": 0.5, "d": 0.4, "e": 0.6, "f": 0.7, "g": 0.3, "h": 0.35}
# n=6 samples at seed 0 draw, depth first: ace x1, acf x1, ad x1, bg x2, bh x1


def q_value(policy):
    """The true Q of (state, step): the best outcome reachable; reads the node's tokens."""
    def best(path):
        opts = TREE.get(path)
        return OUTCOMES["".join(path)] if not opts else max(best(path + (t,)) for t, _ in opts)

    def score(nodes, cands):
        return [[best(policy.path(n.tokens) + (c.text,)) for c in cs] for n, cs in zip(nodes, cands)]

    return score


def step_reward(nodes, cands):
    return [[STEP_REWARD[c.text] for c in cs] for cs in cands]


def run(method, task=None, policy=None, seed=0):
    policy = policy or ScriptedPolicy(TREE)
    return method(task or ScriptedTask(OUTCOMES), policy, "q0", seed=seed), policy


def test_greedy_takes_the_first_step_and_counts_tokens():
    rec, policy = run(greedy())
    assert rec.completion == "ace" and rec.reward == 0.0 and not rec.correct
    assert rec.tokens_generated == 3 and rec.tokens_forwarded == (1 + 2 + 3) + 3  # prefixes + one new token each
    assert (rec.tokens_generated, rec.tokens_forwarded) == (policy.tokens_generated, policy.tokens_forwarded)


def test_majority_vote_picks_the_most_common_answer_weighted_by_counts():
    answers = {"ace": "9", "acf": "7", "ad": "7", "bg": "3", "bh": "7"}
    rec, _ = run(best_of_n(6, "majority", temperature=1.0), ScriptedTask(OUTCOMES, answers))
    assert rec.answer == "7" and rec.completion == "acf"  # first solution with the winning answer
    # "3" is drawn twice (bg x2), every other answer once: counts must be weighted
    answers = {"ace": "1", "acf": "2", "ad": "4", "bg": "3", "bh": "5"}
    rec, _ = run(best_of_n(6, "majority", temperature=1.0), ScriptedTask(OUTCOMES, answers))
    assert rec.answer == "3" and rec.completion == "bg" and rec.extra["scores"] == [1.0, 1.0, 1.0, 2.0, 1.0]


def test_best_of_n_by_qvm_and_by_prm():
    policy = ScriptedPolicy(TREE)
    rec, _ = run(best_of_n(6, "qvm", temperature=1.0, value=q_value(policy)), policy=policy)
    assert rec.completion == "acf" and rec.correct and rec.extra["distinct"] == 5
    # PRM min: ace .5, acf .5, ad .4, bg .3, bh .35 -> ace (first of the tie); mean -> acf
    rec, _ = run(best_of_n(6, "prm", temperature=1.0, reward=step_reward, aggregate="min"))
    assert rec.completion == "ace"
    rec, _ = run(best_of_n(6, "prm", temperature=1.0, reward=step_reward, aggregate="mean"))
    assert rec.completion == "acf"
    with pytest.raises(ValueError, match="needs value="):
        best_of_n(4, "qvm")


def test_beam_search_keeps_the_top_width_by_score():
    policy = ScriptedPolicy(TREE)
    rec, _ = run(beam_search(2, 2, q_value(policy), temperature=1.0), policy=policy)
    # round 1: a(1.0) b(.3) kept; round 2: c(1.0) d(.5, done) kept, g h dropped; round 3: f(1.0) done
    assert policy.batches == [1, 2, 1]
    assert rec.completion == "acf" and rec.extra == {"score": 1.0, "rounds": 3, "finished": 2}
    # a scorer preferring low Q walks the worst path
    policy = ScriptedPolicy(TREE)
    neg = lambda nodes, cands: [[-v for v in row] for row in q_value(policy)(nodes, cands)]  # noqa: E731
    rec, _ = run(beam_search(1, 2, neg, temperature=1.0), policy=policy)
    assert rec.completion == "bh"


def test_qstar_finds_the_best_path_with_a_true_q():
    policy = ScriptedPolicy(TREE)
    rec, _ = run(qstar(lam=1.0, k=2, aggregate="zero", value=q_value(policy), temperature=1.0), policy=policy)
    assert rec.completion == "acf" and rec.correct
    assert rec.extra["expanded"] == 3 and rec.extra["stop_reason"] == "solutions"
    assert policy.batches == [1, 1, 1]
    # g alone (min of step rewards, lam 0): a .9 > b .8 > c .5 > d .4 > h .35 > g .3; then e and f
    # tie at .5 and the engine breaks ties by node id: e (made first) is the solution
    policy = ScriptedPolicy(TREE)
    rec, _ = run(qstar(lam=0.0, k=2, aggregate="min", reward=step_reward, temperature=1.0), policy=policy)
    assert rec.completion == "ace" and rec.extra["f"] == 0.5 and rec.extra["expanded"] == 4


def test_qstar_fallback_completes_the_best_open_path_greedily():
    """Out of budget without a solution: nothing, or (fallback) the best open node's path, here
    a (Q 1.0 beats b's 0.3), completed greedily (option 0: c, then e), its tokens counted."""
    policy = ScriptedPolicy(TREE)
    rec, _ = run(qstar(lam=1.0, k=2, aggregate="zero", value=q_value(policy), temperature=1.0, max_expansions=1), policy=policy)
    assert rec.completion == "" and rec.extra["stop_reason"] == "max_expansions" and not rec.extra["fallback"]
    policy = ScriptedPolicy(TREE)
    method = qstar(lam=1.0, k=2, aggregate="zero", value=q_value(policy), temperature=1.0, max_expansions=1, fallback=True)
    rec, _ = run(method, policy=policy)
    assert method.name.endswith("_fallback")
    assert rec.completion == "ace" and rec.extra["fallback"] and rec.tokens_generated == 4
    assert policy.batches == [1, 1, 1]  # the expansion, then one greedy step at a time


@pytest.mark.parametrize("make", [
    lambda p: greedy(),
    lambda p: best_of_n(6, "majority", temperature=1.0),
    lambda p: beam_search(2, 2, q_value(p), temperature=1.0),
    lambda p: qstar(k=2, aggregate="zero", value=q_value(p), temperature=1.0),
])
def test_accounting_is_the_policy_counters_for_every_method(make):
    policy = ScriptedPolicy(TREE)
    policy.tokens_generated, policy.tokens_forwarded = 100, 1000  # earlier problems: only deltas count
    rec, _ = run(make(policy), policy=policy)
    assert rec.tokens_generated == policy.tokens_generated - 100 > 0
    assert rec.tokens_forwarded == policy.tokens_forwarded - 1000 > 0
    assert rec.wall_seconds >= 0


def test_aggregate_matches_the_engine_names():
    assert aggregate([0.5, 0.2], "sum") == 0.7 and aggregate([0.5, 0.2], "last") == 0.2
    with pytest.raises(ValueError, match="aggregate"):
        aggregate([1.0], "median")  # type: ignore[arg-type]
