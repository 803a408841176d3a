"""Step scorers: built-in rewards, PRM pooling, QVM scorer modes, and compose's output checks."""

from __future__ import annotations

from types import SimpleNamespace as C

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, LlamaConfig

from qstar_native.value import (
    PRMScorer,
    QValueModel,
    QVMScorer,
    ScorerOutputError,
    annotation_step_reward,
    code_syntax_reward,
    compose,
    logprob_reward,
    scored_expand,
)


def decode(ids) -> str:
    return "".join(chr(int(i)) for i in ids)


def enc(text: str) -> np.ndarray:
    return np.array([ord(c) for c in text], dtype=np.int32)


def node(root: str, *steps: str) -> C:
    """A stand-in for types.Node: the attributes scorers read."""
    return C(tokens=np.concatenate([enc(root)] + [enc(s) for s in steps]), steps=[enc(s) for s in steps])


def cand(text: str, logprob: float = 0.0, hidden=None) -> C:
    return C(tokens=enc(text), text=text, logprob=logprob, hidden=hidden, terminal=False)


def tiny_prm(num_labels: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=128, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      max_position_embeddings=64, num_labels=num_labels, pad_token_id=0)  # fmt: skip
    return AutoModelForSequenceClassification.from_config(cfg).eval()


# ---- compose --------------------------------------------------------------------------------


def test_compose_defaults_and_logprob():
    nodes, cands = [node("q"), node("r")], [[cand("a", -1.5), cand("b", -0.25)], []]
    assert compose()(nodes, cands) == ([[0.0, 0.0], []], [[0.0, 0.0], []])
    rewards, qs = compose(reward=logprob_reward, value=lambda n, c: [[0.5] * len(cs) for cs in c])(nodes, cands)
    assert rewards == [[-1.5, -0.25], []] and qs == [[0.5, 0.5], []]


def wrong_count(nodes, cands):
    return [[1.0] * (len(cs) + 1) for cs in cands]


@pytest.mark.parametrize(
    "bad, match",
    [
        (wrong_count, "scorer wrong_count returned 3 rewards for node 0, which has 2 candidates"),
        (lambda n, c: [[1.0, 2.0]], "scorer <lambda> returned 1 lists of rewards for 2 nodes"),
        (lambda n, c: None, "scorer <lambda> returned NoneType"),
        (lambda n, c: [[1.0, float("nan")], [0.0]], r"returned nan for candidate 1 of node 0; rewards must be finite"),
    ],
)
def test_compose_rejects_wrong_output(bad, match):
    nodes, cands = [node("q"), node("r")], [[cand("a"), cand("b")], [cand("c")]]
    with pytest.raises(ScorerOutputError, match=match):
        compose(reward=bad)(nodes, cands)
    with pytest.raises(ValueError, match=match.replace("rewards", "q values")):
        compose(value=bad)(nodes, cands)
    with pytest.raises(TypeError, match="reward must be callable"):
        compose(reward=1.0)


def test_scored_expand_builds_children_and_checks_counts():
    nodes = [node("q")]
    expand = scored_expand(lambda ns: [[cand("ab", -1.0), cand("c", -2.0)]], compose(reward=logprob_reward))
    children = expand(nodes)
    assert [(c.tokens.tolist(), c.reward, c.q) for c in children[0]] == [([97, 98], -1.0, 0.0), ([99], -2.0, 0.0)]
    with pytest.raises(ScorerOutputError, match="returned 2 candidate lists for 1 nodes"):
        scored_expand(lambda ns: [[], []], compose())(nodes)
    with pytest.raises(ScorerOutputError, match="returned 1 rewards for node 0, which has 2"):
        scored_expand(lambda ns: [[cand("a"), cand("b")]], lambda n, c: ([[0.0]], [[0.0, 0.0]]))(nodes)


# ---- rule-based rewards ---------------------------------------------------------------------


def test_code_syntax_reward_reads_all_steps_so_far():
    reward = code_syntax_reward(decode)
    parent = node("Write f.\n", "def f(x):\n", "    return (x +\n")
    got = reward([parent, node("q")], [[cand("        1)\n"), cand("        1\n")], [cand('s = """\n')]])
    assert got == [[0.0, -0.5], [-0.5]]  # the open bracket of step 2 is closed, or not; open string
    with_prefix = code_syntax_reward(decode, prefix="x = [\n")
    assert with_prefix([node("q")], [[cand("1]\n"), cand("1\n")]]) == [[0.0, -0.5]]


