"""The policy's small parts: KV pool, capacity arithmetic, sampling distributions, doctests."""

from __future__ import annotations

import doctest

import pytest
import torch

import numpy as np

from qstar_native import records
from qstar_native.cli import ray_eval
from qstar_native.policy import calculator, kv_pool, sampling, step_text, transport
from qstar_native.policy.kv_pool import KVPool, blocks_for_capacity
from qstar_native.policy.working_kv import WorkingKV


@pytest.mark.parametrize("module", [kv_pool, sampling, calculator, step_text, transport, records, ray_eval])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_pool_scatter_then_gather_round_trips_per_layer():
    pool = KVPool([(2, 3), (1, 5)], num_blocks=5, block_size=2)
    slots = torch.tensor([9, 0, 4])
    kv = [(torch.randn(3, 2, 3), torch.randn(3, 2, 3)), (torch.randn(3, 1, 5), torch.randn(3, 1, 5))]
    pool.scatter(slots, kv)
    got = pool.gather(torch.tensor([[4, 9], [0, 0]]))
    for (k, v), (gk, gv) in zip(kv, got):
        assert torch.equal(gk[0, 0], k[2]) and torch.equal(gk[0, 1], k[0]) and torch.equal(gv[1, 0], v[1])
    assert pool.nbytes == 10 * (2 * 2 * 3 + 2 * 1 * 5) * 4
    with pytest.raises(ValueError, match="KV for 1 layers"):
        pool.scatter(slots, kv[:1])


def test_capacity_arithmetic():
    shapes = [(2, 4)] * 3  # 192 bytes per token in float32
    assert blocks_for_capacity(shapes, torch.float32, 2, kv_capacity=192 * 2 * 7 + 5, kv_blocks=None) == 7
    assert blocks_for_capacity(shapes, torch.float16, 2, kv_capacity=192 * 7, kv_blocks=None) == 7
    assert blocks_for_capacity(shapes, torch.float32, 2, kv_capacity=None, kv_blocks=3) == 3
    with pytest.raises(ValueError, match="raise kv_capacity to at least 384"):
        blocks_for_capacity(shapes, torch.float32, 2, kv_capacity=100, kv_blocks=None)
    with pytest.raises(ValueError, match="kv_blocks must be a positive int"):
        blocks_for_capacity(shapes, torch.float32, 2, kv_capacity=None, kv_blocks=0)


def test_pool_grows_keeping_every_slot():
    pool = KVPool([(2, 3)], num_blocks=2, block_size=2)
    kv = [(torch.randn(4, 2, 3), torch.randn(4, 2, 3))]
    pool.scatter(torch.arange(4), kv)
    pool.grow(5)
    assert pool.num_blocks == 5 and pool.num_slots == 10 and pool.keys[0].shape[0] == 10
    assert torch.equal(pool.gather(torch.arange(4))[0][0], kv[0][0])


def test_top_p_keeps_the_smallest_nucleus_and_renormalises():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.05, 0.1, 0.8]]))
    p = sampling.sampling_probs(logits, torch.tensor([1.0, 1.0]), top_p=0.75)
    torch.testing.assert_close(p[0], torch.tensor([0.625, 0.375, 0.0, 0.0]))
    torch.testing.assert_close(p[1], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    sharp = sampling.sampling_probs(logits, torch.tensor([0.5, 0.5]), top_p=1.0)
    assert sharp[0, 0] > 0.5 and torch.allclose(sharp.sum(-1), torch.ones(2))


def test_inverse_cdf_draws_follow_the_distribution_and_greedy_rows_take_the_argmax():
    probs = torch.tensor([0.2, 0.3, 0.5])
    logits = torch.log(probs)[None].repeat(2, 1)
    seeds = np.full(20000, sampling.node_seed(0, [1, 2]), np.uint64)
    u = torch.as_tensor(sampling.uniforms(seeds, np.arange(20000), np.zeros(20000, np.int64))).view(2, 10000)
    tok = sampling.draw(logits, torch.tensor([1.0, 0.0]), 1.0, u)
    freq = torch.bincount(tok[0], minlength=3).float() / 10000
    assert torch.allclose(freq, probs, atol=0.02)  # 4 sigma at n = 10000
    assert (tok[1] == 2).all()  # temperature 0: the argmax for every sample


def test_zero_probability_tokens_are_never_drawn():
    logits = torch.tensor([[0.0, float("-inf"), 0.0, float("-inf")]])
    u = torch.tensor([[0.0, 0.4999999, 0.5, 0.9999999999]], dtype=torch.float64)
    assert set(sampling.draw(logits, torch.tensor([1.0]), 1.0, u)[0].tolist()) <= {0, 2}


def test_uniforms_are_a_pure_function_of_seed_sample_and_step():
    s = np.array([sampling.node_seed(3, [5, 6, 7])] * 4, np.uint64)
    a = sampling.uniforms(s, np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]))
    b = sampling.uniforms(s[:2], np.array([0, 1]), np.array([0, 0]))
    assert np.array_equal(a[:2], b) and len(set(a.tolist())) == 4
    assert sampling.node_seed(3, [5, 6, 7]) != sampling.node_seed(3, [5, 6, 8]) != sampling.node_seed(4, [5, 6, 8])


