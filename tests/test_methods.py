"""Greedy, best-of-N, beam and Q* on the engine, with a scripted policy whose choices and outcomes are known."""

from __future__ import annotations

import numpy as np
import pytest

from qstar_native.methods import Beam, BestOfN, Context, Greedy, MethodSpecError, QStar, parse_methods
from qstar_native.scheduler import Scheduler
from qstar_native.value.scorers import compose
from scripted_mdp import SMALL_OUTCOMES, SMALL_TREE, ScriptedPolicy, ScriptedTask

TREE = SMALL_TREE
OUTCOMES = SMALL_OUTCOMES
STEP_REWARD = {"a": 0.9, "b": 0.8, "c": 0.5, "d": 0.4, "e": 0.6, "f": 0.7, "g": 0.3, "h": 0.35}
# n=6 samples at seed 0 draw, depth first: ace x1, acf x1, ad x1, bg x2, bh x1


def best(path):
    opts = TREE.get(path)
    return OUTCOMES["".join(path)] if not opts else max(best(path + (t,)) for t, _ in opts)


def q_value(policy, sign=1.0):
    """The true Q of (state, step): the best outcome reachable; reads the node's tokens."""
    def q(batch, steps):
        node = steps.node_index
        return [sign * best(policy.path(batch.state(int(node[i]))) + (steps.texts[i],)) for i in range(len(steps))]

    return q


def step_reward(batch, steps):
    return [STEP_REWARD[t] for t in steps.texts]


def run(method, *, task=None, policy=None, reward=None, q=None, seed=0):
    policy = policy or ScriptedPolicy(TREE)
    ctx = Context(task or ScriptedTask(OUTCOMES), policy.decode)
    expand = policy.as_expand(compose(reward=reward, q=q(policy) if q else None))
    [(_, rec)] = list(Scheduler(expand).run([method.job(ctx, "q0", seed)]))
    return rec, policy


def test_greedy_takes_the_first_step_and_counts_tokens():
    rec, policy = run(Greedy())
    assert rec.completion == "ace" and rec.reward == 0.0 and not rec.correct
    assert rec.tokens_generated == 3 and rec.tokens_forwarded == (1 + 2 + 3) + 3  # prefixes + one new token each
    assert (rec.tokens_generated, rec.tokens_forwarded) == (policy.tokens_generated, policy.tokens_forwarded)


def test_majority_vote_picks_the_most_common_answer_weighted_by_counts():
    answers = {"ace": "9", "acf": "7", "ad": "7", "bg": "3", "bh": "7"}
    rec, _ = run(BestOfN(6, "majority", temperature=1.0), task=ScriptedTask(OUTCOMES, answers))
    assert rec.answer == "7" and rec.completion == "acf"  # first solution with the winning answer
    # "3" is drawn twice (bg x2), every other answer once: counts must be weighted
    answers = {"ace": "1", "acf": "2", "ad": "4", "bg": "3", "bh": "5"}
    rec, _ = run(BestOfN(6, "majority", temperature=1.0), task=ScriptedTask(OUTCOMES, answers))
    assert rec.answer == "3" and rec.completion == "bg" and rec.extra["scores"] == [1.0, 1.0, 1.0, 2.0, 1.0]


def test_best_of_n_by_qvm_and_by_prm_rank_with_the_engines_f():
    rec, _ = run(BestOfN(6, "qvm", temperature=1.0), q=q_value)
    assert rec.completion == "acf" and rec.correct and rec.extra["distinct"] == 5
    # PRM min: ace .5, acf .5, ad .4, bg .3, bh .35 -> ace (first of the tie); mean -> acf
    rec, _ = run(BestOfN(6, "prm", temperature=1.0, aggregate="min"), reward=step_reward)
    assert rec.completion == "ace" and rec.extra["scores"] == [0.5, 0.5, 0.4, 0.3, 0.35]
    rec, _ = run(BestOfN(6, "prm", temperature=1.0, aggregate="mean"), reward=step_reward)
    assert rec.completion == "acf"


def test_beam_search_keeps_the_top_width_by_f():
    rec, policy = run(Beam(2, 2, temperature=1.0, aggregate="zero"), q=q_value)
    # level 1: a(1.0) b(.3) kept; level 2: c(1.0) d(.5, done) kept, g h pruned; level 3: f(1.0) done
    assert policy.batches == [1, 2, 1]
    assert rec.completion == "acf" and rec.extra == {"score": 1.0, "finished": 2}
    # a q preferring low values walks the worst path
    rec, _ = run(Beam(1, 2, temperature=1.0, aggregate="zero"), q=lambda p: q_value(p, sign=-1.0))
    assert rec.completion == "bh"


