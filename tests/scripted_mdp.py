"""A scripted policy over a tiny tree MDP, with outcomes known by construction.

States are token arrays: the root ``[0]`` followed by one token per step. ``tree`` maps the texts
of the steps so far (a tuple) to the options there: (text, terminal). Each step text has its own
token id. Sampling is deterministic round-robin so labels are exactly predictable: sample j of a
node takes option ``(j + seed) % m``; samples of equal options are grouped with counts (like
HFPolicy). Temperature 0 takes option 0 with all k samples. It implements the Policy protocol:
``propose(batch) -> Steps`` (with per-node usage) and ``decode``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from qstar_native.batch import Batch, Steps
from qstar_native.scheduler import PolicyExpand

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

    def decode(self, ids) -> str:
        return "".join(self.text_of[int(t)] for t in np.asarray(ids).tolist() if int(t) != self.offset)

    def as_expand(self, scorer=None) -> PolicyExpand:
        return PolicyExpand(self, scorer)

    def propose(self, batch: Batch) -> Steps:
        if not isinstance(batch, Batch):
            batch = Batch.of_states(batch)
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("scripted crash")
        self.calls += 1
        self.batches.append(len(batch))
        counts_per_node, tokens, texts, logprob, terminal, count = [], [], [], [], [], []
        generated, forwarded = np.zeros(len(batch), np.int64), np.zeros(len(batch), np.int64)
        for i in range(len(batch)):
            state = batch.state(i)
            opts = self.tree.get(self.path(state), [])
            forwarded[i] = len(state)
            kk, temperature, seed = int(batch.k[i]), float(batch.temperature[i]), int(batch.seed[i])
            picks = [0] * kk if temperature == 0 else [(j + seed) % len(opts) for j in range(kk)] if opts else []
            groups: dict[int, int] = {}
            for p in picks:
                groups[p] = groups.get(p, 0) + 1
            counts_per_node.append(len(groups))
            for p, c in groups.items():
                text, term = opts[p]
                tokens.append(self.token_of[text])
                texts.append(text)
                logprob.append(-float(p))
                terminal.append(term)
                count.append(c)
                generated[i] += 1
                forwarded[i] += 1
        self.tokens_generated += int(generated.sum())
        self.tokens_forwarded += int(forwarded.sum())
        n = len(tokens)
        return Steps(np.array(counts_per_node, np.int64), np.array(tokens, np.int32), np.ones(n, np.int64), terminal=np.array(terminal, bool),
                     count=np.array(count, np.int64), logprob=np.array(logprob), texts=texts, generated=generated, forwarded=forwarded)


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
