"""A scripted step policy over a tiny tree MDP, with outcomes known by construction.

States are token arrays: the root ``[0]`` followed by one token per step. ``tree`` maps the texts
of the steps so far (a tuple) to the options there: (text, terminal). Each step text has its own
token id. Sampling is deterministic round-robin so labels are exactly predictable: sample j of a
state takes option ``(j + seed) % m``; samples of equal options are grouped with counts (like
HFPolicy). Temperature 0 takes option 0 with all k samples.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from qstar_native.protocols import Step, per_state

Tree = dict[tuple[str, ...], list[tuple[str, bool]]]

# The tree the label, baseline, evaluation and training tests share:
# root -> a | b;  a -> c | d(T);  a c -> e(T) | f(T);  b -> g(T) | h(T)
SMALL_TREE: Tree = {
    (): [("a", False), ("b", False)],
    ("a",): [("c", False), ("d", True)],
    ("a", "c"): [("e", True), ("f", True)],
    ("b",): [("g", True), ("h", True)],
}
SMALL_OUTCOMES = {"ace": 0.0, "acf": 1.0, "ad": 0.5, "bg": 0.3, "bh": 0.0}


class ScriptedPolicy:
    def __init__(self, tree: Tree, *, fail_after: int | None = None, token_offset: int = 0) -> None:
        self.tree = tree
        texts = sorted({t for opts in tree.values() for t, _ in opts})
        self.token_of = {t: i + 1 + token_offset for i, t in enumerate(texts)}
        self.text_of = {v: k for k, v in self.token_of.items()}
        self.offset = token_offset
        self.fail_after = fail_after
        self.calls = 0
        self.batches: list[int] = []
        self.tokens_generated = 0
        self.tokens_forwarded = 0

    def path(self, state: np.ndarray) -> tuple[str, ...]:
        assert int(state[0]) == self.offset, f"root token must be {self.offset}"
        return tuple(self.text_of[int(t)] for t in state[1:])

    def root(self) -> list[int]:
        return [self.offset]

    def propose(self, states: Sequence[np.ndarray], k: int | Sequence[int], *, temperature: float, seed: int) -> list[list[Step]]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("scripted crash")
        self.calls += 1
        self.batches.append(len(states))
        out = []
        for state, kk in zip(states, per_state(k, len(states))):
            opts = self.tree.get(self.path(np.asarray(state)), [])
            self.tokens_forwarded += len(state)
            if not opts:
                out.append([])
                continue
            picks = [0] * kk if temperature == 0 else [(j + seed) % len(opts) for j in range(kk)]
            counts: dict[int, int] = {}
            for p in picks:
                counts[p] = counts.get(p, 0) + 1
            steps = []
            for p, c in counts.items():
                text, terminal = opts[p]
                steps.append(Step(np.array([self.token_of[text]], dtype=np.int32), text, -float(p), terminal, c))
                self.tokens_generated += 1
                self.tokens_forwarded += 1
            out.append(steps)
        return out


class ScriptedTask:
    """Task over the scripted tree: the outcome of a completion is looked up by its text."""

    def __init__(self, outcomes: dict[str, float], answers: dict[str, str] | None = None, offset: int = 0) -> None:
        self.outcomes, self.answers, self.offset = outcomes, answers or {}, offset

    def problem_id(self, problem: Any) -> str:
        return str(problem)

    def root(self, problem: Any) -> list[int]:
        return [self.offset]

    def outcome(self, problem: Any, completion: str) -> float:
        return self.outcomes.get(completion, 0.0)

    def answer(self, completion: str) -> str | None:
        return self.answers.get(completion)


def true_q(tree: Tree, outcome, path: tuple[str, ...], text: str, terminal: bool, gamma: float = 1.0) -> float:
    """Oracle: Q*(path, step) = outcome if terminal else gamma * max over next steps (brute force)."""
    new = path + (text,)
    if terminal:
        return outcome("".join(new))
    opts = tree.get(new, [])
    if not opts:
        return outcome("".join(new))
    return gamma * max(true_q(tree, outcome, new, t, term, gamma) for t, term in opts)
