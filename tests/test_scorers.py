"""Step scorers: built-in rewards, PRM pooling, QVM scorer modes, and compose's output checks."""

from __future__ import annotations

from types import SimpleNamespace as C

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, LlamaConfig

from qstar_native import Batch, Engine, Step, Steps
from qstar_native.value import (
    PRMScorer,
    QValueModel,
    QVMScorer,
    ScorerOutputError,
    annotation_step_reward,
    code_syntax_reward,
    compose,
    logprob_reward,
)


def decode(ids) -> str:
    return "".join(chr(int(i)) for i in ids)


def enc(text: str) -> np.ndarray:
    return np.array([ord(c) for c in text], dtype=np.int32)


def nodes(*paths: tuple[str, ...]) -> Batch:
    """A batch of engine nodes: each path is (root text, step texts...); its last node is selected."""
    engines, ids = [], []
    for root, *steps in paths:
        eng = Engine(max_expansions=None)
        node = eng.add_root(enc(root))
        for text in steps:
            eng.select(1)
            (node,) = eng.expand(node, [Step(enc(text))])
        engines.append(eng)
        ids.append(node)
    n = len(paths)
    return Batch(engines, np.arange(n), np.array(ids), k=np.ones(n, np.int64), temperature=np.ones(n), seed=np.zeros(n, np.int64))


def steps(*per_node: list[str], logprob=None, hidden=None) -> Steps:
    texts = [t for ts in per_node for t in ts]
    toks = [enc(t) for t in texts]
    return Steps([len(ts) for ts in per_node], np.concatenate(toks) if toks else np.zeros(0, np.int32), [len(t) for t in toks],
                 logprob=logprob, texts=texts, hidden=hidden)  # fmt: skip


def tiny_prm(num_labels: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=128, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      max_position_embeddings=64, num_labels=num_labels, pad_token_id=0)  # fmt: skip
    return AutoModelForSequenceClassification.from_config(cfg).eval()


# ---- compose --------------------------------------------------------------------------------


def test_compose_defaults_and_logprob():
    b, st = nodes(("q",), ("r",)), steps(["a", "b"], [], logprob=[-1.5, -0.25])
    reward, q = compose()(b, st)
    assert reward.tolist() == [0.0, 0.0] and q.tolist() == [0.0, 0.0]
    reward, q = compose(reward=logprob_reward, q=lambda b, s: [0.5] * len(s))(b, st)
    assert reward.tolist() == [-1.5, -0.25] and q.tolist() == [0.5, 0.5]


def wrong_count(batch, st):
    return [1.0] * (len(st) + 1)


@pytest.mark.parametrize(
    "bad, match",
    [
        (wrong_count, r"scorer wrong_count returned rewards of shape \(4,\) for 3 steps"),
        (lambda b, s: None, r"scorer <lambda> returned rewards of shape \(\) for 3 steps"),
        (lambda b, s: [1.0, float("nan"), 0.0], r"returned nan for step 1; rewards must be finite"),
        (lambda b, s: ["x", 1, 2], "returned list"),
    ],
)
def test_compose_rejects_wrong_output(bad, match):
    b, st = nodes(("q",), ("r",)), steps(["a", "b"], ["c"])
    with pytest.raises(ScorerOutputError, match=match):
        compose(reward=bad)(b, st)
    with pytest.raises(ValueError, match=match.replace("rewards", "q")):
        compose(q=bad)(b, st)
    with pytest.raises(TypeError, match="reward must be callable"):
        compose(reward=1.0)


# ---- rule-based rewards ---------------------------------------------------------------------


def test_code_syntax_reward_reads_all_steps_so_far_but_not_the_prompt():
    reward = code_syntax_reward(decode)
    b = nodes(("Write f( .\n", "def f(x):\n", "    return (x +\n"), ("q",))  # the prompt's open bracket is not code
    got = reward(b, steps(["        1)\n", "        1\n"], ['s = """\n']))
    assert got.tolist() == [0.0, -0.5, -0.5]  # the open bracket of step 2 is closed, or not; open string
    with_prefix = code_syntax_reward(decode, prefix="x = [\n")
    assert with_prefix(nodes(("q",)), steps(["1]\n", "1\n"])).tolist() == [0.0, -0.5]


