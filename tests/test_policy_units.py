"""The policy's small parts: KV pool, capacity arithmetic, sampling distributions, doctests."""

from __future__ import annotations

import doctest

import pytest
import torch

from qstar_native.policy import kv_pool, sampling
from qstar_native.policy.kv_pool import KVPool, blocks_for_capacity


@pytest.mark.parametrize("module", [kv_pool, sampling])
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


def test_top_p_keeps_the_smallest_nucleus_and_renormalises():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.05, 0.1, 0.8]]))
    p = sampling.sampling_probs(logits, temperature=1.0, top_p=0.75)
    torch.testing.assert_close(p[0], torch.tensor([0.625, 0.375, 0.0, 0.0]))
    torch.testing.assert_close(p[1], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    sharp = sampling.sampling_probs(logits, temperature=0.5, top_p=1.0)
    assert sharp[0, 0] > 0.5 and torch.allclose(sharp.sum(-1), torch.ones(2))


def test_draws_are_grouped_and_reproducible():
    probs = torch.tensor([0.2, 0.3, 0.5])
    a = sampling.draw(probs, 50, torch.Generator().manual_seed(4))
    b = sampling.draw(probs, 50, torch.Generator().manual_seed(4))
    assert a == b and sum(c for _, c in a) == 50 and len({t for t, _ in a}) == len(a)
