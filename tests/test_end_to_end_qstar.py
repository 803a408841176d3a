"""End to end: Searcher + HFPolicy (tiny Llama) + QValueModel + a process reward, then every
solution's per-step rewards, h, g and f recomputed from its steps, each prefix scored alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, LlamaConfig

from qstar_native import Searcher
from qstar_native.policy import HFPolicy
from qstar_native.tasks.code import syntax_reward
from qstar_native.value import PRMScorer, QValueModel, QVMScorer, code_syntax_reward, compose

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 =+-*/()<>\n.,:;!?[]'\"ABCDEFGH"  # 63 chars; 63 is EOS
LAM = 0.7


class CharTokenizer:
    eos_token_id = 63

    def decode(self, ids) -> str:
        return "".join(CHARS[i] for i in ids if i < 63)


def config(**kw) -> LlamaConfig:
    base = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256, eos_token_id=63, pad_token_id=63)  # fmt: skip
    return LlamaConfig(**(base | kw))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(config()).eval()
    prm = AutoModelForSequenceClassification.from_config(config(num_labels=1)).eval()
    head = QValueModel(32, head="mlp", mlp_width=16, out_act="sigmoid", seed=5)
    # Save the head alone, load it on the policy's trunk: the independent re-scorer (sequence mode).
    path = head.save_pretrained(tmp_path_factory.mktemp("qvm"))
    return lm, prm, head, QValueModel.from_pretrained(path, backbone=lm)


def policy(lm) -> HFPolicy:
    tok = CharTokenizer()
    return HFPolicy(lm, tok, num_candidates=3, temperature=1.0, max_step_tokens=6, kv_blocks=4096, seed=1,
                    is_terminal=lambda text: any(ch in text for ch in "0123456789"))  # fmt: skip


ROOTS = [np.array([1, 2, 3, 4, 5], np.int32), np.array([7, 8, 9], np.int32)]


def check_solutions(results, reward_of, q_of, aggregate) -> int:
    n = 0
    for root, res in zip(ROOTS, results):
        for sol in res.solutions:
            states = [np.concatenate([root, *sol.steps[: i + 1]]) for i in range(len(sol.steps))]
            rewards = [reward_of(root, sol.steps[: i + 1]) for i in range(len(states))]
            qs = [q_of(s) for s in states]  # each prefix scored alone: no batch, no KV cache
            g = aggregate(rewards)
            np.testing.assert_allclose(sol.rewards, rewards, atol=1e-5, rtol=0)
            np.testing.assert_allclose(sol.hs, qs, atol=1e-5, rtol=0)
            assert sol.g == pytest.approx(g, abs=1e-5) and sol.h == pytest.approx(qs[-1], abs=1e-5)
            assert sol.f == pytest.approx(g + LAM * qs[-1], abs=1e-5)
            n += 1
    return n


def test_search_with_prm_and_qvm_on_policy_hidden(models):
    lm, prm_model, head, qvm_seq = models
    prm = PRMScorer(prm_model, output="sigmoid")
    scorer = compose(reward=prm, q=QVMScorer(head, mode="hidden"))
    searcher = Searcher(policy(lm).as_expand(scorer), lam=LAM, aggregate="min", batch_size=2, k=3, temperature=1.0,
                        num_solutions=3, max_expansions=12, max_steps=4)  # fmt: skip
    results = searcher.search_many(ROOTS)

    def reward_of(root, steps):
        return prm.score_sequences([np.concatenate([root, *steps])])[0]

    def q_of(state):
        with torch.no_grad():
            return float(qvm_seq.score_sequences([state])[0])

    assert check_solutions(results, reward_of, q_of, min) >= 2
    for res in results:  # solutions come best first
        assert [s.f for s in res.solutions] == sorted((s.f for s in res.solutions), reverse=True)


def test_search_with_code_reward_and_sequence_mode_qvm(models):
    lm, _, head, qvm_seq = models
    decode = CharTokenizer().decode
    scorer = compose(reward=code_syntax_reward(decode), q=QVMScorer(qvm_seq, mode="sequence"))
    searcher = Searcher(policy(lm).as_expand(scorer), lam=LAM, aggregate="last", batch_size=3, k=3, temperature=1.0,
                        num_solutions=2, max_expansions=9, max_steps=3)  # fmt: skip
    results = searcher.search_many(ROOTS)

    def reward_of(root, steps):
        return syntax_reward(decode(np.concatenate(steps).tolist()))  # the root (prompt) is not code

    def q_of(state):  # the other mode: the head on the trunk's hidden state, computed here
        with torch.no_grad():
            hidden = lm.model(input_ids=torch.tensor(state[None]).long()).last_hidden_state[0, -1:]
            return float(head.score_hidden(hidden)[0])

    assert check_solutions(results, reward_of, q_of, lambda r: r[-1]) >= 2
