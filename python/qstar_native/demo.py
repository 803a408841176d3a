"""A self-contained example search: GSM-Symbolic problems with a scripted, error-prone proposer.

There is no trained model yet, so the "policy" is scripted: at each state it proposes the next
line of the problem's worked solution together with corrupted copies whose ``<<expr=value>>``
results are wrong, in a seeded random order. Greedy decoding takes the first proposal; A* ranks
states by g = min over steps of the annotation-checking process reward. Tokens are UTF-8 bytes.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass

from .searcher import Searcher
from .tasks import GsmSymbolic, Problem, annotation_reward
from .types import Child, Node

_ANNOTATION = re.compile(r"<<([^=<>]*)=([^<>]*)>>(\S*)")


def encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def decode(tokens) -> str:
    return bytes(int(t) for t in tokens).decode("utf-8", errors="replace")


def corrupt(step: str, rng: random.Random) -> str | None:
    """The step with its first annotation's result changed (text and annotation alike)."""
    m = _ANNOTATION.search(step)
    if m is None:
        return None
    wrong = str(rng.choice([2, 3, 5, 10, -1, -2]) + int(float(m.group(2)))) if m.group(2) else "0"
    return step[: m.start()] + f"<<{m.group(1)}={wrong}>>{wrong}" + step[m.end():]


@dataclass
class ScriptedProposer:
    """Proposes the true next line plus ``num_wrong`` corrupted ones, shuffled by ``seed``."""

    problems: list[Problem]
    num_wrong: int = 2
    seed: int = 0

    def propose(self, problem: int, depth: int, derailed: bool) -> list[str]:
        """Candidate next lines; once a wrong result was written, the final answer is wrong too."""
        steps = self.problems[problem].steps or ()
        rng = random.Random(f"{self.seed}:{problem}:{depth}")
        true_step = steps[depth]
        if derailed and depth == len(steps) - 1:
            return [f"#### {self.problems[problem].answer}1"]
        wrong = [corrupt(true_step, rng) for _ in range(self.num_wrong)]
        options = [true_step] + [w for w in wrong if w is not None and w != true_step]
        rng.shuffle(options)
        return options

    def expand(self, nodes: list[Node]) -> list[list[Child]]:
        out = []
        for node in nodes:
            steps = self.problems[node.problem].steps or ()
            derailed = any(annotation_reward(decode(s)) < 0 for s in node.steps)
            out.append([
                Child(encode(s + "\n"), reward=annotation_reward(s), terminal=node.depth + 1 == len(steps))
                for s in self.propose(node.problem, node.depth, derailed)
            ])
        return out


def final_answer_correct(task: GsmSymbolic, problem: Problem, steps_text: list[str]) -> bool:
    return task.is_correct(problem, "".join(steps_text))


def run_demo(num_problems: int = 30, seed: int = 0, num_wrong: int = 2) -> str:
    """Runs greedy and A* on the same problems and returns a printable table."""
    task = GsmSymbolic()
    problems = list(task.problems(range(seed, seed + 1)))[:num_problems]
    proposer = ScriptedProposer(problems, num_wrong=num_wrong, seed=seed)
    roots = [encode(p.question + "\n") for p in problems]

    t0 = time.perf_counter()
    greedy_ok = 0
    for i, p in enumerate(problems):
        text: list[str] = []
        for d in range(len(p.steps or ())):
            derailed = any(annotation_reward(t) < 0 for t in text)
            text.append(proposer.propose(i, d, derailed)[0] + "\n")
        greedy_ok += final_answer_correct(task, p, text)
    greedy_s = time.perf_counter() - t0

    searcher = Searcher(proposer.expand, aggregate="min", lam=1.0, batch_size=1)
    results = searcher.search_many(roots)
    astar_ok = sum(
        final_answer_correct(task, p, [decode(s) for s in r.best.steps]) if r.best else False
        for p, r in zip(problems, results)
    )
    expanded = sum(r.stats.expanded for r in results)
    engine_ms = 1000 * sum(r.stats.engine_seconds for r in results)
    n = len(problems)
    lines = [
        f"GSM-Symbolic, {n} problems (seed {seed}); scripted proposer: 1 true + {num_wrong} corrupted steps per state",
        f"{'method':<10} {'accuracy':>9} {'expanded':>9} {'engine ms':>10}",
        f"{'greedy':<10} {greedy_ok / n:>9.1%} {sum(len(p.steps or ()) for p in problems):>9} {1000 * greedy_s:>10.1f}",
        f"{'A*':<10} {astar_ok / n:>9.1%} {expanded:>9} {engine_ms:>10.1f}",
        "",
        "Best A* path of problem 0:",
        decode(roots[0]).strip(),
    ]
    best = results[0].best
    if best is not None:
        lines += [f"  [R={r:+.1f}] {decode(s).strip()}" for r, s in zip(best.rewards, best.steps)]
    return "\n".join(lines)
