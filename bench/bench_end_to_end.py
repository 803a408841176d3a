"""End to end: step-level beam search on one model, three ways, on the same tree shape, in one run.

- ``qstar_native``: HFPolicy + the engine (beam, ``--beam`` x ``--children``): each round the
  level's nodes go to the model as one batch; prefixes come from the paged KV cache (each token's
  KV computed once), sibling samples share their common prefix rows.
- ``recompute``: the same, with ``prefix_sharing=False``: every node's whole state is prefilled.
- ``hf-generate``: what the best peer configuration does: for each expanded node, one
  ``model.generate`` from the node's full token state with ``num_return_sequences=children``
  (its siblings batched together), nodes one after another; the kept beam is the first
  ``--beam`` children of the level (the shape is what matters: every run expands the same number
  of nodes with the same state lengths and samples the same number of tokens).

Steps are exactly ``--step-tokens`` long on every side (the model has no EOS and the step
delimiter never occurs), so the three trees have the same shape: ``--depth`` levels, the root
and ``--beam`` nodes per later level expanded, ``--children`` samples each. Reported: CPU seconds
(``time.process_time``, one torch thread), median of ``--repeats`` runs interleaved A B C A B C,
with min and max; tokens forwarded; model calls; the CPU ratios against ``qstar_native``.

``--compile mlp|layers`` adds a fourth side: ``qstar_native`` on a copy of the model whose
decoder layers' MLPs (or whole layers) went through ``torch.compile(dynamic=True)``; its compile
time is paid in a warm-up run and reported apart.

Run:  python bench/bench_end_to_end.py                     # 4M-parameter Llama, depths 4 and 8
      python bench/bench_end_to_end.py --depths 4 --repeats 1
      python bench/bench_end_to_end.py --compile mlp       # does torch.compile pay here?
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from qstar_native import Searcher
from qstar_native.policy import HFPolicy


class IdTokenizer:
    """Token ids as CJK characters: no id decodes to a newline, so no step ends early."""

    eos_token_id = None

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(0x4E00 + int(i)) for i in ids)


def make_model(vocab: int, hidden: int, layers: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=int(hidden * 2.6875), num_hidden_layers=layers,
                      num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, max_position_embeddings=4096,
                      bos_token_id=None, eos_token_id=None, pad_token_id=None)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def run_ours(model: LlamaForCausalLM, prompt: np.ndarray, args: argparse.Namespace, sharing: bool) -> dict:
    policy = HFPolicy(model, IdTokenizer(), max_step_tokens=args.step_tokens, seed=0, prefix_sharing=sharing)
    searcher = Searcher(policy.as_expand(), selection="beam", beam_width=args.beam, batch_size=args.beam, k=args.children,
                        temperature=1.0, num_solutions=None, max_steps=args.depth)  # fmt: skip
    cpu = time.process_time()
    result = searcher.search(prompt)
    cpu = time.process_time() - cpu
    assert result.stats.expanded == 1 + args.beam * (args.depth - 1), result.stats
    return dict(cpu_s=cpu, forwarded=policy.tokens_forwarded, calls=policy.forward_calls, expanded=result.stats.expanded,
                generated=policy.tokens_generated)  # fmt: skip


def compiled_copy(model: LlamaForCausalLM, what: str) -> LlamaForCausalLM:
    """A copy of ``model`` with each decoder layer's MLP (``mlp``) or the whole layer (``layers``) compiled."""
    out = copy.deepcopy(model)
    for i, layer in enumerate(out.model.layers):
        if what == "mlp":
            layer.mlp = torch.compile(layer.mlp, dynamic=True)
        else:
            out.model.layers[i] = torch.compile(layer, dynamic=True)
    return out


@torch.inference_mode()
def run_generate(model: LlamaForCausalLM, prompt: np.ndarray, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    beams = [torch.as_tensor(prompt, dtype=torch.long)]
    forwarded = calls = expanded = generated = 0
    cpu = time.process_time()
    for _ in range(args.depth):
        children = []
        for state in beams:
            out = model.generate(state[None], attention_mask=torch.ones(1, len(state), dtype=torch.long), do_sample=True,
                                 num_return_sequences=args.children, max_new_tokens=args.step_tokens, min_new_tokens=args.step_tokens,
                                 top_k=0, pad_token_id=0)  # fmt: skip
            children.extend(out)
            expanded += 1
            calls += args.step_tokens
            forwarded += args.children * (len(state) + args.step_tokens - 1)  # each return sequence is its own row
            generated += args.children * args.step_tokens
        beams = children[: args.beam]
    cpu = time.process_time() - cpu
    assert expanded == 1 + args.beam * (args.depth - 1)
    return dict(cpu_s=cpu, forwarded=forwarded, calls=calls, expanded=expanded, generated=generated)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depths", default="4,8")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--children", type=int, default=4)
    ap.add_argument("--step-tokens", type=int, default=24)
    ap.add_argument("--prompt-tokens", type=int, default=159)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", choices=("none", "mlp", "layers"), default="none")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = make_model(args.vocab, args.hidden, args.layers)
    params = sum(p.numel() for p in model.parameters())
    prompt = np.random.default_rng(0).integers(0, args.vocab, args.prompt_tokens).astype(np.int32)
    print(f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()} torch {torch.__version__}, "
          f"{args.threads} thread(s); Llama {params / 1e6:.1f}M params; beam {args.beam} x {args.children} children, "
          f"{args.step_tokens}-token steps, {args.prompt_tokens}-token prompt, {args.repeats} interleaved repeats")  # fmt: skip
    print("| depth | method | CPU s median [min, max] | tokens forwarded | model calls | CPU vs qstar_native |")
    print("|---|---|---|---|---|---|")
    for depth in map(int, args.depths.split(",")):
        args.depth = depth
        sides = {"qstar_native": lambda: run_ours(model, prompt, args, True), "recompute": lambda: run_ours(model, prompt, args, False),
                 "hf-generate": lambda: run_generate(model, prompt, args)}  # fmt: skip
        if args.compile != "none":
            compiled = compiled_copy(model, args.compile)
            start = time.perf_counter()
            run_ours(compiled, prompt, args, True)  # warm-up: compiles (dynamic shapes: once per new guard)
            print(f"torch.compile ({args.compile}) warm-up run at depth {depth}: {time.perf_counter() - start:.1f} s wall", flush=True)
            sides[f"compiled-{args.compile}"] = lambda: run_ours(compiled, prompt, args, True)
        runs: dict[str, list[dict]] = {k: [] for k in sides}
        run_ours(model, prompt, args, True)  # warm-up: oneDNN's kernel JIT for new shapes
        for _ in range(args.repeats):
            for name, fn in sides.items():
                runs[name].append(fn())
        base = statistics.median(r["cpu_s"] for r in runs["qstar_native"])
        for name, rs in runs.items():
            cpus = [r["cpu_s"] for r in rs]
            med = statistics.median(cpus)
            print(f"| {depth} | {name} | {med:.2f} [{min(cpus):.2f}, {max(cpus):.2f}] | {rs[0]['forwarded']} | {rs[0]['calls']} | {med / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
