"""Engine bookkeeping cost per expansion, every path side by side in one run.

Four sides search the same synthetic tree and must return the same solutions (asserted):

  python    pure-Python A* (the peers' way): a heapq of (-f, id), a dict of full token-state
            tuples (de-duplication), min aggregation, batched select with the terminal rule
            (a terminal on top is accepted only when no node of the current batch ranks before it)
  searcher  ``qstar_native.Searcher(expand, ...)`` with a columnar expand callback that returns a
            ``qstar_native.Steps`` per batch: the path ``HFPolicy.as_expand`` takes
  engine    ``Engine.select(k)`` + ``Engine.expand_steps(ids, steps)`` from a Python loop (ask/tell)
  c++       the time spent inside the compiled engine (``stats().engine_seconds``) of the engine run

The tree: the root has ``--prompt`` tokens; expansion number e of a node at depth d gets ``--width``
children of ``--step`` tokens each, from a pool of blocks drawn once from ``--seed``
(block e % ``--pool``): tokens, rewards in (-1, 0], q = d + 1 + u with u in [0, 1) (a dive-friendly
value, as a trained QVM gives), terminal at depth ``--depth``. All sides expand the same nodes in
the same order, so e is the same everywhere. Child generation (looking the block up, building the
arrays: the stand-in for the model) is replayed on its own after each run, timed, and subtracted
from that side; building the ``Steps`` and reading node depths from the engine count as the path's
cost. What is left is bookkeeping.

A second part runs a chain (one child of one token per node, terminal at ``--chain`` depth) through
the Searcher and through the ask/tell Engine with the same callback.

Timing: CPU time of this process (``time.process_time``), since the machine may be shared; the
sides run interleaved (the order rotates every repeat) after a short warm-up, and each cell is the
median over ``--repeats`` runs with the min-max spread; a ratio is taken within each repeat, then its
median. ``engine_seconds`` is the engine's own wall clock (steady_clock) around each call.

    python bench/bench_engine.py                       # defaults: 50,000 nodes, 5 repeats, chain 10,000
    python bench/bench_engine.py --nodes 200000 --repeats 3 --chain 0
"""

from __future__ import annotations

import argparse
import gc
import heapq
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import qstar_native
from qstar_native import Engine, SearchConfig, Searcher, Steps

VOCAB = 32_000
cpu = time.process_time


# ---- the synthetic tree ---------------------------------------------------------------------------


