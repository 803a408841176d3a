"""Benchmark of the fused Q-head scoring kernel (kernels/qhead.py) against torch eager.

On CUDA: a parity check of the kernel against the fp32 torch reference on odd shapes and every
dtype (plus each timed shape), then timings for B in 64..16384 and H in 576..4096, linear and MLP
heads. Eager = gather + norm + matmul + activation as separate native-dtype torch ops; both
sides compute q only (f = g + lambda * h is the C++ engine's).
Two timings per row: ``call_us`` (triton.testing.do_bench: L2 flushed, host launch overhead
included) and ``gpu_us`` (do_bench_cudagraph: GPU time only; L2-warm when the footprint fits in
L2). Bandwidth = bytes moved (gathered rows + indices + weights + q) / gpu_us.
On CPU: interpreter parity only (Triton has no CPU backend).

    python bench/bench_qhead.py --out qhead.json            # GPU: parity + timings
    python bench/bench_qhead.py                             # CPU: interpreter parity table
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import pathlib
import sys
import time
import warnings

import torch

if not torch.cuda.is_available():  # must precede the @triton.jit decorators in qhead
    os.environ.setdefault("TRITON_INTERPRET", "1")

try:
    from qstar_native.kernels import qhead
except ImportError:  # not installed (e.g. on the bench machine): load the file from the repo
    _spec = importlib.util.spec_from_file_location(
        "qhead", pathlib.Path(__file__).resolve().parents[1] / "kernels" / "qhead.py"
    )
    qhead = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(qhead)

import triton  # noqa: E402  (after TRITON_INTERPRET is settled)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TOL = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 5e-2}
L2_BYTES = 50 * 2**20  # H100


def make_inputs(B: int, H: int, M: int, dtype, norm: str, dev, seed: int = 0, max_len: int = 16):
    """Packed ragged batch (lengths 1..max_len) and a head; M == 0 is a linear head."""
    gen = torch.Generator(device=dev).manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (B,), device=dev, generator=gen)
    last = lengths.cumsum(0) - 1
    hidden = torch.randn(int(lengths.sum()), H, device=dev, dtype=dtype, generator=gen)
    rnd = lambda *s: torch.randn(*s, device=dev, generator=gen)  # noqa: E731
    nw = (1 + 0.1 * rnd(H)).to(dtype) if norm != "none" else None
    nb = (0.1 * rnd(H)).to(dtype) if norm == "layer" else None
    one = torch.tensor([0.1], device=dev)
    if M == 0:
        head = qhead.QHead(w1=(rnd(H) / H**0.5).to(dtype), b1=one, out_act="sigmoid", norm=norm,
                           norm_weight=nw, norm_bias=nb)  # fmt: skip
    else:
        head = qhead.QHead(w1=(rnd(H, M) / H**0.5).to(dtype), b1=(0.1 * rnd(M)).to(dtype),
                           w2=(rnd(M) / M**0.5).to(dtype), b2=one, act="gelu",
                           out_act="sigmoid", norm=norm, norm_weight=nw, norm_bias=nb)  # fmt: skip
    return hidden, last, head


def eager(hidden, last, head):
    """What one writes without the kernel: separate ops in the model's dtype."""
    x = hidden[last]  # gather
    if head.norm == "rms":
        x = torch.nn.functional.rms_norm(x, (x.shape[1],), head.norm_weight, head.eps)
    elif head.norm == "layer":
        x = torch.nn.functional.layer_norm(x, (x.shape[1],), head.norm_weight, head.norm_bias)
    if head.w2 is None:
        pre = x @ head.w1 + head.b1.to(x.dtype)  # matmul
    else:
        pre = torch.nn.functional.gelu(x @ head.w1 + head.b1) @ head.w2 + head.b2.to(x.dtype)
    return torch.sigmoid(pre.float())  # activation


def bytes_moved(B: int, H: int, M: int, dtype, norm: str) -> int:
    es = torch.tensor([], dtype=dtype).element_size()
    weights = (H * M + 2 * M if M else H) * es + (H * es if norm != "none" else 0)
    return B * H * es + B * 8 + weights + B * 4  # rows, int64 indices, weights, fp32 q


