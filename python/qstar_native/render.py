"""Pictures of a search tree: a self-contained SVG or HTML page, or Graphviz DOT text.

Each node is a mark (circle; a box when ``terminal``), filled by status (open: hollow, selected:
yellow, expanded: blue, solution: green, pruned: greyed out), with its f and the start of its step
text (:data:`STEP_CHARS` characters) written under it. Hovering a node (SVG ``<title>``) shows its
full step text and f, g, h, reward and status. Edges leave a node below its labels, so no line
crosses a label. The ``chosen`` path (root first) and only it is drawn thick red (class
``chosen``). The title wraps over as many lines as it needs (up to :data:`TITLE_LINES`). A small
legend sits below.

Layout (:func:`layout`, linear time, no recursion): y by depth; leaves :data:`NODE_SPACING`
apart in depth-first order with children by id; each parent centred over its children's x range.

Numbers: scores print with 2 decimals; ``inf`` / ``-inf`` are allowed (a pruned node may carry
one) and print as ``inf`` / ``-inf``; NaN is rejected. Text: characters XML cannot hold (control
characters other than tab/newline/CR, lone surrogates, U+FFFE/U+FFFF) become U+FFFD; everything
else round-trips through the escaping.

>>> nodes = [DrawNode(0, -1, "Q?", 0.5, 0.0, 0.5, 0.0, "expanded"),
...          DrawNode(1, 0, "2*3 = <<2*3=6>>6", 0.9, 0.0, 0.9, 1.0, "solution", terminal=True)]
>>> svg = to_svg(nodes, chosen=[0, 1])
>>> svg.count('class="node'), svg.count('class="edge chosen"')
(2, 1)
>>> "&lt;&lt;2*3=6&gt;&gt;" in svg
True
"""

from __future__ import annotations

import html
import math
import os
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

__all__ = ["DrawNode", "layout", "to_dot", "to_html", "to_svg", "write_tree"]

NODE_SPACING, LEVEL_HEIGHT, RADIUS, PAD = 56.0, 84.0, 9.0, 30.0
LABEL_DEPTH = RADIUS + 24.0
"""How far below a node's centre its labels (f, then the step's start) end and its edges begin."""
STEP_CHARS = 10
"""Characters of a step's text written under its node (the rest: "…", the full text in the tooltip)."""
TITLE_LINES, TITLE_LINE_HEIGHT, TITLE_CHAR_WIDTH = 8, 16.0, 7.0
RED = "#d62728"
# status -> (fill, stroke): open is hollow, pruned is greyed out.
STYLE = {"open": ("#ffffff", "#555555"), "selected": ("#fdd835", "#555555"), "expanded": ("#90caf9", "#555555"),
         "solution": ("#66bb6a", "#555555"), "pruned": ("#eeeeee", "#bbbbbb")}
# XML 1.0 cannot carry these at all, not even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class DrawNode:
    """One node to draw; ``parent`` is -1 for the root, whose ``text`` is the question."""

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
    return ("-inf" if x < 0 else "inf") if math.isinf(x) else f"{x:.2f}"


def _esc(s: str) -> str:
    """Escapes for XML/HTML text and attributes; CR as a reference since parsers fold a raw one."""
    return html.escape(_NOT_XML.sub("\ufffd", s)).replace("\r", "&#13;")


