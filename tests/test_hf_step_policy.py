"""HFStepPolicy: a tiny HF model drives rollouts and baselines through the StepPolicy protocol."""

from __future__ import annotations

import numpy as np

from qstar_native.baselines import greedy
from qstar_native.evaluation import evaluate
from qstar_native.policy.step_policy import HFStepPolicy
from qstar_native.policy import HFPolicy
from qstar_native.rollout import rollout_many
from policy_tiny import char_tokenizer, tiny_model


def make_policy() -> HFStepPolicy:
    return HFStepPolicy(HFPolicy(tiny_model("llama"), char_tokenizer(), max_step_tokens=4, kv_blocks=512, block_size=1))


class Task:
    def problem_id(self, p):
        return p

    def root(self, p):
        return char_tokenizer().encode(p)

    def outcome(self, p, completion):
        return float("1" in completion)

    def answer(self, completion):
        return None


def test_rollouts_keep_counts_and_repeat_with_the_seed():
    tok = char_tokenizer()
    states = [np.asarray(tok.encode("ab c"), dtype=np.int32), np.asarray(tok.encode("x=1"), dtype=np.int32)]
    a = rollout_many(make_policy(), states, [5, 2], max_steps=2, temperature=1.0, seed=3)
    b = rollout_many(make_policy(), states, [5, 2], max_steps=2, temperature=1.0, seed=3)
    assert [r.n for r in a] == [5, 2]
    assert [[(c.text, c.count) for c in r.leaves] for r in a] == [[(c.text, c.count) for c in r.leaves] for r in b]
    policy = make_policy()
    g = rollout_many(policy, states[:1], 3, max_steps=2, temperature=0.0, seed=0)[0]
    assert len(g.leaves) == 1 and g.leaves[0].count == 3  # greedy: one path carrying all samples
    assert (policy.policy.num_candidates, policy.policy.temperature) == (4, 1.0)  # settings restored


def test_greedy_record_counts_the_policy_tokens():
    policy = make_policy()
    report = evaluate(Task(), greedy(max_steps=2), policy, ["ab", "cd"])
    assert sum(r.tokens_generated for r in report.records) == policy.tokens_generated > 0
    assert sum(r.tokens_forwarded for r in report.records) == policy.tokens_forwarded > 0


def test_per_problem_tokens_do_not_depend_on_problem_order():
    # "ab" is a prefix of "abc": without a cold cache per problem the second one would reuse it.
    forward = evaluate(Task(), greedy(max_steps=2), make_policy(), ["ab", "abc"])
    backward = evaluate(Task(), greedy(max_steps=2), make_policy(), ["abc", "ab"])
    by_id = {r.question_id: (r.tokens_forwarded, r.tokens_generated, r.completion) for r in backward.records}
    assert {r.question_id: (r.tokens_forwarded, r.tokens_generated, r.completion) for r in forward.records} == by_id