def test_annotation_step_reward_reads_the_candidate_step():
    reward = annotation_step_reward(decode, penalty=-0.5)
    got = reward([node("q", "<<2*2=5>>\n")], [[cand("<<3*4=12>>12\n"), cand("<<1+1=3>> and <<2+2=5>>\n")]])
    assert got == [[0.0, -1.0]]  # the parent's wrong annotation is not the candidate's


# ---- PRM ------------------------------------------------------------------------------------


def test_prm_reads_last_token_of_state_plus_candidate():
    prm = tiny_prm()
    scorer = PRMScorer(prm, output="logit", batch_size=2)
    nodes = [node("ab", "cd"), node("x")]
    # The first candidate ends in the pad id (0): HF's own pooling would read the wrong token.
    cands = [[C(tokens=np.array([5, 0], np.int32)), cand("efg")], [cand("y")]]
    got = scorer(nodes, cands)
    singles, hf_pooled = [], []
    with torch.no_grad():
        for n, cs in zip(nodes, cands):
            for c in cs:
                ids = torch.tensor(np.concatenate([n.tokens, c.tokens])[None]).long()
                hidden = prm.base_model(input_ids=ids).last_hidden_state[0, -1]
                singles.append(float(prm.score(hidden)[0]))
                hf_pooled.append(float(prm(input_ids=ids).logits[0, 0]))
    assert abs(hf_pooled[0] - singles[0]) > 1e-3  # the case this pooling exists for
    assert np.allclose([v for row in got for v in row], singles, atol=1e-5)
    assert [len(r) for r in got] == [2, 1]
    sig = PRMScorer(prm, output="sigmoid")(nodes, cands)
    assert np.allclose(sig[0], 1 / (1 + np.exp(-np.array(got[0]))), atol=1e-6)


def test_prm_softmax_and_own_tokenizer():
    prm = tiny_prm(num_labels=3, seed=1)

    class Upper:  # the PRM's own tokenizer: upper-case chars
        def encode(self, text):
            return [ord(ch.upper()) for ch in text]

    scorer = PRMScorer(prm, tokenizer=Upper(), decode=decode, output="softmax", label=1)
    got = scorer([node("ab")], [[cand("c")]])[0][0]
    with torch.no_grad():
        logits = prm(input_ids=torch.tensor([[65, 66, 67]])).logits[0]
    assert got == pytest.approx(float(torch.softmax(logits, -1)[1]), abs=1e-6)


def test_prm_bad_input():
    with pytest.raises(TypeError, match="no trunk \\+ score head"):
        PRMScorer(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="pass decode="):
        PRMScorer(tiny_prm(), tokenizer=C(encode=lambda t: [1]))
    with pytest.raises(ValueError, match="needs a 1-label score head, this one has 3"):
        PRMScorer(tiny_prm(num_labels=3), output="sigmoid")


# ---- QVM scorer -----------------------------------------------------------------------------


def test_qvm_scorer_hidden_mode_scores_each_candidate_once():
    qvm = QValueModel(8, head="mlp", mlp_width=4, out_act="sigmoid")
    hs = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    cands = [[cand("a", hidden=hs[0]), cand("b", hidden=hs[1])], [], [cand("c", hidden=hs[2])]]
    got = QVMScorer(qvm)([node("q")] * 3, cands)
    want = qvm.score_hidden(hs)[0].tolist()
    assert got == [want[:2], [], want[2:]]
    assert QVMScorer(qvm)([node("q")], [[]]) == [[]]  # an all-empty batch never reaches the head


def test_qvm_scorer_bad_input():
    qvm = QValueModel(8)
    with pytest.raises(ValueError, match="return_hidden=True"):
        QVMScorer(qvm)([node("q")], [[cand("a")]])
    with pytest.raises(ValueError, match="mode='sequence' needs a QValueModel with a backbone"):
        QVMScorer(qvm, mode="sequence")
    with pytest.raises(ValueError, match="mode='cached'"):
        QVMScorer(qvm, mode="cached")
    with pytest.raises(ValueError, match="width 4 but this QValueModel's head reads width 8"):
        QVMScorer(qvm)([node("q")], [[cand("a", hidden=torch.zeros(4))]])