class Tree:
    """Children of every expansion, precomputed: numpy blocks for the native sides, Python tuples
    and floats (the same values) for the pure-Python side."""

    def __init__(self, args: argparse.Namespace) -> None:
        rng = np.random.default_rng(args.seed)
        self.width, self.step, self.depth, self.pool = args.width, args.step, args.depth, args.pool
        self.root = rng.integers(0, VOCAB, args.prompt).astype(np.int32)
        self.tok = rng.integers(0, VOCAB, (self.pool, self.width * self.step)).astype(np.int32)
        self.rew = -rng.random((self.pool, self.width))
        self.qf = rng.random((self.pool, self.width))
        w, s = self.width, self.step
        self.py_root = tuple(self.root.tolist())
        self.py_tok = [[tuple(row[i * s : (i + 1) * s].tolist()) for i in range(w)] for row in self.tok]
        self.py_rew = self.rew.tolist()
        # q = d + 1 + u, computed once in numpy so both sides see bit-identical floats
        self.py_q = [(d + 1 + self.qf).tolist() for d in range(self.depth)]
        self._cols: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # pure Python: the e-th expansion, of a node at depth d
    def children_py(self, e: int, d: int) -> tuple[list[tuple[int, ...]], list[float], list[float], bool]:
        b = e % self.pool
        return self.py_tok[b], self.py_rew[b], self.py_q[d][b], d + 1 >= self.depth

    # native: expansions e0 .. e0 + n - 1, of nodes at these depths, as flat arrays (views of the
    # pool where the blocks are contiguous, as a policy's output buffers would be)
    def children_np(self, e0: int, depths: np.ndarray) -> tuple[np.ndarray, ...]:
        n, w = len(depths), self.width
        b0 = e0 % self.pool
        if b0 + n <= self.pool:
            tokens = self.tok[b0 : b0 + n].reshape(-1)
            rewards = self.rew[b0 : b0 + n].reshape(-1)
            qf = self.qf[b0 : b0 + n].reshape(-1)
        else:
            b = np.arange(e0, e0 + n) % self.pool
            tokens, rewards, qf = self.tok[b].reshape(-1), self.rew[b].reshape(-1), self.qf[b].reshape(-1)
        d1 = np.repeat(depths + 1, w)  # child depths
        return tokens, rewards, d1 + qf, d1 >= self.depth

    def columns(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """num_children and lengths of n expansions (shape only, cached)."""
        if n not in self._cols:
            self._cols[n] = (np.full(n, self.width, np.int64), np.full(n * self.width, self.step, np.int64))
        return self._cols[n]


@dataclass
class Run:
    solutions: list[int]
    cpu: float  # CPU seconds of the whole run, generation included
    gen: float  # CPU seconds of the generation replay
    expansions: int
    nodes: int
    engine_seconds: float = float("nan")

    @property
    def bookkeeping(self) -> float:
        return self.cpu - self.gen


def replay(f: Callable[..., Any], calls: list[tuple[Any, ...]]) -> float:
    t0 = cpu()
    for c in calls:
        f(*c)
    return cpu() - t0


# ---- the four sides -------------------------------------------------------------------------------


def run_python(tree: Tree, args: argparse.Namespace) -> Run:
    """Reference A*: ranking f desc then id asc, min aggregation, dedup on full token sequences,
    batched select with the terminal rule, max_nodes as a hard stop."""
    calls: list[tuple[int, int]] = []
    gen = tree.children_py
    t0 = cpu()
    root = tree.py_root
    nodes: list[tuple[tuple[int, ...], float, int]] = [(root, 0.0, 0)]  # (state, g, depth)
    states = {root: 0}
    heap = [(0.0, 0)]
    terminal_of = [False]
    solutions: list[int] = []
    expansions = 0
    full = False
    while heap and len(solutions) < args.solutions and not full:
        batch: list[int] = []
        while heap and len(batch) < args.batch:
            f, nid = heapq.heappop(heap)
            if terminal_of[nid]:
                if batch:  # a node of this batch ranks before it and may still beat it
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
            calls.append((expansions, d))
            toks, rewards, qs, term = gen(expansions, d)
            expansions += 1
            for i in range(len(toks)):
                child = state + toks[i]
                if child in states:
                    continue
                if len(nodes) >= args.nodes:
                    full = True
                    break
                r = rewards[i]
                cg = r if d == 0 else (g if g < r else r)
                cid = len(nodes)
                nodes.append((child, cg, d + 1))
                states[child] = cid
                terminal_of.append(term)
                heapq.heappush(heap, (-(cg + qs[i]), cid))
    total = cpu() - t0
    return Run(solutions, total, replay(gen, calls), expansions, len(nodes))


def config(args: argparse.Namespace) -> SearchConfig:
    return SearchConfig(aggregate="min", batch_size=args.batch, num_solutions=args.solutions, max_nodes=args.nodes)


def run_searcher(tree: Tree, args: argparse.Namespace) -> Run:
    calls: list[tuple[int, np.ndarray]] = []
    state = [0]  # expansions so far

    def expand(batch: Any) -> Steps:
        depths = batch.info("depth").astype(np.int64)
        e0 = state[0]
        calls.append((e0, depths))
        tokens, rewards, q, terminal = tree.children_np(e0, depths)
        state[0] = e0 + len(depths)
        counts, lengths = tree.columns(len(depths))
        return Steps(counts, tokens, lengths, terminal=terminal, reward=rewards, q=q)

    searcher = Searcher(expand, config(args))
    t0 = cpu()
    result = searcher.search(tree.root)
    total = cpu() - t0
    sols = [int(x) for x in result.engine.solutions]  # acceptance order (result.solutions is best first)
    st = result.stats
    return Run(sols, total, replay(tree.children_np, calls), st.expanded, st.nodes, st.engine_seconds)


def run_engine(tree: Tree, args: argparse.Namespace) -> Run:
    calls: list[tuple[int, np.ndarray]] = []
    cfg = config(args)
    t0 = cpu()
    eng = Engine(cfg)
    eng.add_root(tree.root)
    depth_of = np.zeros(args.nodes + 1, np.int64)  # the last slot absorbs -1 (dropped children)
    e = 0
    while not eng.done:
        ids = eng.select(args.batch)
        if len(ids) == 0:
            continue  # select() just accepted terminals or stopped the search
        depths = depth_of[ids]
        calls.append((e, depths))
        tokens, rewards, q, terminal = tree.children_np(e, depths)
        e += len(ids)
        counts, lengths = tree.columns(len(ids))
        landed = eng.expand_steps(ids, Steps(counts, tokens, lengths, terminal=terminal, reward=rewards, q=q))
        depth_of[landed] = np.repeat(depths + 1, tree.width)
    total = cpu() - t0
    st = eng.stats()
    return Run(eng.solutions, total, replay(tree.children_np, calls), st.expanded, st.nodes, st.engine_seconds)


# ---- the chain ------------------------------------------------------------------------------------


class Chain:
    """One child of one token per node; the child at depth ``depth`` is terminal."""

    def __init__(self, depth: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.depth = depth
        self.root = rng.integers(0, VOCAB, 16).astype(np.int32)
        self.tok = rng.integers(0, VOCAB, depth).astype(np.int32)
        self.counts, self.lengths = np.ones(1, np.int64), np.ones(1, np.int64)
        self.no, self.yes = np.zeros(1, np.bool_), np.ones(1, np.bool_)
        self.zero = np.zeros(1)

    def child(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        return self.tok[d : d + 1], (self.yes if d + 1 >= self.depth else self.no)

    def steps(self, d: int) -> Steps:
        tokens, terminal = self.child(d)
        return Steps(self.counts, tokens, self.lengths, terminal=terminal, reward=self.zero, q=self.zero)


def run_chain_searcher(chain: Chain, args: argparse.Namespace) -> Run:
    state = [0]

    def expand(batch: Any) -> Steps:
        d = state[0]
        state[0] = d + 1
        return chain.steps(d)

    searcher = Searcher(expand, SearchConfig(aggregate="min", batch_size=1))
    t0 = cpu()
    result = searcher.search(chain.root)
    total = cpu() - t0
    gen = replay(chain.child, [(d,) for d in range(state[0])])
    st = result.stats
    return Run([int(x) for x in result.engine.solutions], total, gen, st.expanded, st.nodes, st.engine_seconds)


def run_chain_engine(chain: Chain, args: argparse.Namespace) -> Run:
    t0 = cpu()
    eng = Engine(SearchConfig(aggregate="min", batch_size=1))
    eng.add_root(chain.root)
    d = 0
    while not eng.done:
        ids = eng.select(1)
        if len(ids) == 0:
            continue
        eng.expand_steps(ids, chain.steps(d))
        d += 1
    total = cpu() - t0
    gen = replay(chain.child, [(i,) for i in range(d)])
    st = eng.stats()
    return Run(eng.solutions, total, gen, st.expanded, st.nodes, st.engine_seconds)


# ---- driver ---------------------------------------------------------------------------------------


def interleaved(sides: dict[str, Callable[[], Run]], repeats: int) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
            gc.collect()
            runs[name].append(sides[name]())
    return runs


def spread(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def check_same(runs: dict[str, list[Run]]) -> tuple[list[int], int, int]:
    ref = next(iter(runs.values()))[0]
    for name, rs in runs.items():
        for r in rs:
            if r.solutions != ref.solutions or r.expansions != ref.expansions or r.nodes != ref.nodes:
                raise SystemExit(f"{name} disagrees with the reference: {len(r.solutions)} solutions, {r.expansions} "
                                 f"expansions, {r.nodes} nodes vs {len(ref.solutions)}, {ref.expansions}, {ref.nodes}")  # fmt: skip
    return ref.solutions, ref.expansions, ref.nodes


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{platform.machine()}, {model}, {os.cpu_count()} cpus, load {load}; {platform.system()} "
            f"{platform.release()}; python {platform.python_version()}, numpy {np.__version__}, "
            f"qstar_native {qstar_native.__version__}")  # fmt: skip


def report_tree(runs: dict[str, list[Run]], args: argparse.Namespace) -> None:
    sols, expansions, nodes = check_same(runs)
    py = runs["python"]
    print(f"\ntree: {nodes:,} nodes, {expansions:,} expansions, {len(sols):,} solutions (same on every side, same order)")
    print(f"generation replayed and subtracted, per expansion: python {spread([r.gen / r.expansions * 1e6 for r in py], '.2f')} us, "
          f"native {spread([r.gen / r.expansions * 1e6 for r in runs['engine']], '.2f')} us")  # fmt: skip
    rows: list[tuple[str, list[float]]] = [
        ("pure-Python A* (heapq + dict of state tuples)", [r.bookkeeping for r in py]),
        ("Searcher + columnar Steps callback", [r.bookkeeping for r in runs["searcher"]]),
        ("Engine.select + Engine.expand_steps loop", [r.bookkeeping for r in runs["engine"]]),
        ("C++ only (engine_seconds of the engine loop)", [r.engine_seconds for r in runs["engine"]]),
    ]
    print("\n| path | CPU us / expansion, median [min-max] | expansions / s | vs pure Python, median [min-max] |")
    print("|---|---:|---:|---:|")
    for label, secs in rows:
        us = [s / expansions * 1e6 for s in secs]
        ratios = [p.bookkeeping / s for p, s in zip(py, secs)]
        print(f"| {label} | {spread(us, '.2f')} | {expansions / statistics.median(secs):,.0f} | {spread(ratios, '.2f')}x |")
    srch = [r.engine_seconds / expansions * 1e6 for r in runs["searcher"]]
    print(f"(C++ time inside the Searcher runs: {spread(srch, '.2f')} us / expansion)")


def report_chain(runs: dict[str, list[Run]], args: argparse.Namespace) -> None:
    sols, expansions, nodes = check_same(runs)
    print(f"\nchain: depth {args.chain:,}, {nodes:,} nodes, solution {sols}")
    print("\n| path | CPU s, median [min-max] | us / expansion | C++ s | vs ask/tell Engine, median [min-max] |")
    print("|---|---:|---:|---:|---:|")
    eng = runs["engine"]
    for name, label in (("searcher", "Searcher (batch_size 1)"), ("engine", "ask/tell Engine loop")):
        secs = [r.bookkeeping for r in runs[name]]
        ratios = [s / e.bookkeeping for s, e in zip(secs, eng)]
        cpp = statistics.median(r.engine_seconds for r in runs[name])
        print(f"| {label} | {spread(secs, '.3f')} | {statistics.median(secs) / expansions * 1e6:.1f} | {cpp:.3f} | {spread(ratios, '.2f')}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=50_000, help="node budget (max_nodes), every side")
    p.add_argument("--width", type=int, default=8, help="children per expansion")
    p.add_argument("--step", type=int, default=24, help="tokens per step")
    p.add_argument("--prompt", type=int, default=160, help="root tokens")
    p.add_argument("--depth", type=int, default=12, help="depth of terminals")
    p.add_argument("--batch", type=int, default=4, help="select(k) / batch_size")
    p.add_argument("--solutions", type=int, default=10**9, help="solutions to find before stopping")
    p.add_argument("--pool", type=int, default=4096, help="precomputed child blocks (expansion e uses block e %% pool)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats of every side")
    p.add_argument("--chain", type=int, default=10_000, help="depth of the chain benchmark (0: skip it)")
    p.add_argument("--skip-tree", action="store_true", help="run the chain only")
    args = p.parse_args()

    print(f"machine: {machine()}")
    print(f"command: {' '.join(['python'] + sys.argv)}")
    print(f"settings: {vars(args)}")
    if not args.skip_tree:
        tree = Tree(args)
        warm = argparse.Namespace(**{**vars(args), "nodes": min(args.nodes, 2_000)})
        for f in (run_python, run_searcher, run_engine):
            f(tree, warm)
        sides = {"python": lambda: run_python(tree, args), "searcher": lambda: run_searcher(tree, args),
                 "engine": lambda: run_engine(tree, args)}  # fmt: skip
        report_tree(interleaved(sides, args.repeats), args)
    if args.chain:
        chain = Chain(args.chain, args.seed)
        run_chain_engine(Chain(min(args.chain, 500), args.seed), args)  # warm-up
        sides = {"searcher": lambda: run_chain_searcher(chain, args), "engine": lambda: run_chain_engine(chain, args)}
        report_chain(interleaved(sides, args.repeats), args)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