def test_annotation_step_reward_reads_the_step_and_grounding_reads_the_state():
    reward = annotation_step_reward(decode, penalty=-0.5)
    got = reward(nodes(("q", "<<2*2=5>>\n")), steps(["<<3*4=12>>12\n", "<<1+1=3>> and <<2+2=5>>\n"]))
    assert got.tolist() == [0.0, -1.0]  # the parent's wrong annotation is not the step's
    grounded = annotation_step_reward(decode, grounded=True)
    b = nodes(("Ann has 17 cats.\n", "She buys 25 dogs: <<0+25=25>>25\n"))
    assert grounded(b, steps(["<<17+25=42>>42\n", "<<17+26=43>>43\n"])).tolist() == [0.0, -1.0]


# ---- PRM ------------------------------------------------------------------------------------


def test_prm_reads_last_token_of_state_plus_step():
    prm = tiny_prm()
    scorer = PRMScorer(prm, output="logit", batch_size=2)
    b = nodes(("ab", "cd"), ("x",))
    # The first step ends in the pad id (0): HF's own pooling would read the wrong token.
    st = Steps([2, 1], np.array([5, 0, *enc("efg"), *enc("y")], np.int32), [2, 3, 1])
    got = scorer(b, st)
    singles, hf_pooled = [], []
    with torch.no_grad():
        for state, step in [(enc("abcd"), [5, 0]), (enc("abcd"), enc("efg")), (enc("x"), enc("y"))]:
            ids = torch.tensor(np.concatenate([state, step])[None]).long()
            hidden = prm.base_model(input_ids=ids).last_hidden_state[0, -1]
            singles.append(float(prm.score(hidden)[0]))
            hf_pooled.append(float(prm(input_ids=ids).logits[0, 0]))
    assert abs(hf_pooled[0] - singles[0]) > 1e-3  # the case this pooling exists for
    assert np.allclose(got, singles, atol=1e-5)
    sig = PRMScorer(prm, output="sigmoid")(b, st)
    assert np.allclose(sig, 1 / (1 + np.exp(-got)), atol=1e-6)


def test_prm_softmax_and_own_tokenizer():
    prm = tiny_prm(num_labels=3, seed=1)

    class Upper:  # the PRM's own tokenizer: upper-case chars
        def encode(self, text):
            return [ord(ch.upper()) for ch in text]

    scorer = PRMScorer(prm, tokenizer=Upper(), decode=decode, output="softmax", label=1)
    got = scorer(nodes(("ab",)), steps(["c"]))[0]
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


def test_qvm_scorer_hidden_mode_scores_every_step_in_one_call():
    qvm = QValueModel(8, head="mlp", mlp_width=4, out_act="sigmoid")
    hs = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    got = QVMScorer(qvm)(nodes(("q",), ("r",), ("s",)), steps(["a", "b"], [], ["c"], hidden=hs))
    assert np.allclose(got, qvm.score_hidden(hs).detach().numpy(), atol=0)
    assert QVMScorer(qvm)(nodes(("q",)), steps([])).tolist() == []  # an empty batch never reaches the head


def test_qvm_scorer_bad_input():
    qvm = QValueModel(8)
    with pytest.raises(ValueError, match="carry no hidden states"):
        QVMScorer(qvm)(nodes(("q",)), steps(["a"]))
    with pytest.raises(ValueError, match="mode='sequence' needs a QValueModel with a backbone"):
        QVMScorer(qvm, mode="sequence")
    with pytest.raises(ValueError, match="mode='cached'"):
        QVMScorer(qvm, mode="cached")
    with pytest.raises(ValueError, match="width 4 but this QValueModel's head reads width 8"):
        QVMScorer(qvm)(nodes(("q",)), steps(["a"], hidden=torch.zeros(1, 4)))