def test_qstar_finds_the_best_path_with_a_true_q():
    rec, policy = run(QStar(lam=1.0, k=2, aggregate="zero", temperature=1.0), q=q_value)
    assert rec.completion == "acf" and rec.correct
    assert rec.extra["expanded"] == 3 and rec.extra["stop_reason"] == "solutions"
    assert policy.batches == [1, 1, 1]
    # g alone (min of step rewards, lam 0): a .9 > b .8 > c .5 > d .4 > h .35 > g .3; then e and f
    # tie at .5 and the engine breaks ties by node id: e (made first) is the solution
    rec, _ = run(QStar(lam=0.0, k=2, aggregate="min", temperature=1.0), reward=step_reward)
    assert rec.completion == "ace" and rec.extra["f"] == 0.5 and rec.extra["expanded"] == 4


def test_qstar_vote_weighs_answers_by_exp_f():
    """Solutions in f order: d (.6), f (.55), e (.5). d answers "1", f and e answer "2": exp(.55) +
    exp(.5) outweighs exp(.6), so the vote answers "2" with its best path, acf; without the vote
    the best path, ad, answers."""
    Q = {"a": 0.9, "b": 0.3, "c": 0.8, "d": 0.6, "e": 0.5, "f": 0.55, "g": 0.2, "h": 0.25}
    q = lambda p: (lambda batch, steps: [Q[t] for t in steps.texts])  # noqa: E731
    task = ScriptedTask(OUTCOMES, {"ad": "1", "acf": "2", "ace": "2"})
    plain, _ = run(QStar(k=2, aggregate="zero", temperature=1.0, num_solutions=3), task=task, q=q)
    voted, _ = run(QStar(k=2, aggregate="zero", temperature=1.0, num_solutions=3, vote=True), task=task, q=q)
    assert plain.completion == "ad" and plain.answer == "1" and plain.extra["solutions"] == 3
    assert voted.completion == "acf" and voted.answer == "2" and voted.extra["f"] == pytest.approx(0.55)
    assert voted.extra["tree_correct"] and voted.extra["distinct"] == 2.0
    assert QStar(num_solutions=3, vote=True).name == "qstar_lam1_k6_min_sol3_vote"


def test_qstar_fallback_completes_the_best_open_path_greedily():
    """Out of budget without a solution: nothing, or (fallback) the best open node's path, here
    a (Q 1.0 beats b's 0.3), completed greedily (option 0: c, then e), its tokens counted."""
    rec, _ = run(QStar(lam=1.0, k=2, aggregate="zero", temperature=1.0, max_expansions=1), q=q_value)
    assert rec.completion == "" and rec.extra["stop_reason"] == "max_expansions" and not rec.extra["fallback"]
    method = QStar(lam=1.0, k=2, aggregate="zero", temperature=1.0, max_expansions=1, fallback=True)
    rec, policy = run(method, q=q_value)
    assert method.name.endswith("_fallback")
    assert rec.completion == "ace" and rec.extra["fallback"] and rec.tokens_generated == 4
    assert policy.batches == [1, 1, 1]  # the expansion, then one greedy step at a time


@pytest.mark.parametrize("method", [Greedy(), BestOfN(6, "majority", temperature=1.0), Beam(2, 2, temperature=1.0), QStar(k=2, aggregate="zero", temperature=1.0)])
def test_accounting_is_what_the_policy_reported_for_the_problems_nodes(method):
    rec, policy = run(method, q=q_value)
    assert rec.tokens_generated == policy.tokens_generated > 0
    assert rec.tokens_forwarded == policy.tokens_forwarded > 0
    assert rec.wall_seconds >= 0 and rec.question == "" and rec.gold is None


def test_parse_methods_and_errors():
    methods = parse_methods("greedy, majority:5, beam:3, qstar:20", k=6, lam=0.5, temperature=0.3, max_steps=9, fallback=True)
    assert [m.name for m in methods] == ["greedy", "best_of_5_majority", "beam_w3_k6", "qstar_lam0.5_k6_min_e20_fallback"]
    assert methods[3].max_expansions == 20 and methods[2].config.beam_width == 3 and methods[1].config.rollouts
    budgets = parse_methods("qstar:12,qstar,qstar:96", k=4, lam=1.0, temperature=0.5, max_steps=8)
    assert [m.name for m in budgets] == ["qstar_lam1_k4_min_e12", "qstar_lam1_k4_min", "qstar_lam1_k4_min_e96"]
    assert [m.max_expansions for m in budgets] == [12, 48, 96]
    for spec, match in [("beam:abc", "positive integer"), ("nope", "unknown method"), ("", "no method"), ("greedy,greedy", "twice")]:
        with pytest.raises(MethodSpecError, match=match):
            parse_methods(spec, k=4, lam=1.0, temperature=0.5, max_steps=8)
    with pytest.raises(MethodSpecError, match="ranks by a QVM and none is loaded"):
        parse_methods("best-of-n", k=4, lam=1.0, temperature=0.5, max_steps=8, has_qvm=False)
    with pytest.raises(ValueError, match="lam must be a finite number"):
        QStar(lam=float("nan"))
