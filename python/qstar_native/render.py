"""Pictures of a search tree: self-contained SVG and HTML, and Graphviz DOT.

Nodes are coloured by status, each labelled with its f; hovering (SVG ``<title>``) shows the step
text and f, g, h and reward. The chosen solution path is drawn thick and red. The layout is a
layered tidy tree computed here in linear time: y by depth, leaves spaced evenly in depth-first
order (children by id), every parent centred over its children. Non-finite numbers print as
``inf`` / ``-inf`` / ``nan`` (a pruned node may carry ``-inf``).

Example:
    >>> nodes = [DrawNode(0, -1, "Q?", 0.5, 0.0, 0.5, 0.0, "expanded"),
    ...          DrawNode(1, 0, "2+2 = <<2+2=4>>4", 0.9, 0.0, 0.9, 0.0, "solution", True)]
    >>> to_svg(nodes, chosen=[0, 1]).count('<circle cx="') - len(COLORS)  # minus the legend's
    2
    >>> print(to_dot(nodes, chosen=[0, 1]).splitlines()[0])
    digraph search {
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["DrawNode", "layout", "to_dot", "to_html", "to_svg", "write_tree"]

COLORS = {"open": "#ffffff", "selected": "#fff3b0", "expanded": "#9ecae1", "solution": "#74c476", "pruned": "#d9d9d9"}
_DX, _DY, _R, _PAD = 28, 56, 9, 30


@dataclass(frozen=True)
class DrawNode:
    """One node to draw: ``parent`` is -1 for the root; ``text`` is the step (the root: the question)."""

    id: int
    parent: int
    text: str
    f: float
    g: float
    h: float
    reward: float
    status: str
    terminal: bool = False


def _num(x: float) -> str:
    return f"{x:.2f}" if x == x and abs(x) != float("inf") else str(x)


def _children(nodes: Sequence[DrawNode], chosen: Sequence[int]) -> tuple[int, dict[int, list[int]]]:
    """Validates the tree and ``chosen``; returns the root id and each node's children by id."""
    if not nodes:
        raise ValueError("nodes is empty: a tree needs at least its root")
    ids = {n.id for n in nodes}
    if len(ids) != len(nodes):
        raise ValueError("nodes has duplicate ids; give each node a unique id")
    roots = [n.id for n in nodes if n.parent == -1]
    if len(roots) != 1:
        raise ValueError(f"nodes must have exactly one root (parent -1), found {len(roots)}")
    kids: dict[int, list[int]] = {n.id: [] for n in nodes}
    for n in nodes:
        if n.parent != -1:
            if n.parent not in ids:
                raise ValueError(f"node {n.id} has parent {n.parent}, which is not among the nodes")
            kids[n.parent].append(n.id)
        if any(v != v for v in (n.f, n.g, n.h, n.reward)):
            raise ValueError(f"node {n.id} has a NaN score; the engine never produces one, check the tree passed")
    for v in kids.values():
        v.sort()
    reached, stack = 0, [roots[0]]
    while stack:  # every node reachable from the root exactly once <=> no cycle
        reached += 1
        stack.extend(kids[stack.pop()])
    if reached != len(nodes):
        raise ValueError("nodes contain a cycle (some nodes are not reachable from the root)")
    if chosen:
        by_id = {n.id: n for n in nodes}
        unknown = [c for c in chosen if c not in by_id]
        if unknown:
            raise ValueError(f"chosen holds ids not in the tree: {unknown[:5]}")
        if chosen[0] != roots[0] or any(by_id[c].parent != p for p, c in zip(chosen, chosen[1:])):
            raise ValueError("chosen must be a path of parent -> child ids starting at the root")
    return roots[0], kids


def layout(nodes: Sequence[DrawNode]) -> dict[int, tuple[float, float]]:
    """``id -> (x, y)``: leaves ``_DX`` apart in depth-first order, parents centred over their
    children, ``_DY`` per depth level."""
    root, kids = _children(nodes, ())
    pos: dict[int, tuple[float, float]] = {}
    next_leaf = 0.0
    stack: list[tuple[int, int, bool]] = [(root, 0, False)]
    while stack:  # iterative post-order: deep trees must not hit the recursion limit
        node, depth, done = stack.pop()
        if not kids[node]:
            pos[node] = (_PAD + next_leaf, _PAD + 20 + depth * _DY)
            next_leaf += _DX
        elif done:
            xs = [pos[c][0] for c in kids[node]]
            pos[node] = ((min(xs) + max(xs)) / 2, _PAD + 20 + depth * _DY)
        else:
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in reversed(kids[node]))
    return pos