def test_working_kv_rows_move_and_grow():
    w = WorkingKV([(1, 2)], torch.float32, torch.device("cpu"))
    w.start(2, 5, 4)
    assert (w.nodes, w.rows, w.node_capacity, w.row_columns) == (2, 2, 2, 4)
    w.phase = "decode"
    w.row_keys[0][:2, :, :3] = torch.arange(12.0).view(2, 1, 3, 2)
    w.length = 3
    w.reserve_rows(5)  # grows, keeping the live rows' columns
    assert w.row_capacity >= 5 and torch.equal(w.row_keys[0][1, 0, :3], torch.arange(6.0, 12.0).view(3, 2))
    w.copy_rows(torch.tensor([1]), torch.tensor([0]))
    assert torch.equal(w.row_keys[0][0, :, :3], w.row_keys[0][1, :, :3])
    w.start(3, 8, 2)  # a new batch: more nodes and columns, buffers reused or grown, nothing kept
    assert w.node_capacity >= 3 and w.node_columns >= 8 and (w.length, w.node_length) == (0, 0) and int(w.node_mask[:3, :8].sum()) == 0


def test_min_p_drops_unlikely_tokens_and_renormalises():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.08, 0.02]]))
    p = sampling.sampling_probs(logits, torch.tensor([1.0]), top_p=1.0, min_p=0.1)
    torch.testing.assert_close(p[0], torch.tensor([0.6, 0.3, 0.08, 0.0]) / 0.98)
    u = torch.rand(1, 4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert 3 not in sampling.draw(logits, torch.tensor([1.0]), 1.0, u, min_p=0.1)[0].tolist()
    greedy = torch.zeros(1, 4000, dtype=torch.bool)
    greedy[0, 0] = True
    assert int(sampling.draw(logits, torch.tensor([1.0]), 1.0, u, greedy_samples=greedy)[0, 0]) == 0


def test_attend_fused_and_unfused_give_softmax_attention_and_its_log_sum_exp(monkeypatch):
    from qstar_native.policy import attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 4, 8, generator=g) for _ in range(3))
    k, v = torch.cat([k, k], 2), torch.cat([v, v], 2)  # 8 columns
    bias = torch.zeros(3, 1, 1, 8)
    bias[0, ..., 5:] = float("-inf")  # pads
    scores = q @ k.transpose(-1, -2) * 0.3 + bias
    want_out = torch.softmax(scores, -1) @ v
    want_lse = torch.logsumexp(scores, -1)
    paths = [attention._FLASH_CPU, None] if attention._FLASH_CPU is not None else [None]
    for fused in paths:
        monkeypatch.setattr(attention, "_FLASH_CPU", fused)
        out, lse = attention._attend(q, k, v, bias, 0.3)
        torch.testing.assert_close(out, want_out, atol=1e-5, rtol=0)
        torch.testing.assert_close(lse, want_lse, atol=1e-5, rtol=0)
        out, lse = attention._attend(q, k, v, None, 0.3)
        torch.testing.assert_close(lse, torch.logsumexp(q @ k.transpose(-1, -2) * 0.3, -1), atol=1e-5, rtol=0)
