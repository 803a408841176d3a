"""Q-head scoring kernel: Triton (in the interpreter, see conftest.py) against the torch reference
on odd shapes and every dtype, and the launcher's errors on bad input."""

from __future__ import annotations

import importlib.util
import itertools
import math
import pathlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

try:
    from qstar_native.kernels import qhead
except ImportError:  # not installed: load the file from the repo
    _spec = importlib.util.spec_from_file_location(
        "qhead", pathlib.Path(__file__).parents[1] / "kernels" / "qhead.py"
    )
    qhead = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(qhead)

QHead = qhead.QHead
TOL = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 5e-2}  # atol = rtol


def make_batch(B: int, H: int, dtype: torch.dtype, seed: int) -> tuple:
    """Packed hidden states of B candidates with ragged lengths 1..9 and their last rows."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 10, (B,), generator=gen)
    cu = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    hidden = torch.randn(int(cu[-1]), H, generator=gen).to(dtype)
    return hidden, qhead.last_index_from_cu_seqlens(cu)


def make_head(H: int, M: int, dtype: torch.dtype, seed: int, **kw) -> QHead:
    """Linear head when M == 0, else an MLP of width M; scaled so outputs stay O(1)."""
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    norm = dict(norm_weight=(1 + 0.3 * rnd(H)).to(dtype), norm_bias=(0.1 * rnd(H)).to(dtype))
    if M == 0:
        return QHead(w1=(rnd(H) / H**0.5).to(dtype), b1=0.1, **norm, **kw)
    return QHead(w1=(rnd(H, M) / H**0.5).to(dtype), b1=(0.1 * rnd(M)).to(dtype),
                 w2=(rnd(M) / M**0.5).to(dtype), b2=-0.2, **norm, **kw)  # fmt: skip


def assert_parity(hidden, last, head, dtype) -> None:
    q = qhead.score_qhead(hidden, last, head, backend="triton")
    q_ref = qhead.score_qhead(hidden, last, head, backend="torch")
    assert q.dtype == q_ref.dtype == torch.float32 and q.shape == q_ref.shape == last.shape
    torch.testing.assert_close(q, q_ref, atol=TOL[dtype], rtol=TOL[dtype])


CASES = list(itertools.product([1, 3, 7], [5, 48, 97], [0, 3, 33]))  # (B, H, M); M=0: linear
CYCLE = list(itertools.product(["none", "rms", "layer"], ["gelu", "relu", "silu"],
                               ["identity", "sigmoid", "tanh"]))  # fmt: skip


@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize(("i", "B", "H", "M"), [(i, *c) for i, c in enumerate(CASES)])
def test_parity_odd_shapes(dtype, i, B, H, M):
    norm, act, out_act = CYCLE[i % len(CYCLE)]  # every (norm, act, out) combination once
    hidden, last = make_batch(B, H, dtype, seed=i)
    head = make_head(H, M, dtype, seed=100 + i, norm=norm, act=act, out_act=out_act)
    assert_parity(hidden, last, head, dtype=dtype)


@pytest.mark.parametrize("dtype", list(TOL), ids=str)
def test_parity_mixed_layouts(dtype):
    """int32 indices, fp32 head on half hidden states, an nn.Linear-style transposed w1, a
    LayerNorm without bias, scalar biases as tensors."""
    hidden, last = make_batch(5, 40, dtype, seed=7)
    lin1 = torch.nn.Linear(40, 24).to(dtype)
    head = QHead(w1=lin1.weight.detach().T, b1=lin1.bias.detach(), w2=torch.randn(24),
                 b2=torch.tensor([0.5]), norm="layer", norm_weight=torch.ones(40))  # fmt: skip
    assert not head.w1.is_contiguous()
    assert_parity(hidden, last.to(torch.int32), head, dtype=dtype)


@settings(max_examples=8)
@given(B=st.integers(1, 9), H=st.integers(1, 70), M=st.sampled_from([0, 1, 17]),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_parity_property(B, H, M, seed):
    hidden, last = make_batch(B, H, torch.float32, seed)
    head = make_head(H, M, torch.float32, seed, norm=CYCLE[seed % 27][0], act="silu")
    assert_parity(hidden, last, head, torch.float32)


def test_split_mlp_is_deterministic_and_resets_counters():
    """M = 40 spans three M blocks: partials are reduced by the last block to arrive."""
    hidden, last = make_batch(20, 24, torch.float32, seed=9)  # two candidate blocks
    head = make_head(24, 40, torch.float32, 9)
    q1 = qhead.qhead_triton(hidden, last, head)
    q2 = qhead.qhead_triton(hidden, last, head)
    assert torch.equal(q1, q2)
    assert all(int(c.abs().sum()) == 0 for c in qhead._COUNTERS.values())
    torch.testing.assert_close(q1, qhead.qhead_reference(hidden, last, head))


def test_only_gathered_rows_are_read():
    hidden, last = make_batch(4, 16, torch.float32, seed=1)
    not_last = torch.ones(hidden.shape[0], dtype=torch.bool)
    not_last[last] = False
    hidden[not_last] = math.nan
    q = qhead.score_qhead(hidden, last, make_head(16, 0, torch.float32, 1), backend="triton")
    assert torch.isfinite(q).all()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy inf - inf
@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_hidden_row_raises_naming_candidate(backend, bad):
    hidden, last = make_batch(3, 16, torch.float32, seed=2)
    hidden[last[1], 5] = bad
    head = make_head(16, 0, torch.float32, 2, out_act="sigmoid")  # sigmoid(inf) = 1 would hide it
    with pytest.raises(ValueError, match=r"candidate 1 \(row"):
        qhead.score_qhead(hidden, last, head, backend=backend)
    q = qhead.score_qhead(hidden, last, head, backend=backend, check=False)
    assert torch.isnan(q[1]) and torch.isfinite(q[[0, 2]]).all()


def test_non_finite_head_raises():
    hidden, last = make_batch(2, 8, torch.float32, seed=3)
    head = make_head(8, 4, torch.float32, 3)._replace(w2=torch.tensor([1.0, math.nan, 0, 0]))
    with pytest.raises(ValueError, match="head parameters"):
        qhead.score_qhead(hidden, last, head, backend="triton")


@pytest.mark.parametrize("M", [0, 6])
def test_head_width_mismatch_names_w1(M):
    hidden, last = make_batch(2, 12, torch.float32, seed=4)
    head = make_head(13, M, torch.float32, 4)
    with pytest.raises(ValueError, match=r"w1 has width 13 .* hidden size is 12"):
        qhead.score_qhead(hidden, last, head, backend="triton")


def test_mlp_width_mismatch_names_w2():
    hidden, last = make_batch(2, 12, torch.float32, seed=5)
    head = make_head(12, 6, torch.float32, 5)._replace(w2=torch.randn(7))
    with pytest.raises(ValueError, match="w2 has width 7 but must be 6"):
        qhead.score_qhead(hidden, last, head)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_empty_batch_raises(backend):
    head = make_head(8, 0, torch.float32, 0)
    with pytest.raises(ValueError, match="empty batch.*skip scoring"):
        qhead.score_qhead(torch.randn(4, 8), torch.zeros(0, dtype=torch.long), head,
                          backend=backend)  # fmt: skip


def _bad_inputs():
    h, last = make_batch(3, 8, torch.float32, seed=6)
    head = make_head(8, 0, torch.float32, 6)
    yield "hidden.*float64", (h.double(), last, head)
    yield "hidden rows are not contiguous", (torch.randn(8, h.shape[0]).T, last, head)
    yield "last_index.*dtype", (h, last.float(), head)
    yield r"last_index holds rows in \[.*\] but hidden has", (h, last + 100, head)
    yield "last_index is not contiguous", (h, torch.stack([last, last], 1)[:, 0], head)
    yield "head.out_act", (h, last, head._replace(out_act="softmax"))
    yield "norm='rms' needs norm_weight", (h, last, head._replace(norm="rms", norm_weight=None))
    yield "w1 is on meta", (h, last, head._replace(w1=head.w1.to("meta")))
    yield "w2 is missing", (h, last, make_head(8, 3, torch.float32, 6)._replace(w2=None))


@pytest.mark.parametrize(("match", "args"), list(_bad_inputs()), ids=lambda v: str(v)[:30])
def test_bad_input_raises_with_fix(match, args):
    with pytest.raises(ValueError, match=match):
        qhead.score_qhead(*args, backend="triton")


def test_cu_seqlens_and_backend_errors(monkeypatch):
    with pytest.raises(ValueError, match="at least one token"):
        qhead.last_index_from_cu_seqlens(torch.tensor([0, 2, 2, 5]))
    hidden, last = make_batch(2, 8, torch.float32, seed=8)
    head = make_head(8, 0, torch.float32, 8)
    with pytest.raises(ValueError, match="backend="):
        qhead.score_qhead(hidden, last, head, backend="cuda")
    monkeypatch.setattr(qhead, "_INTERPRETED", False)  # as if imported without TRITON_INTERPRET
    with pytest.raises(ValueError, match="backend='torch'"):
        qhead.qhead_triton(hidden, last, head)
    # "auto" on CPU is the torch reference and never touches the kernel.
    monkeypatch.setattr(qhead, "_launch", None)
    q = qhead.score_qhead(hidden, last, head)
    assert q.shape == (2,) and q.dtype == torch.float32
