"""A plain-Python model of the engine's frontier, de-duplication and budgets.

Written from the specification, independently of the C++ core, so the stateful property tests can
check that both agree on every pop, merge and prune.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INF = float("inf")


@dataclass
class ModelNode:
    parent: int
    depth: int
    tokens: tuple[int, ...]  # full state
    terminal: bool
    acc: float = 0.0
    g: float = 0.0
    h: float = 0.0
    f: float = 0.0
    reward: float = 0.0
    status: str = "open"


def extend(agg: str, parent_acc: float, parent_depth: int, r: float) -> float:
    if agg == "zero":
        return 0.0
    if parent_depth == 0:
        return r
    return {
        "min": lambda: min(parent_acc, r),
        "max": lambda: max(parent_acc, r),
        "sum": lambda: parent_acc + r,
        "mean": lambda: parent_acc + r,
        "product": lambda: parent_acc * r,
        "last": lambda: r,
    }[agg]()


def value(agg: str, acc: float, depth: int) -> float:
    if depth == 0:
        return 0.0
    return acc / depth if agg == "mean" else acc


@dataclass
class EngineModel:
    lam: float = 1.0
    aggregate: str = "min"
    num_solutions: int = 1
    max_expansions: float = INF
    max_nodes: float = INF
    max_depth: float = INF
    max_tokens: float = INF
    frontier_capacity: float = INF
    nodes: list[ModelNode] = field(default_factory=list)
    states: dict[tuple[int, ...], int] = field(default_factory=dict)
    solutions: list[int] = field(default_factory=list)
    stop: str = "running"
    expanded: int = 0
    merged: int = 0
    reopened: int = 0
    pruned_depth: int = 0
    pruned_capacity: int = 0
    dropped: int = 0
    tokens: int = 0

    def rank(self, i: int) -> tuple[float, int]:
        return (-self.nodes[i].f, i)

    def with_status(self, status: str) -> list[int]:
        return sorted((i for i, n in enumerate(self.nodes) if n.status == status), key=self.rank)

    def add_root(self, tokens: tuple[int, ...]) -> int:
        self.nodes.append(ModelNode(parent=-1, depth=0, tokens=tokens, terminal=False))
        self.states[tokens] = 0
        return 0

    def select(self, k: int) -> list[int]:
        out: list[int] = []
        if self.stop != "running":
            return out
        while len(out) < k:
            frontier = self.with_status("open")
            if not frontier:
                break
            top = frontier[0]
            n = self.nodes[top]
            if n.terminal:
                selected = self.with_status("selected")
                if selected and self.rank(selected[0]) < self.rank(top):
                    break
                n.status = "solution"
                self.solutions.append(top)
                if len(self.solutions) >= self.num_solutions:
                    self.stop = "solutions"
                    break
                continue
            if self.expanded + len(self.with_status("selected")) >= self.max_expansions:
                break
            n.status = "selected"
            out.append(top)
        if not out and not self.with_status("selected") and self.stop == "running":
            self.stop = "exhausted" if not self.with_status("open") else "max_expansions"
        return out

    def expand(self, parent: int, children: list[tuple[tuple[int, ...], float, float, bool]]) -> list[int]:
        p = self.nodes[parent]
        p.status = "expanded"
        self.expanded += 1
        landed = []
        for step, reward, q, terminal in children:
            if self.stop not in ("running", "solutions"):
                self.dropped += 1
                landed.append(-1)
                continue
            landed.append(self._insert(parent, step, reward, q, terminal))
        while len(self.with_status("open")) > self.frontier_capacity:
            worst = self.with_status("open")[-1]
            self.nodes[worst].status = "pruned"
            self.pruned_capacity += 1
        self._update_stop()
        return landed

    def _insert(self, parent: int, step: tuple[int, ...], reward: float, q: float, terminal: bool) -> int:
        p = self.nodes[parent]
        full = p.tokens + step
        if full in self.states:
            self.merged += 1
            existing = self.states[full]
            self._merge(existing, parent, reward, q)
            return existing
        if len(self.nodes) >= self.max_nodes:
            self.dropped += 1
            self.stop = "max_nodes"
            return -1
        if self.tokens + len(step) > self.max_tokens:
            self.dropped += 1
            self.stop = "max_tokens"
            return -1
        acc = extend(self.aggregate, p.acc, p.depth, reward)
        g = value(self.aggregate, acc, p.depth + 1)
        node = ModelNode(parent, p.depth + 1, full, terminal, acc, g, q, g + self.lam * q, reward)
        self.nodes.append(node)
        self.tokens += len(step)
        nid = len(self.nodes) - 1
        self.states[full] = nid
        if not terminal and node.depth >= self.max_depth:
            node.status = "pruned"
            self.pruned_depth += 1
        return nid

    def _merge(self, existing: int, parent: int, reward: float, q: float) -> None:
        e, p = self.nodes[existing], self.nodes[parent]
        acc = extend(self.aggregate, p.acc, p.depth, reward)
        depth = p.depth + 1
        g = value(self.aggregate, acc, depth)
        if not (g > e.g and e.status in ("open", "selected", "expanded")):
            return
        if not (e.terminal or depth < self.max_depth):
            return
        e.parent, e.depth, e.reward, e.acc, e.g, e.h = parent, depth, reward, acc, g, q
        e.f = g + self.lam * q
        self.tokens += len(e.tokens) - len(p.tokens)
        if e.status == "expanded":
            self.reopened += 1
            e.status = "open"

    def _update_stop(self) -> None:
        if self.stop != "running":
            return
        frontier, selected = self.with_status("open"), self.with_status("selected")
        if not frontier and not selected:
            self.stop = "exhausted"
        elif not selected and self.expanded >= self.max_expansions:
            if not frontier or not self.nodes[frontier[0]].terminal:
                self.stop = "max_expansions"
