"""Exactness: logits and log-probs computed on gathered (reused) KV equal a full forward from scratch.

The oracle is a plain forward of the whole sequence with no cache (float32, atol 1e-4).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policy_tiny import FAMILIES, char_tokenizer, full_logits, step_logprob, tiny_model
from qstar_native.policy.hf import HFPolicy

ATOL = 1e-4
TOK = char_tokenizer()


def enc(text: str) -> np.ndarray:
    return np.asarray(TOK.encode(text), dtype=np.int32)


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    return tiny_model(request.param)


def assert_exact(policy, model, seqs):
    results = policy.forward_logits(seqs)
    for s, (start, logits) in zip(seqs, results):
        want = full_logits(model, s)[start:]
        assert logits.shape == want.shape
        torch.testing.assert_close(logits, want, atol=ATOL, rtol=0)
    return [start for start, _ in results]


@pytest.mark.parametrize("block_size", [1, 4])
def test_ragged_batch_reuses_prefixes_exactly(model, block_size):
    policy = HFPolicy(model, TOK, kv_blocks=256, block_size=block_size)
    assert policy.sharing
    q = enc("Tom has 12 apples and buys 5 more.\n")
    policy.forward_logits([q])  # cache the question
    batch = [
        np.concatenate([q, enc("12+5=17\n")]),  # long suffix
        np.concatenate([q, enc("x")]),  # one new token
        q[:9],  # a prefix of a cached state, ending mid-block for block_size 4
        enc("Another question?\n"),  # nothing cached
        np.concatenate([q, enc("12+5=17\nSo 17.")]),  # shares the first suffix (same batch)
    ]
    starts = assert_exact(policy, model, batch)
    bs = block_size
    assert starts[0] == (len(q) // bs) * bs and starts[1] == (len(q) // bs) * bs
    assert starts[2] == ((9 - 1) // bs) * bs  # fully cached: back off so the last token is recomputed
    assert starts[3] == 0
    # the second batch reuses what the first one wrote, including mid-block states
    starts = assert_exact(policy, model, [np.concatenate([q, enc("12+5=17\nSo 17. Done")]), batch[1]])
    assert starts[0] >= ((len(batch[4])) // bs) * bs - bs and starts[1] == ((len(batch[1]) - 1) // bs) * bs


def test_exact_after_evictions(model):
    policy = HFPolicy(model, TOK, kv_blocks=40, block_size=4)  # 160 token slots
    rng = np.random.default_rng(0)
    texts = [enc("".join(rng.choice(list("abcdefgh 123"), size=int(rng.integers(10, 30))))) for _ in range(12)]
    for i in range(0, len(texts), 2):
        assert_exact(policy, model, texts[i : i + 2])
        assert_exact(policy, model, [np.concatenate([t, enc("more text")]) for t in texts[i : i + 2]])
    assert policy.cache.stats().evictions > 0
    # states whose prefixes survived and ones that were evicted, mixed in one batch
    assert_exact(policy, model, [np.concatenate([t, enc("!")]) for t in texts[-3:]] + [texts[0]])


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_candidate_logprobs_match_full_forward(model, temperature):
    """Decode runs on the gathered prefix, then on a batch of rows that split per draw; every
    candidate's log-prob must equal the full-forward oracle, in the first batch and in a second
    one built on the written-back children."""
    policy = HFPolicy(model, TOK, num_candidates=5, temperature=temperature, max_step_tokens=6, kv_blocks=512, seed=3)
    roots = [enc("Q: 3+4?\n"), enc("Q: two plus two equals what?\n")]
    steps = policy.propose(roots)
    children = []
    for j, root in enumerate(roots):
        cs = steps.of_node(j)
        assert sum(c.count for c in cs) == 5
        assert len({c.tokens.tobytes() for c in cs}) == len(cs)  # deduplicated
        for c in cs:
            assert c.logprob == pytest.approx(step_logprob(model, root, c.tokens), abs=ATOL)
            children.append(np.concatenate([root, c.tokens]))
    steps2 = policy.propose(children[:3])
    for j, state in enumerate(children[:3]):
        for c in steps2.of_node(j):
            assert c.logprob == pytest.approx(step_logprob(model, state, c.tokens), abs=ATOL)
    for h in steps.kv_handles.tolist() + steps2.kv_handles.tolist():  # nobody took them over: give them back
        policy.cache.unpin(h)


def test_greedy_step_equals_generate(model):
    policy = HFPolicy(model, TOK, num_candidates=3, temperature=0.0, max_step_tokens=12, kv_blocks=512)
    prompts = [enc("Solve: 7*6=?\n"), enc("Hi\n"), enc("A longer prompt with more characters\n")]
    policy.forward_logits([prompts[0][:5]])  # a partially cached prompt in the batch
    steps = policy.propose(prompts)
    for j, prompt in enumerate(prompts):
        cs = steps.of_node(j)
        assert len(cs) == 1 and cs[0].count == 3
        ids = torch.as_tensor(prompt, dtype=torch.long)[None]
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                             pad_token_id=0)[0, len(prompt):].tolist()
        cut = next((i + 1 for i, t in enumerate(gen) if t == 0 or "\n" in TOK.decode([t])), len(gen))
        assert cs[0].tokens.tolist() == gen[:cut]


def test_hidden_state_is_final_normed_state_of_last_token(model):
    """The hidden state the decode hands out with each step is the model's own final (normed)
    hidden state at the step's last token: a Q-value head needs no second forward."""
    policy = HFPolicy(model, TOK, num_candidates=3, temperature=1.0, max_step_tokens=5, kv_blocks=512)
    root = enc("Hidden?\n")
    steps = policy.propose([root])
    assert steps.hidden.shape == (len(steps), model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.n_embd)
    for c, h in zip(steps.of_node(0), steps.hidden):
        seq = torch.as_tensor(np.concatenate([root, c.tokens]), dtype=torch.long)[None]
        with torch.inference_mode():
            want = model(seq, output_hidden_states=True).hidden_states[-1][0, -1]
        torch.testing.assert_close(h, want, atol=ATOL, rtol=0)
    # the fed last token was written back: expanding a child recomputes only its last token
    before = policy.prefill_tokens
    policy.propose([np.concatenate([root, steps.of_node(0)[0].tokens])])
    assert policy.prefill_tokens - before == 1