def _check(nodes: Sequence[DrawNode], chosen: Sequence[int]) -> tuple[int, dict[int, list[int]]]:
    """Validates the tree and ``chosen``; returns the root id and each node's children by id."""
    if not nodes:
        raise ValueError("nodes is empty: pass at least the root, a DrawNode with parent=-1")
    by_id: dict[int, DrawNode] = {}
    for n in nodes:
        if not isinstance(n, DrawNode):
            raise TypeError(f"nodes must hold DrawNode objects, got {type(n).__name__}")
        if n.id < 0:
            raise ValueError(f"nodes: id {n.id} is negative; ids must be >= 0 (-1 means 'no parent')")
        if n.id in by_id:
            raise ValueError(f"nodes: id {n.id} appears more than once; give each node a unique id")
        if n.status not in STYLE:
            raise ValueError(f"nodes: node {n.id} has status {n.status!r}; use one of {', '.join(STYLE)}")
        if any(math.isnan(v) for v in (n.f, n.g, n.h, n.reward)):
            raise ValueError(f"nodes: node {n.id} has a NaN score (f, g, h or reward); pass finite numbers or +-inf")
        by_id[n.id] = n
    roots = [n.id for n in nodes if n.parent == -1]
    if len(roots) != 1:
        raise ValueError(f"nodes must have exactly one root (parent=-1), found {len(roots)}: ids {roots[:5]}")
    kids: dict[int, list[int]] = {i: [] for i in by_id}
    for n in nodes:
        if n.parent != -1:
            if n.parent not in by_id:
                raise ValueError(f"nodes: node {n.id} has parent {n.parent}, which is not among the nodes; add it or fix the parent")
            kids[n.parent].append(n.id)
    for v in kids.values():
        v.sort()
    # Each node has one parent, so the walk from the root is a tree; anything it misses hangs off a cycle.
    seen, stack = {roots[0]}, [roots[0]]
    while stack:
        for c in kids[stack.pop()]:
            seen.add(c)
            stack.append(c)
    if len(seen) != len(by_id):
        lost = sorted(set(by_id) - seen)
        raise ValueError(f"nodes: parent links form a cycle; ids {lost[:5]} are not reachable from the root {roots[0]}")
    for i, c in enumerate(chosen):
        if c not in by_id:
            raise ValueError(f"chosen: id {c} is not in the tree; pass ids of nodes in nodes")
        want = -1 if i == 0 else chosen[i - 1]
        if by_id[c].parent != want:
            where = f"must start at the root {roots[0]}" if i == 0 else f"id {c} is not a child of {want}"
            raise ValueError(f"chosen {where}; pass a root-to-node path of parent -> child ids, root first")
    return roots[0], kids


def _layout(root: int, kids: dict[int, list[int]]) -> dict[int, tuple[float, float]]:
    pos: dict[int, tuple[float, float]] = {}
    leaf = 0
    stack: list[tuple[int, int, bool]] = [(root, 0, False)]
    while stack:  # iterative post-order: a deep chain must not hit the recursion limit
        node, depth, done = stack.pop()
        y = PAD + 24 + depth * LEVEL_HEIGHT
        if not kids[node]:
            pos[node] = (PAD + leaf * NODE_SPACING, y)
            leaf += 1
        elif done:  # children are contiguous in leaf order, so the first and last span them
            pos[node] = ((pos[kids[node][0]][0] + pos[kids[node][-1]][0]) / 2, y)
        else:
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in reversed(kids[node]))
    return pos


def layout(nodes: Sequence[DrawNode]) -> dict[int, tuple[float, float]]:
    """``id -> (x, y)`` of each node's centre in the SVG (see the module docstring).

    >>> layout([DrawNode(0, -1, "q", 0, 0, 0, 0, "expanded"), DrawNode(1, 0, "a", 0, 0, 0, 0, "open"),
    ...         DrawNode(2, 0, "b", 0, 0, 0, 0, "open")])
    {1: (30.0, 138.0), 2: (86.0, 138.0), 0: (58.0, 54.0)}
    """
    return _layout(*_check(nodes, ()))


def _mark(x: float, y: float, r: float, terminal: bool, attrs: str) -> str:
    if terminal:
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" {attrs}/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" {attrs}/>'


