"""Differential check of two builds of the compiled engine: random workloads, every output digested.

Runs seeded random workloads through the raw ``_core`` module found in MODDIR (a directory holding
one ``_core.cpython-*.so``): random configs (every aggregate, best-first and beam, budgets,
frontier capacity, dedup on/off, keys, KV pins in a real PrefixCache), selects, multi-parent
expands from a tiny token alphabet (duplicates, merges, reopenings, f ties), releases (some with
an id twice) and invalid batches (their error messages are recorded). After every call it
records the frontier, solutions, stop reason, stats (engine_seconds excepted) and pins; at the end
every node's fields, state tokens and some paths. Two builds agree bit for bit when the printed
digests are equal (give OUT.txt to diff the records).

    # e.g. the core of an older commit, built with the Release flags, against the installed one
    python bench/engine_differential.py /tmp/old_core 0 1000 /tmp/old.txt
    python bench/engine_differential.py .venv/lib/python3.11/site-packages/qstar_native 0 1000 /tmp/new.txt
"""

import hashlib
import random
import sys

sys.path.insert(0, sys.argv[1])
import numpy as np  # noqa: E402

import _core  # noqa: E402

out = hashlib.sha256()
lines: list[str] = []


def rec(*a):
    s = repr(a)
    out.update(s.encode())
    if len(sys.argv) > 4:
        lines.append(s)


# Terminal flags: bool since commit e92581b, uint8 in the builds before it.
TERMINAL = np.bool_ if "numpy.bool" in (_core.Engine.expand.__doc__ or "") else np.uint8


def col(d):
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in d.items()}