def to_svg(nodes: Sequence[DrawNode], *, chosen: Sequence[int] = (), title: str = "") -> str:
    """The tree as a standalone SVG document (see the module docstring)."""
    _children(nodes, chosen)
    pos = layout(nodes)
    on_path = set(chosen)
    path_edges = set(zip(chosen, chosen[1:]))
    width = max(x for x, _ in pos.values()) + _PAD + 120
    height = max(y for _, y in pos.values()) + _PAD + 10
    esc = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" font-family="sans-serif" font-size="9">']
    if title:
        out.append(f'<text x="{_PAD}" y="16" font-size="12">{esc(title[:160])}</text>')
    for n in nodes:  # edges first, so nodes paint over them
        if n.parent != -1:
            (x1, y1), (x2, y2) = pos[n.parent], pos[n.id]
            hot = (n.parent, n.id) in path_edges
            style = 'class="chosen" stroke="#d62728" stroke-width="3"' if hot else 'stroke="#999" stroke-width="1"'
            out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" {style}/>')
    for n in nodes:
        x, y = pos[n.id]
        hot = n.id in on_path
        stroke = 'class="chosen" stroke="#d62728" stroke-width="3"' if hot else 'stroke="#333" stroke-width="1"'
        tip = f"{n.text}\nf={_num(n.f)} g={_num(n.g)} h={_num(n.h)} reward={_num(n.reward)} status={n.status}{' terminal' if n.terminal else ''}"
        out.append(f'<g><title>{esc(tip)}</title><circle cx="{x:.1f}" cy="{y:.1f}" r="{_R}" fill="{COLORS.get(n.status, "#fff")}" {stroke}/>'
                   f'<text x="{x + _R + 2:.1f}" y="{y + 3:.1f}">{esc(_num(n.f))}</text></g>')
    lx = _PAD
    for status, color in COLORS.items():  # legend
        out.append(f'<circle cx="{lx}" cy="{height - 12:.0f}" r="5" fill="{color}" stroke="#333"/><text x="{lx + 8}" y="{height - 9:.0f}">{status}</text>')
        lx += 75
    out.append("</svg>")
    return "\n".join(out) + "\n"


def to_html(nodes: Sequence[DrawNode], *, chosen: Sequence[int] = (), title: str = "") -> str:
    """A standalone HTML page: the SVG, then the chosen path as a table."""
    svg = to_svg(nodes, chosen=chosen, title="")
    by_id = {n.id: n for n in nodes}
    rows = "\n".join(
        f"<tr><td>{d}</td><td>{html.escape(by_id[i].text)}</td><td>{_num(by_id[i].reward)}</td><td>{_num(by_id[i].g)}</td>"
        f"<td>{_num(by_id[i].h)}</td><td>{_num(by_id[i].f)}</td></tr>"
        for d, i in enumerate(chosen)
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>qstar search tree</title>'
        "<style>body{font-family:sans-serif;margin:1em} td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
        "table{border-collapse:collapse} .tree{overflow-x:auto}</style></head><body>\n"
        f"<h3>{html.escape(title)}</h3>\n<p>{len(nodes)} nodes; hover a node for its step and scores; the chosen path is red.</p>\n"
        f'<div class="tree">{svg}</div>\n<table><tr><th>depth</th><th>step</th><th>reward</th><th>g</th><th>h</th><th>f</th></tr>\n{rows}\n</table>\n'
        "</body></html>\n"
    )


def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(nodes: Sequence[DrawNode], *, chosen: Sequence[int] = (), title: str = "") -> str:
    """Graphviz DOT text (render with ``dot -Tsvg``); labels hold the step's start and f, g, h."""
    _children(nodes, chosen)
    on_path, path_edges = set(chosen), set(zip(chosen, chosen[1:]))
    lines = ["digraph search {", f"  label={_dot_str(title)};", '  node [shape=box, style=filled, fontsize=9];']
    for n in nodes:
        text = n.text.strip()
        short = text if len(text) <= 60 else text[:57] + "..."
        label = f"{short}\nf={_num(n.f)} g={_num(n.g)} h={_num(n.h)}"
        extra = ', color="#d62728", penwidth=3' if n.id in on_path else ""
        lines.append(f'  n{n.id} [label={_dot_str(label)}, fillcolor="{COLORS.get(n.status, "#ffffff")}"{extra}];')
    for n in nodes:
        if n.parent != -1:
            extra = ' [color="#d62728", penwidth=3]' if (n.parent, n.id) in path_edges else ""
            lines.append(f"  n{n.parent} -> n{n.id}{extra};")
    lines.append("}")
    return "\n".join(lines) + "\n"


_WRITERS = {".html": to_html, ".htm": to_html, ".svg": to_svg, ".dot": to_dot, ".gv": to_dot}


def write_tree(nodes: Sequence[DrawNode], path: str | os.PathLike[str], *, chosen: Sequence[int] = (), title: str = "") -> Path:
    """Writes the tree in the format of ``path``'s suffix (.html/.htm, .svg, .dot/.gv)."""
    out = Path(path)
    writer = _WRITERS.get(out.suffix.lower())
    if writer is None:
        raise ValueError(f"path {str(out)!r}: unknown suffix {out.suffix!r}; use one of {sorted(_WRITERS)}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"path {str(out)!r}: directory {str(out.parent)!r} does not exist; create it first")
    out.write_text(writer(nodes, chosen=chosen, title=title), encoding="utf-8")
    return out