def short_text(text: str, limit: int = STEP_CHARS) -> str:
    """A step's text on one line, cut to ``limit`` characters with "…" (what a node shows).

    >>> short_text("  3 * 4 = <<3*4=12>>12\\n"), short_text("#### 5\\n")
    ('3 * 4 = <…', '#### 5')
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def title_lines(title: str, width: float) -> list[str]:
    """The title wrapped to the picture's width, at most :data:`TITLE_LINES` lines (the last
    ending in "…" when the title goes on)."""
    chars = max(30, int((width - 2 * PAD) / TITLE_CHAR_WIDTH))
    lines = textwrap.wrap(" ".join(title.split()), chars, break_long_words=True, break_on_hyphens=False)
    if len(lines) > TITLE_LINES:
        lines = lines[:TITLE_LINES]
        lines[-1] = lines[-1][: chars - 1] + "…"
    return lines


def _svg(nodes: Sequence[DrawNode], chosen: Sequence[int], title: str) -> str:
    pos = _layout(*_check(nodes, chosen))
    on_path, path_edges = set(chosen), set(pairwise(chosen))
    width = max(max(x for x, _ in pos.values()) + PAD, 560.0)  # at least the legend's width
    heading = title_lines(title, width) if title else []
    shift = TITLE_LINE_HEIGHT * max(0, len(heading) - 1)  # the tree goes below a title of several lines
    pos = {i: (x, y + shift) for i, (x, y) in pos.items()}
    legend_y = max(y for _, y in pos.values()) + LABEL_DEPTH + 16
    size = f'width="{width:.0f}" height="{legend_y + 20:.0f}" viewBox="0 0 {width:.0f} {legend_y + 20:.0f}"'
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" {size} font-family="sans-serif" font-size="9">']
    if heading:
        spans = "".join(f'<tspan x="{PAD:.0f}" y="{18 + i * TITLE_LINE_HEIGHT:.0f}">{_esc(line)}</tspan>' for i, line in enumerate(heading))
        out.append(f'<text class="title" font-size="13">{spans}</text>')
    edges = [n for n in nodes if n.parent != -1]
    # Highlighted edges last, so grey ones never paint over them. An edge runs from below the
    # parent's labels to the top of the child's mark: it crosses no label.
    for n in sorted(edges, key=lambda n: (n.parent, n.id) in path_edges):
        (x1, y1), (x2, y2) = pos[n.parent], pos[n.id]
        y1, y2 = y1 + LABEL_DEPTH, y2 - RADIUS
        hot = (n.parent, n.id) in path_edges
        style = f'class="edge chosen" stroke="{RED}" stroke-width="3"' if hot else 'class="edge" stroke="#999999" stroke-width="1"'
        out.append(f'<line id="e{n.parent}-{n.id}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" {style}/>')
    for n in nodes:
        (x, y), hot = pos[n.id], n.id in on_path
        fill, stroke = STYLE[n.status]
        cls = f"node {n.status}{' terminal' if n.terminal else ''}{' chosen' if hot else ''}"
        paint = f'fill="{fill}" stroke="{RED if hot else stroke}" stroke-width="{3 if hot else 1}"'
        tip = f"{n.text}\nf={_num(n.f)} g={_num(n.g)} h={_num(n.h)} reward={_num(n.reward)} status={n.status}"
        tip += " terminal" if n.terminal else ""
        fade = ' opacity="0.6"' if n.status == "pruned" else ""
        mark = _mark(x, y, RADIUS, n.terminal, f'class="{cls}" {paint}')
        out.append(f'<g id="n{n.id}"{fade}><title>{_esc(tip)}</title>{mark}'
                   f'<text class="f" x="{x:.1f}" y="{y + RADIUS + 10:.1f}" text-anchor="middle">{_num(n.f)}</text>'
                   f'<text class="step" x="{x:.1f}" y="{y + RADIUS + 20:.1f}" text-anchor="middle" font-size="8" fill="#444444">'
                   f'{_esc(short_text(n.text))}</text></g>')
    out.append('<g class="legend">')
    items = [(s, _mark(0, 0, 5, False, f'fill="{fl}" stroke="{st}"')) for s, (fl, st) in STYLE.items()]
    items += [("terminal", _mark(0, 0, 5, True, 'fill="#ffffff" stroke="#555555"')),
              ("chosen path", f'<line x1="-6" y1="0" x2="6" y2="0" stroke="{RED}" stroke-width="3"/>')]
    for i, (name, mark) in enumerate(items):
        out.append(f'<g transform="translate({PAD + i * 75:.0f},{legend_y:.0f})">{mark}<text x="9" y="3">{name}</text></g>')
    out.append("</g></svg>")
    return "\n".join(out) + "\n"


def to_svg(nodes: Sequence[DrawNode], *, chosen: Sequence[int] = (), title: str = "") -> str:
    """The tree as a standalone SVG document.

    >>> to_svg([DrawNode(0, -1, "Q & A?", 0.0, 0.0, 0.0, 0.0, "open")]).splitlines()[0]
    '<?xml version="1.0" encoding="UTF-8"?>'
    """
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + _svg(nodes, chosen, title)


def to_html(nodes: Sequence[DrawNode], *, chosen: Sequence[int] = (), title: str = "") -> str:
    """A standalone HTML page: the title, the SVG inline, then the chosen path as a table.

    >>> page = to_html([DrawNode(0, -1, "Q?", 1.0, 0.0, 1.0, 0.0, "expanded")], chosen=[0])
    >>> page.count("<tr><td>")
    1
    """
    svg = _svg(nodes, chosen, "")
    by_id = {n.id: n for n in nodes}
    rows = "\n".join(
        f"<tr><td>{d}</td><td class=\"step\">{_esc(by_id[i].text)}</td><td>{_num(by_id[i].reward)}</td>"
        f"<td>{_num(by_id[i].g)}</td><td>{_num(by_id[i].h)}</td><td>{_num(by_id[i].f)}</td></tr>"
        for d, i in enumerate(chosen))
    head = _esc(title) if title else "qstar search tree"
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{head}</title>\n'
        "<style>body{font-family:sans-serif;margin:1em} h1{font-size:1.2em;white-space:pre-wrap;overflow-wrap:anywhere}"
        " .tree{overflow-x:auto} table{border-collapse:collapse}"
        " td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top} .step{white-space:pre-wrap}</style>\n"
        f"</head><body>\n<h1>{head}</h1>\n<p>{len(nodes)} nodes; under each node its f and the start of its step; hover a node for "
        "the whole step and its scores; the chosen path is red.</p>\n"
        f'<div class="tree">\n{svg}</div>\n<h2>Chosen path</h2>\n'
        f"<table><tr><th>depth</th><th>step</th><th>reward</th><th>g</th><th>h</th><th>f</th></tr>\n{rows}\n</table>\n"
        "</body></html>\n")


def _dot_str(s: str) -> str:
    """A DOT quoted string: backslashes doubled (DOT labels treat ``\\n``, ``\\l``... as escapes)."""
    s = _NOT_XML.sub("\ufffd", s).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + s.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n") + '"'


def to_dot(nodes: Sequence[DrawNode], *, chosen: Sequence[int] = (), title: str = "") -> str:
    """Graphviz DOT text (render with ``dot -Tsvg``); labels hold the step's start and f, g, h.

    >>> print(to_dot([DrawNode(0, -1, 'say "hi"', 0.0, 0.0, 0.0, 0.0, "open")]).splitlines()[3])
      n0 [label="say \\"hi\\"\\nf=0.00 g=0.00 h=0.00", fillcolor="#ffffff", color="#555555"];
    """
    _check(nodes, chosen)
    on_path, path_edges = set(chosen), set(pairwise(chosen))
    lines = ["digraph search {", f"  label={_dot_str(title)}; labelloc=t;",
             "  node [shape=ellipse, style=filled, fontsize=9];"]
    for n in nodes:
        text = " ".join(n.text.split())  # one line: the full text lives in the SVG/HTML tooltips
        short = text if len(text) <= 60 else text[:57] + "..."
        label = f"{short}\nf={_num(n.f)} g={_num(n.g)} h={_num(n.h)}"
        fill, stroke = STYLE[n.status]
        extra = f'color="{RED}", penwidth=3' if n.id in on_path else f'color="{stroke}"'
        shape = ", shape=box" if n.terminal else ""
        lines.append(f'  n{n.id} [label={_dot_str(label)}, fillcolor="{fill}", {extra}{shape}];')
    for n in nodes:
        if n.parent != -1:
            extra = f' [color="{RED}", penwidth=3]' if (n.parent, n.id) in path_edges else ""
            lines.append(f"  n{n.parent} -> n{n.id}{extra};")
    lines.append("}")
    return "\n".join(lines) + "\n"


_WRITERS: dict[str, Callable[..., str]] = {".html": to_html, ".htm": to_html, ".svg": to_svg, ".dot": to_dot, ".gv": to_dot}


def write_tree(nodes: Sequence[DrawNode], path: str | os.PathLike[str], *, chosen: Sequence[int] = (),
               title: str = "") -> Path:
    """Writes the tree in the format named by ``path``'s suffix (.html/.htm, .svg, .dot/.gv).

    The parent directory must exist; nothing is written when the tree is invalid.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_tree([DrawNode(0, -1, "Q?", 0, 0, 0, 0, "open")], Path(d) / "t.dot").suffix
    '.dot'
    """
    out = Path(path)
    writer = _WRITERS.get(out.suffix.lower())
    if writer is None:
        raise ValueError(f"path {str(out)!r} has suffix {out.suffix!r}; use one of {', '.join(_WRITERS)}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"path {str(out)!r}: directory {str(out.parent)!r} does not exist; create it first")
    text = writer(nodes, chosen=list(chosen), title=title)  # render (and validate) before touching the file
    out.write_text(text, encoding="utf-8")
    return out