def test_half_precision_models_pass_the_layout_check_and_a_wrong_layout_still_fails(monkeypatch):
    """The embedded default in bf16 with one thread once failed the check: NaN from uninitialised
    (masked) working-KV columns, 0 x NaN in attention. Its logits also move by ~0.1 with summation
    order alone, so the check scales with the dtype; a layout error (logits a position off) and a
    NaN are still refused."""
    from qstar_native.pretrained import load_policy
    from qstar_native.policy import runner as runner_mod

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        policy = load_policy(None, dtype="bfloat16")
        hf = policy.hf_policy(seed=0)
        assert hf.work is not None and next(policy.model.parameters()).dtype == torch.bfloat16
        real = runner_mod.ModelRunner._check_gathered

        def shifted(self, seq, ref, kv, shapes, dtype):
            return real(self, seq, torch.roll(ref, 1, dims=0), kv, shapes, dtype)

        monkeypatch.setattr(runner_mod.ModelRunner, "_check_gathered", shifted)
        with pytest.raises(ValueError, match="KV layout check"):
            policy.hf_policy(seed=0)
        monkeypatch.setattr(runner_mod.ModelRunner, "_check_gathered", lambda *a: float("nan"))
        with pytest.raises(ValueError, match="differ by nan"):
            policy.hf_policy(seed=0)
    finally:
        torch.set_num_threads(threads)


def test_a_long_uncached_state_is_prefilled_apart_and_steps_stay_exact(model):
    """A new prompt in a batch of cached states is prefilled on its own first, so the batch does
    not pad every row to its length; the proposals equal a policy that recomputes everything."""
    q = enc("Tom has 12 apples and buys 5 more.\n")
    cached = [np.concatenate([q, enc(s)]) for s in ("12+5=17\n", "So ", "He has ", "x")]
    long_new = enc("Ann reads 30 pages a day for 7 days and then 12 more pages. How many pages in all?\n")
    sharing = HFPolicy(model, TOK, kv_blocks=512, num_candidates=2, temperature=0.0, max_step_tokens=6)
    sharing.forward_logits(cached)  # the short states are in the cache
    shapes = []
    run = sharing.runner.run
    sharing.runner.run = lambda ids, *a, **k: shapes.append(tuple(ids.shape)) or run(ids, *a, **k)
    batch = [*cached, long_new]
    got = sharing.propose(batch)
    sharing.runner.run = run
    prefills = [s for s in shapes if s[1] > 1]  # decode steps feed one token a row
    assert prefills[0] == (1, len(long_new)) and all(n * S <= len(batch) * 2 for n, S in prefills[1:]), shapes
    want = HFPolicy(model, TOK, prefix_sharing=False, num_candidates=2, temperature=0.0, max_step_tokens=6).propose(batch)
    assert got.tokens.tolist() == want.tokens.tolist() and got.num_children.tolist() == want.num_children.tolist()
    np.testing.assert_allclose(got.logprob, want.logprob, atol=ATOL)
    # bare states are charged what was run: the cached ones far less, the new prompt all of it
    # (its warm pass) plus its last token, run again with the batch for the logits
    assert got.forwarded[-1] == want.forwarded[-1] + 1 and (got.forwarded[:-1] < want.forwarded[:-1]).all()
