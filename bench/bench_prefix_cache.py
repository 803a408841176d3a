"""Microbenchmark of the native prefix cache (qstar_native.PrefixCache) against a Python baseline.

Workload: the KV traffic of a tree search. A root prompt, then rounds in which every leaf of
the previous round gets ``--children`` children, each adding one step of ``--step`` tokens. Per
child: match its full sequence, allocate the uncached tail, insert. No eviction (the pool is large
enough), so both sides do the same work and must report the same hit counts.

Baseline: vLLM-style chained block keys in a dict of tuples, key = (parent block id, tuple of the
block's tokens) -> block id; match walks blocks from the root, insert adds the missing ones. Both
sides get the same pre-built token sequences (numpy int32 for native, lists for the baseline), so
neither pays for conversions the other skips.

    python bench/bench_prefix_cache.py [--block-size 16] [--prompt 256] [--step 48] ...
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from qstar_native import PrefixCache


def make_sequences(prompt: int, step: int, children: int, depth: int, vocab: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    level = [rng.integers(0, vocab, prompt, dtype=np.int32)]
    out = []
    for _ in range(depth):
        level = [np.concatenate([p, rng.integers(0, vocab, step, dtype=np.int32)]) for p in level for _ in range(children)]
        out.extend(level)
    return out


class DictBaseline:
    def __init__(self, block_size: int) -> None:
        self.bs, self.table, self.next_block, self.hit = block_size, {}, 0, 0

    def match(self, tokens: list[int]) -> tuple[int, int]:
        parent, n, bs = -1, 0, self.bs
        while n + bs <= len(tokens):
            b = self.table.get((parent, tuple(tokens[n : n + bs])))
            if b is None:
                break
            parent, n = b, n + bs
        self.hit += n
        return n, parent

    def run(self, tokens: list[int]) -> None:
        n, parent = self.match(tokens)
        while n + self.bs <= len(tokens):
            self.table[(parent, tuple(tokens[n : n + self.bs]))] = parent = self.next_block
            self.next_block, n = self.next_block + 1, n + self.bs


def run_native(seqs: list[np.ndarray], block_size: int) -> tuple[float, int]:
    total = sum(len(s) for s in seqs)
    cache = PrefixCache(num_blocks=total // block_size + 1, block_size=block_size)
    t0 = time.perf_counter()
    for s in seqs:
        hit = cache.match(s)
        cache.insert(s, np.concatenate([hit.slots, cache.allocate(len(s) - hit.length)]))
    return time.perf_counter() - t0, cache.stats().hit_tokens


def run_baseline(seqs: list[list[int]], block_size: int) -> tuple[float, int]:
    base = DictBaseline(block_size)
    t0 = time.perf_counter()
    for s in seqs:
        base.run(s)
    return time.perf_counter() - t0, base.hit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block-size", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--step", type=int, default=48)
    ap.add_argument("--children", type=int, default=6)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    seqs = make_sequences(args.prompt, args.step, args.children, args.depth, vocab=32000, seed=0)
    lists = [s.tolist() for s in seqs]
    ntok = sum(len(s) for s in seqs)
    print(f"{len(seqs)} sequences, {ntok} tokens; best of {args.repeats} runs")
    print(f"{'block':>5} {'native ms':>10} {'dict ms':>9} {'speedup':>8} {'native Mtok/s':>14}")
    for bs in args.block_size:
        nat = min(run_native(seqs, bs) for _ in range(args.repeats))
        base = min(run_baseline(lists, bs) for _ in range(args.repeats))
        assert nat[1] == base[1], f"hit tokens differ: native {nat[1]}, baseline {base[1]}"
        print(f"{bs:>5} {nat[0] * 1e3:>10.1f} {base[0] * 1e3:>9.1f} {base[0] / nat[0]:>7.1f}x {ntok / nat[0] / 1e6:>14.1f}")


if __name__ == "__main__":
    main()
