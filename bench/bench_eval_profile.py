"""Where a `qstar eval --methods qstar` run spends its time: the QVM scorer's share of the
evaluation, and model trunk passes (the policy's and a QVM backbone's alike) per generated token.

    python bench/bench_eval_profile.py --n 20

Run under cProfile on the embedded default, one torch thread. The same script run against an
older checkout (installed in its own venv) gives the "before" column in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import re

import torch
from transformers.models.llama import modeling_llama


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    calls = [0]
    trunk = modeling_llama.LlamaModel.forward

    def counted(self, *a, **k):  # every pass of a Llama trunk: the policy's, or a QVM backbone's
        calls[0] += 1
        return trunk(self, *a, **k)

    modeling_llama.LlamaModel.forward = counted
    from qstar_native.cli import main as cli

    profile, out = cProfile.Profile(), io.StringIO()
    profile.enable()
    with contextlib.redirect_stdout(out):
        cli(["eval", "--n", str(args.n), "--methods", "qstar", "--no-progress", "--threads", "1"])
    profile.disable()
    text = out.getvalue()
    print(text)
    generated = float(re.search(r"^qstar\S*\s+\d+\s+\S+\s+\[.*?\]\s+([\d.]+)", text, re.M).group(1)) * args.n
    stats = pstats.Stats(profile).stats

    def cumulative(pred) -> float:
        return sum(v[3] for k, v in stats.items() if pred(k))

    qvm = cumulative(lambda k: k[0].endswith("scorers.py") and k[2] == "__call__" and "QVMScorer" in _qualname(k))
    total = cumulative(lambda k: k[0].endswith("evaluation.py") and k[2] == "evaluate")
    print(f"QVM scorer {qvm:.2f} s of evaluate {total:.2f} s (under cProfile) = {100 * qvm / total:.1f}%; trunk passes {calls[0]}, "
          f"generated tokens {generated:.0f}: {calls[0] / generated:.3f} passes per generated token")  # fmt: skip


def _qualname(key: tuple) -> str:
    """The class of a profiled method, read from its source line (cProfile keeps file, line, name)."""
    import linecache

    path, line, _ = key
    for no in range(line, 0, -1):
        src = linecache.getline(path, no)
        if src.startswith("class "):
            return src.split()[1]
    return ""


if __name__ == "__main__":
    main()