def scenario(seed):
    R = random.Random(seed)
    big = R.random() < 0.15
    alpha = R.choice([2, 3, 4, 50]) if not big else R.choice([2, 3, 1000])
    agg = R.choice(["min", "max", "sum", "mean", "product", "last", "zero"])
    sel = R.choice(["best_first", "best_first", "beam"])
    beam_width = R.choice([None, 1, 2, 3, 8]) if sel == "beam" else None
    lim = R.choice
    cfgargs = dict(lam=R.choice([0.0, 0.5, 1.0, 2.0]), aggregate=agg, selection=sel, beam_width=beam_width,
                   num_solutions=lim([None, 1, 3, 50]), max_expansions=lim([None, 5, 40, 2000]),
                   max_nodes=lim([None, 10, 100, 3000]) if not big else lim([None, 20000]),
                   max_steps=lim([None, 2, 5, 30]), max_tokens=lim([None, 30, 1000, 100000]),
                   frontier_capacity=lim([None, 1, 3, 20, 300]), vocab_size=lim([None, alpha + 1, 1000]),
                   dedup=R.random() < 0.85)
    if big:
        cfgargs.update(max_tokens=None, max_expansions=lim([None, 3000]), max_steps=lim([None, 30]),
                       num_solutions=lim([None, 1000]), frontier_capacity=lim([None, 50, 2000]))
    keyed = R.random() < 0.15
    use_cache = R.random() < 0.3
    rec("cfg", seed, cfgargs, keyed, use_cache)
    cfg = _core.EngineConfig(**cfgargs)
    cache = _core.PrefixCache(num_blocks=1 << 16, block_size=1) if use_cache else None
    eng = _core.Engine(cfg, cache)
    root = np.array([R.randrange(alpha) for _ in range(R.randrange(0, 4))], np.int32)
    rid = eng.add_root(root, float(R.randint(-2, 2)), b"root" if keyed else None)
    rec("root", rid)
    selected = []
    steps = 0
    max_ops = 3000 if big else 120
    while steps < max_ops:
        steps += 1
        op = R.random()
        if op < 0.4 or not selected:
            k = R.choice([1, 1, 2, 3, 4, 8, 32])
            got = eng.select(k).tolist()
            selected += got
            rec("select", k, got, eng.done, eng.stop_reason)
            if not got and not selected and eng.done:
                break
        elif op < 0.95:
            # expand some of the selected nodes in one call
            R.shuffle(selected)
            m = R.randint(1, len(selected))
            parents, selected = selected[:m], selected[m:]
            bad = R.random() < 0.06
            kind = R.randrange(8) if bad else -1
            if kind == 0 and parents: parents = parents + [parents[0]]
            if kind == 1: parents = parents + [eng.num_nodes + 5]
            counts = [R.choice([0, 1, 2, 3, 4, 4, 8, 8]) for _ in parents]
            n = sum(counts)
            lengths = [R.randint(1, 3) for _ in range(n)]
            toks = [R.randrange(alpha) for _ in range(sum(lengths))]
            rewards = [float(R.randint(-3, 3)) * (0.5 if agg == "product" else 1) for _ in range(n)]
            qs = [float(R.randint(-2, 2)) for _ in range(n)]
            term = [R.random() < 0.2 for _ in range(n)]
            samples = [R.randint(1, 3) for _ in range(n)] if R.random() < 0.3 else None
            if kind == 2 and n: lengths[0] = 0
            if kind == 3 and n: rewards[-1] = float("nan")
            if kind == 4 and toks: toks[-1] = -1 if R.random() < 0.5 else 10**6
            if kind == 5 and counts: counts[0] = -1
            if kind == 6 and n: qs[0] = float("inf")
            handles = None
            if cache is not None:
                handles = []
                for i in range(n):
                    if R.random() < 0.5:
                        arr = np.array([R.randrange(alpha) for _ in range(R.randint(1, 4))], np.int32)
                        mt = cache.match(arr)
                        cache.insert(arr, np.concatenate([mt.slots if hasattr(mt, "slots") else mt, cache.allocate(len(arr) - (mt.length if hasattr(mt, "length") else len(mt)))]))
                        handles.append(cache.pin(arr))
                    else:
                        handles.append(-1)
                if kind == 7 and len([h for h in handles if h >= 0]) > 0:
                    hs = [h for h in handles if h >= 0]
                    handles[-1] = hs[0] if R.random() < 0.5 else 10**9
            keys = None
            if keyed and R.random() < 0.97:
                keys = [bytes([R.randrange(min(alpha, 256)) for _ in range(R.randint(1, 3))]) for _ in range(n)]
            elif not keyed and R.random() < 0.02:
                keys = [b"x"] * n
            try:
                res = eng.expand(np.array(parents, np.int64), np.array(counts, np.int64), np.array(toks, np.int32),
                                 np.array(lengths, np.int64), np.array(rewards), np.array(qs), np.array(term, TERMINAL),
                                 None if samples is None else np.array(samples, np.int64),
                                 None if handles is None else np.array(handles, np.int64), keys)
                rec("expand", parents, res.tolist())
            except (ValueError, RuntimeError) as e:
                rec("expand-error", type(e).__name__, str(e))
                # give back pins the engine did not take
                if handles is not None:
                    for h in set(handles):
                        if h >= 0 and cache.has_pin(int(h)): cache.unpin(int(h))
                # the failed call changed nothing: keep real parents selected
                selected += [p for p in dict.fromkeys(parents) if p < eng.num_nodes and p not in selected and col(eng.infos(np.array([p], np.int64)))["status"][0] == 1]
        else:
            R.shuffle(selected)
            m = R.randint(1, len(selected))
            rel, selected = selected[:m], selected[m:]
            if R.random() < 0.3: rel = rel + [rel[0]]
            eng.release(np.array(rel, np.int64))
            rec("release", rel)
        rec("state", eng.frontier(1 << 30).tolist(), eng.frontier(3).tolist(), eng.solutions.tolist(), eng.stop_reason,
            eng.done, {k: v for k, v in eng.stats().items() if k != 'engine_seconds'}, eng.num_nodes, eng.pinned_nodes().tolist())
    n = eng.num_nodes
    ids = np.arange(n, dtype=np.int64)
    rec("infos", col(eng.infos(ids)))
    t, o = eng.state_tokens(ids)
    rec("tokens", t.tolist(), o.tolist())
    for i in range(0, n, max(1, n // 50)):
        rec("path", i, eng.path(i).tolist(), eng.step_tokens(i).tolist())
    if cache is not None:
        rec("cache", cache.num_pins)
        del eng
        rec("cache-after", cache.num_pins)


s0, ns = int(sys.argv[2]), int(sys.argv[3])
for s in range(s0, s0 + ns):
    scenario(s)
print(out.hexdigest())
if len(sys.argv) > 4:
    open(sys.argv[4], "w").write("\n".join(lines))
