"""Engine bookkeeping cost: the native A* engine against a pure-Python A* (heapq + dict), one run.

Both search the same synthetic tree (children precomputed from a seed, so no model time is
counted) with de-duplication on full token sequences, and must return the same solutions. The
Python baseline is what peer libraries do: a heap of (-f, id) and a dict of state tuples.

    python bench/bench_engine.py --nodes 200000 --width 8 --step 24
"""

from __future__ import annotations

import argparse
import heapq
import platform
import time

import numpy as np

from qstar_native import Engine


GEN_SECONDS = [0.0]  # time spent making children (the stand-in for the model), excluded below


def make_children(rng: np.random.Generator, width: int, step: int, depth: int, target_depth: int):
    t0 = time.perf_counter()
    tokens = rng.integers(0, 32_000, width * step).astype(np.int32)
    rewards = -rng.random(width)
    q = depth + 1 + rng.random(width)  # dive-friendly values, as a trained QVM would give
    terminal = np.full(width, depth + 1 >= target_depth)
    GEN_SECONDS[0] += time.perf_counter() - t0
    return tokens, rewards, q, terminal


def run_native(args) -> tuple[list[int], float, int, float]:
    GEN_SECONDS[0] = 0.0
    rng = np.random.default_rng(args.seed)
    eng = Engine(aggregate="min", num_solutions=args.solutions, max_nodes=args.nodes)
    eng.add_root(rng.integers(0, 32_000, args.prompt).astype(np.int32))
    depth_of = {0: 0}
    lengths = np.full(args.width, args.step, dtype=np.int64)
    t0 = time.perf_counter()
    while not eng.done:
        ids = eng.select(args.batch)
        for n in ids:
            d = depth_of[int(n)]
            tokens, rewards, q, terminal = make_children(rng, args.width, args.step, d, args.depth)
            landed = eng.expand_flat(np.array([n]), np.array([args.width]), tokens, lengths, rewards, q, terminal)
            for c in landed:
                depth_of[int(c)] = d + 1
    total = time.perf_counter() - t0 - GEN_SECONDS[0]
    return eng.solutions, total, eng.num_nodes, eng.stats().engine_seconds


def run_python(args) -> tuple[list[int], float, int]:
    """Reference A*: same ranking (f desc, id asc), min aggregation, dedup by full sequence."""
    GEN_SECONDS[0] = 0.0
    rng = np.random.default_rng(args.seed)
    root = tuple(rng.integers(0, 32_000, args.prompt).tolist())
    nodes = [(root, 0.0, 0)]  # (state, g, depth)
    states = {root: 0}
    heap = [(0.0, 0)]
    terminal_of = {0: False}
    solutions: list[int] = []
    t0 = time.perf_counter()
    full = False
    while heap and len(solutions) < args.solutions and not full:
        batch = []
        while heap and len(batch) < args.batch:
            f, nid = heapq.heappop(heap)
            if terminal_of[nid]:
                if batch:
                    heapq.heappush(heap, (f, nid))
                    break
                solutions.append(nid)
                if len(solutions) >= args.solutions:
                    break
                continue
            batch.append(nid)
        if len(solutions) >= args.solutions:
            break
        for nid in batch:
            state, g, d = nodes[nid]
            tokens, rewards, q, terminal = make_children(rng, args.width, args.step, d, args.depth)
            for i in range(args.width):
                child = state + tuple(tokens[i * args.step : (i + 1) * args.step].tolist())
                if child in states:
                    continue
                if len(nodes) >= args.nodes:
                    full = True
                    break
                cg = float(rewards[i]) if d == 0 else min(g, float(rewards[i]))
                nodes.append((child, cg, d + 1))
                cid = len(nodes) - 1
                states[child] = cid
                terminal_of[cid] = bool(terminal[i])
                heapq.heappush(heap, (-(cg + float(q[i])), cid))
    return solutions, time.perf_counter() - t0 - GEN_SECONDS[0], len(nodes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=200_000, help="node budget (both engines)")
    p.add_argument("--width", type=int, default=8, help="children per expansion")
    p.add_argument("--step", type=int, default=24, help="tokens per step")
    p.add_argument("--prompt", type=int, default=160, help="root tokens")
    p.add_argument("--depth", type=int, default=12, help="depth of terminals")
    p.add_argument("--batch", type=int, default=4, help="select(k)")
    p.add_argument("--solutions", type=int, default=10**9, help="solutions to find before stopping")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    nat_sol, nat_t, nat_n, core_t = run_native(args)
    py_sol, py_t, py_n = run_python(args)
    print(f"machine: {platform.machine()} python {platform.python_version()}; {vars(args)}")
    print("bookkeeping time (child generation excluded):")
    print(f"native loop : {nat_n:>8} nodes {nat_t:8.3f} s {nat_n / nat_t:>12,.0f} nodes/s ({len(nat_sol)} solutions)")
    print(f"  in C++    : {core_t:8.3f} s {nat_n / core_t:>12,.0f} nodes/s")
    print(f"python A*   : {py_n:>8} nodes {py_t:8.3f} s {py_n / py_t:>12,.0f} nodes/s ({len(py_sol)} solutions)")
    print(f"same solutions: {nat_sol == py_sol}")
    print(f"ratio python/native loop: {py_t / nat_t:.2f}x; python/native core: {py_t / core_t:.2f}x")


if __name__ == "__main__":
    main()
