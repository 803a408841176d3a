"""A plain-Python model of the engine's frontier, de-duplication, budgets, beam levels and KV pins.

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
    max_steps: float = INF
    max_tokens: float = INF
    frontier_capacity: float = INF
    selection: str = "best_first"
    beam_width: float = INF
    level: int = 0
    pins: dict[int, int] = field(default_factory=dict)  # node -> KV pin handle it holds
    released: list[int] = field(default_factory=list)  # handles given back to the cache
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

    @property
    def beam(self) -> bool:
        return self.selection == "beam"

    def current(self) -> list[int]:
        """Open nodes select() may hand out (Beam: those of the current level)."""
        return [i for i in self.with_status("open") if not self.beam or self.nodes[i].depth == self.level]

    def next_level(self) -> list[int]:
        return [i for i in self.with_status("open") if self.beam and self.nodes[i].depth == self.level + 1]

    def frontier(self) -> list[int]:
        return self.current() + self.next_level()

    # ---- pins: held exactly while a node can still be expanded --------------------------------

    def release(self, handle: int) -> None:
        if handle >= 0:
            self.released.append(handle)

    def drop_pin(self, node: int) -> None:
        if node in self.pins:
            self.release(self.pins.pop(node))

    def adopt(self, node: int, handle: int) -> None:
        n = self.nodes[node]
        live = n.status in ("open", "selected") and not n.terminal and self.stop == "running"
        if handle >= 0 and live and node not in self.pins:
            self.pins[node] = handle
        else:
            self.release(handle)

    def set_stop(self, reason: str) -> None:
        self.stop = reason
        for node in list(self.pins):
            self.drop_pin(node)

    def add_root(self, tokens: tuple[int, ...]) -> int:
        self.nodes.append(ModelNode(parent=-1, depth=0, tokens=tokens, terminal=False))
        self.states[tokens] = 0
        return 0

    def select(self, k: int) -> list[int]:
        out: list[int] = []
        if self.stop != "running":
            return out
        while len(out) < k:
            frontier = self.current()
            if not frontier:
                break
            top = frontier[0]
            n = self.nodes[top]
            if n.terminal:
                selected = self.with_status("selected")
                if selected and self.rank(selected[0]) < self.rank(top):
                    break
                n.status = "solution"
                self.drop_pin(top)
                self.solutions.append(top)
                if len(self.solutions) >= self.num_solutions:
                    self.set_stop("solutions")
                    break
                continue
            if self.expanded + len(self.with_status("selected")) >= self.max_expansions:
                break
            n.status = "selected"
            out.append(top)
        if not out and not self.with_status("selected") and self.stop == "running":
            self.set_stop("exhausted" if not self.current() else "max_expansions")
        return out

    def expand(self, parent: int, children: list[tuple[tuple[int, ...], float, float, bool]], handles: list[int] | None = None) -> list[int]:
        p = self.nodes[parent]
        p.status = "expanded"
        self.drop_pin(parent)
        self.expanded += 1
        landed = []
        for i, (step, reward, q, terminal) in enumerate(children):
            handle = -1 if handles is None else handles[i]
            if self.stop not in ("running", "solutions"):
                self.dropped += 1
                self.release(handle)
                landed.append(-1)
                continue
            landed.append(self._insert(parent, step, reward, q, terminal, handle))
        while len(self.current()) > self.frontier_capacity:
            worst = self.current()[-1]
            self.nodes[worst].status = "pruned"
            self.drop_pin(worst)
            self.pruned_capacity += 1
        if self.beam and self.stop == "running" and not self.current() and not self.with_status("selected"):
            self._advance_level()
        self._update_stop()
        return landed

    def _advance_level(self) -> None:
        nxt = self.next_level()
        if not nxt:
            return
        self.level += 1
        keep = self.beam_width - len(self.solutions)
        for rank, i in enumerate(nxt):
            if rank < keep:
                if self.nodes[i].terminal:
                    self.nodes[i].status = "solution"
                    self.solutions.append(i)
            else:
                self.nodes[i].status = "pruned"
                self.drop_pin(i)
                self.pruned_capacity += 1
        if len(self.solutions) >= self.num_solutions:
            self.set_stop("solutions")

    def _insert(self, parent: int, step: tuple[int, ...], reward: float, q: float, terminal: bool, handle: int = -1) -> int:
        p = self.nodes[parent]
        full = p.tokens + step
        if full in self.states:
            self.merged += 1
            existing = self.states[full]
            if self._merge(existing, parent, reward, q):
                self.adopt(existing, handle)
            else:
                self.release(handle)
            return existing
        if len(self.nodes) >= self.max_nodes or self.tokens + len(step) > self.max_tokens:
            self.dropped += 1
            self.release(handle)
            self.set_stop("max_nodes" if len(self.nodes) >= self.max_nodes else "max_tokens")
            return -1
        acc = extend(self.aggregate, p.acc, p.depth, reward)
        g = value(self.aggregate, acc, p.depth + 1)
        node = ModelNode(parent, p.depth + 1, full, terminal, acc, g, q, g + self.lam * q, reward)
        self.nodes.append(node)
        self.tokens += len(step)
        nid = len(self.nodes) - 1
        self.states[full] = nid
        if not terminal and node.depth >= self.max_steps:
            node.status = "pruned"
            self.pruned_depth += 1
        self.adopt(nid, handle)
        return nid

    def _merge(self, existing: int, parent: int, reward: float, q: float) -> bool:
        e, p = self.nodes[existing], self.nodes[parent]
        acc = extend(self.aggregate, p.acc, p.depth, reward)
        depth = p.depth + 1
        g = value(self.aggregate, acc, depth)
        if self.beam:
            movable = e.status == "open" and e.depth == self.level + 1 and depth == self.level + 1
        else:
            movable = e.status in ("open", "selected", "expanded")
        if not (g > e.g and movable) or existing == parent or self._is_ancestor(existing, parent):
            return False
        if not (e.terminal or depth < self.max_steps):
            return False
        e.parent, e.depth, e.reward, e.acc, e.g, e.h = parent, depth, reward, acc, g, q
        e.f = g + self.lam * q
        self.tokens += len(e.tokens) - len(p.tokens)
        if e.status == "expanded":
            self.reopened += 1
            e.status = "open"
        return True

    def _is_ancestor(self, a: int, node: int) -> bool:
        while node != -1:
            if node == a:
                return True
            node = self.nodes[node].parent
        return False

    def _update_stop(self) -> None:
        if self.stop != "running":
            return
        frontier, selected = self.current(), self.with_status("selected")
        if not frontier and not selected and not self.next_level():
            self.set_stop("exhausted")
        elif not selected and self.expanded >= self.max_expansions:
            if not frontier or not self.nodes[frontier[0]].terminal:
                self.set_stop("max_expansions")