def parity(dev, dtypes) -> list[dict]:
    """Kernel vs fp32 reference on odd shapes; also checks a NaN row poisons only its q."""
    shapes = [(1, 5, 0), (1, 97, 33), (7, 97, 0), (7, 97, 33), (300, 576, 0), (300, 576, 70),
              (33, 1000, 17)]  # (B, H, M); M = 0: linear head  # fmt: skip
    if dev.type == "cuda":  # the large-block MLP configs; far too slow for the interpreter
        shapes += [(1500, 700, 300), (5000, 1100, 1000)]
    rows = []
    for dtype in dtypes:
        for i, (B, H, M) in enumerate(shapes):
            norm = ("none", "rms", "layer")[i % 3]
            hidden, last, head = make_inputs(B, H, M, dtype, norm, dev, seed=i)
            t0 = time.perf_counter()
            q = qhead.qhead_triton(hidden, last, head)
            secs = time.perf_counter() - t0
            q_ref = qhead.qhead_reference(hidden, last, head)
            err = (q - q_ref).abs().max().item()
            ok = bool(torch.allclose(q, q_ref, atol=TOL[dtype], rtol=TOL[dtype]))
            q2 = qhead.qhead_triton(hidden, last, head)  # split-M reduction order
            ok = ok and torch.equal(q, q2)
            hidden[last[-1], H // 2] = math.inf  # sigmoid(inf) = 1 must not hide it
            q_bad = qhead.qhead_triton(hidden, last, head)
            nan_ok = bool(torch.isnan(q_bad[-1])) and bool(torch.isfinite(q_bad[:-1]).all())
            rows.append(dict(dtype=str(dtype)[6:], B=B, H=H, M=M, norm=norm, max_abs_err=err,
                             tol=TOL[dtype], ok=ok and nan_ok, nan_row_ok=nan_ok, secs=secs))  # fmt: skip
    return rows


def timings(args, dev, result: dict) -> None:
    """Appends one row per (dtype, head, H, B) to result["timings"], saving after each row."""
    rows, t_end = result["timings"], time.monotonic() + args.time_budget
    for dtype in [DTYPES[d] for d in args.dtypes]:
        for M in (0, args.mlp_width):
            for H in args.hidden:
                for B in args.batch:
                    if time.monotonic() > t_end:
                        print("time budget spent: stopping", flush=True)
                        return
                    hidden, last, head = make_inputs(B, H, M, dtype, args.norm, dev)
                    kern = lambda: qhead.qhead_triton(hidden, last, head)  # noqa: E731
                    ref = lambda: eager(hidden, last, head)  # noqa: E731
                    q = kern()
                    q_ref = qhead.qhead_reference(hidden, last, head)
                    err = (q - q_ref).abs().max().item()
                    call_k, call_e = (triton.testing.do_bench(fn, return_mode="median") for fn in (kern, ref))
                    gpu_k, gpu_e = (triton.testing.do_bench_cudagraph(fn, return_mode="median") for fn in (kern, ref))  # fmt: skip
                    nbytes = bytes_moved(B, H, M, dtype, args.norm)
                    gbps = nbytes / (gpu_k * 1e-3) / 1e9
                    row = dict(dtype=str(dtype)[6:], head="mlp" if M else "linear", B=B, H=H, M=M,
                               max_abs_err=err, ok=err <= TOL[dtype] * 2,
                               call_us_kernel=call_k * 1e3, call_us_eager=call_e * 1e3,
                               gpu_us_kernel=gpu_k * 1e3, gpu_us_eager=gpu_e * 1e3,
                               speedup_gpu=gpu_e / gpu_k, speedup_call=call_e / call_k,
                               mbytes=nbytes / 1e6, l2_resident=nbytes < L2_BYTES,
                               gbps=gbps, frac_peak=gbps / args.peak_gbps,
                               tflops=(2 * B * H * M / (gpu_k * 1e-3) / 1e12) if M else 0.0)  # fmt: skip
                    rows.append(row)
                    print(f"{row['dtype']:8} {row['head']:6} B={B:<6} H={H:<5} err={err:.1e} "
                          f"call {call_k*1e3:8.1f}/{call_e*1e3:8.1f}us  gpu {gpu_k*1e3:8.1f}/"
                          f"{gpu_e*1e3:8.1f}us  x{row['speedup_gpu']:.2f}  {gbps:7.0f} GB/s "
                          f"({row['frac_peak']:.0%}){' L2' if row['l2_resident'] else ''}", flush=True)  # fmt: skip
                    if args.out:
                        args.out.write_text(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024, 4096, 16384])
    ap.add_argument("--hidden", type=int, nargs="+", default=[576, 1024, 2048, 4096])
    ap.add_argument("--mlp-width", type=int, default=1024, help="M of the MLP head")
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"], choices=list(DTYPES))
    ap.add_argument("--norm", default="none", choices=["none", "rms", "layer"])
    ap.add_argument("--peak-gbps", type=float, default=3350.0, help="HBM peak (H100 SXM: 3350)")
    ap.add_argument("--out", type=pathlib.Path, help="write results as JSON here")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--time-budget", type=float, default=400.0, help="seconds for timings")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    info = dict(device=torch.cuda.get_device_name() if cuda else "cpu (TRITON_INTERPRET=1)",
                torch=torch.__version__, triton=triton.__version__, python=sys.version.split()[0],
                args={k: str(v) for k, v in vars(args).items()})  # fmt: skip
    print(json.dumps(info), flush=True)
    if not cuda:  # numpy's "invalid value" warnings from the deliberate inf row
        warnings.simplefilter("ignore", RuntimeWarning)
    par = parity(dev, list(DTYPES.values()))
    for r in par:
        print(f"parity {r['dtype']:8} B={r['B']:<4} H={r['H']:<5} M={r['M']:<3} {r['norm']:5} "
              f"max|err|={r['max_abs_err']:.2e} tol={r['tol']:.0e} nan_row={r['nan_row_ok']} "
              f"{'OK' if r['ok'] else 'FAIL'} ({r['secs']:.2f}s)", flush=True)  # fmt: skip
    result = dict(info=info, parity=par, timings=[])
    if cuda and not args.skip_timing:  # timed even after a parity failure (flagged in JSON)
        timings(args, dev, result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    if not all(r["ok"] for r in par):
        sys.exit("parity FAILED")


if __name__ == "__main__":
    main()
