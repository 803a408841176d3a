"""Search-tree pictures (qstar_native.render): the SVG parses and holds one mark per node and one
edge per non-root node, the chosen path and only it is highlighted, tooltips round-trip hostile
text, the layout is a tidy tree (networkx as the oracle), the HTML page and DOT text hold what they
should, and bad trees, paths and file names raise with a clear message."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from itertools import pairwise
from typing import ClassVar

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from qstar_native.render import (
    NODE_SPACING,
    DrawNode,
    layout,
    to_dot,
    to_html,
    to_svg,
    write_tree,
)

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = 'He pays 3*4 = <<3*4=12>>12 & "tips" \'x\' \\n \\ <b>]]>'
INF = float("inf")


def tree(parents: dict[int, int], texts: dict[int, str] | None = None) -> list[DrawNode]:
    """Node id -> parent id; the last id is a terminal solution, the rest expanded."""
    last = max(parents)
    return [DrawNode(i, p, (texts or {}).get(i, f"step {i}: {HOSTILE}"), f=i / 10, g=-float(i % 2), h=0.5,
                     reward=0.25 * i, status="solution" if i == last else "expanded", terminal=i == last)
            for i, p in parents.items()]


SMALL = tree({0: -1, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 5})
CHOSEN = [0, 2, 5, 6]


def classes(el: ET.Element) -> set[str]:
    return set((el.get("class") or "").split())


def svg_parts(svg: str) -> tuple[dict[int, ET.Element], dict[tuple[int, int], ET.Element], dict[int, str]]:
    """Parsed SVG -> node marks by id, edges by (parent, child), tooltip text by id."""
    root = ET.fromstring(svg)
    marks, tips = {}, {}
    for g in root.iter(f"{NS}g"):
        if (g.get("id") or "").startswith("n"):
            (mark,) = [m for m in g if m.tag in (f"{NS}circle", f"{NS}rect")]
            assert "node" in classes(mark)
            marks[int(g.get("id")[1:])] = mark
            tips[int(g.get("id")[1:])] = g.find(f"{NS}title").text
    all_marks = [m for tag in ("circle", "rect") for m in root.iter(f"{NS}{tag}") if "node" in classes(m)]
    assert len(all_marks) == len(marks)  # no node mark outside a node group
    edges = {}
    for line in root.iter(f"{NS}line"):
        if "edge" in classes(line):
            p, c = map(int, line.get("id")[1:].split("-"))
            assert (p, c) not in edges
            edges[p, c] = line
    assert not [p for p in root.iter(f"{NS}path") if "edge" in classes(p)]  # edges are <line>s only
    return marks, edges, tips


def test_svg_has_one_mark_per_node_one_edge_per_child_and_highlights_only_the_path():
    marks, edges, _ = svg_parts(to_svg(SMALL, chosen=CHOSEN, title="Q & <A>"))
    assert set(marks) == {n.id for n in SMALL}
    assert set(edges) == {(n.parent, n.id) for n in SMALL if n.parent != -1}
    for i, m in marks.items():
        assert ("chosen" in classes(m)) == (i in CHOSEN)
        assert (m.get("stroke") == "#d62728") == (i in CHOSEN)
    path_edges = set(pairwise(CHOSEN))
    for e, line in edges.items():
        assert ("chosen" in classes(line)) == (e in path_edges)
        assert (line.get("stroke") == "#d62728") == (e in path_edges)
    assert marks[6].tag == f"{NS}rect" and marks[1].tag == f"{NS}circle"  # terminal drawn as a box
    assert {n.status for n in SMALL} <= {next(iter(classes(m) - {"node", "chosen", "terminal"})) for m in marks.values()}


def test_svg_tooltips_round_trip_text_and_scores():
    nodes = tree({0: -1, 1: 0, 2: 1}, texts={0: "Q: <<2*3=6>> & \"x\"", 1: "a\r\nb\tc <<2*3=6>>6 &amp;", 2: ""})
    _, _, tips = svg_parts(to_svg(nodes))
    for n in nodes:
        text, scores = tips[n.id].rsplit("\n", 1)
        assert text == n.text
        assert scores.startswith(f"f={n.f:.2f} g={n.g:.2f} h={n.h:.2f} reward={n.reward:.2f} status={n.status}")
    assert svg_parts(to_svg(SMALL, title="<x>"))[2][3].startswith(f"step 3: {HOSTILE}\n")


@given(st.text(max_size=40))
def test_any_text_round_trips_or_becomes_the_replacement_character(text):
    nodes = [DrawNode(0, -1, text, 0.0, 0.0, 0.0, 0.0, "open")]
    svg_tip = svg_parts(to_svg(nodes, title=text))[2][0].rsplit("\n", 1)[0]
    assert len(svg_tip) == len(text)
    for a, b in zip(svg_tip, text):
        assert a == b or a == "\ufffd"
    assert ET.fromstring(to_svg(nodes)) is not None


@st.composite
def random_trees(draw) -> tuple[dict[int, int], nx.DiGraph]:
    """A random tree with scrambled ids (not in parent-before-child order) and its networkx twin."""
    n = draw(st.integers(1, 60))
    parents = [-1] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
    ids = draw(st.permutations(range(100, 100 + n)))
    tree_map = {ids[i]: (ids[p] if p >= 0 else -1) for i, p in enumerate(parents)}
    g = nx.DiGraph()
    g.add_nodes_from(tree_map)
    g.add_edges_from(sorted((p, c) for c, p in tree_map.items() if p != -1))  # successors in id order
    return tree_map, g


@given(random_trees())
def test_layout_is_a_tidy_layered_tree(case):
    parents, g = case
    nodes = tree(parents)
    pos = layout(nodes)
    root = next(c for c, p in parents.items() if p == -1)
    depth = nx.shortest_path_length(g, root)
    for c, p in parents.items():
        if p != -1:
            assert pos[c][1] > pos[p][1]
    for u, v in [(u, v) for u in pos for v in pos if depth[u] == depth[v]]:
        assert pos[u][1] == pos[v][1]
        assert u == v or abs(pos[u][0] - pos[v][0]) >= NODE_SPACING - 1e-9
    for p in g:
        xs = [pos[c][0] for c in g.successors(p)]
        if xs:
            assert pos[p][0] == pytest.approx((min(xs) + max(xs)) / 2)
    leaves = [v for v in nx.dfs_preorder_nodes(g, root) if g.out_degree(v) == 0]
    assert [pos[v][0] for v in leaves] == sorted(pos[v][0] for v in leaves)
    marks, edges, _ = svg_parts(to_svg(nodes))
    assert len(marks) == g.number_of_nodes() and set(edges) == set(g.edges)


@given(st.lists(st.integers(-1, 7), min_size=1, max_size=8))
def test_validation_accepts_exactly_the_trees(raw):
    parents = dict(enumerate(raw))  # arbitrary parent links among ids 0..7: maybe missing, 0 or 2 roots, cycles
    g = nx.DiGraph()
    g.add_nodes_from(parents)
    g.add_edges_from((p, c) for c, p in parents.items() if p != -1)
    ok = set(g) == set(parents) and nx.is_arborescence(g)
    try:
        to_dot(tree(parents))
    except ValueError:
        assert not ok
    else:
        assert ok


@pytest.mark.parametrize("shape", ["chain", "star"])
def test_large_trees_render_in_one_pass(shape):
    n = 5000
    parents = {i: (i - 1 if shape == "chain" else 0) for i in range(n)}
    parents[0] = -1
    nodes = tree(parents)
    svg = to_svg(nodes, chosen=[0, 1])  # a 5000-deep chain must not hit the recursion limit
    root = ET.fromstring(svg)
    width = float(root.get("width"))
    assert width >= (n - 1) * NODE_SPACING if shape == "star" else width < 1000
    assert svg.count('class="node') == n and len(to_dot(nodes).splitlines()) == 2 * n + 3


class StrictHTML(HTMLParser):
    """Collects tags and table rows; fails on end tags that do not close the open element."""

    VOID: ClassVar[set[str]] = {"meta", "br", "img", "line", "circle", "rect"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.rows: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("td", "th"):
            self.rows[-1][-1] += data


def test_html_page_is_self_contained_and_tables_the_chosen_path():
    page = to_html(SMALL, chosen=CHOSEN, title="Q <x> & y")
    p = StrictHTML()
    p.feed(page)
    p.close()
    assert p.stack == []
    assert p.tags.count("svg") == 1 and p.tags.count("table") == 1
    assert "script" not in p.tags and "link" not in p.tags and "src=" not in page
    assert "<title>Q &lt;x&gt; &amp; y</title>" in page
    header, *body = p.rows
    assert header == ["depth", "step", "reward", "g", "h", "f"]
    by_id = {n.id: n for n in SMALL}
    assert body == [[str(d), by_id[i].text, f"{by_id[i].reward:.2f}", f"{by_id[i].g:.2f}", f"{by_id[i].h:.2f}",
                     f"{by_id[i].f:.2f}"] for d, i in enumerate(CHOSEN)]
    svg = page[page.index("<svg"):page.index("</svg>") + 6]
    assert len(svg_parts(svg)[0]) == len(SMALL)  # the inline SVG is the tree's


def test_html_without_a_chosen_path_has_an_empty_table():
    p = StrictHTML()
    p.feed(to_html(SMALL))
    assert len(p.rows) == 1


DOT_STR = r'"((?:[^"\\]|\\.)*)"'


def dot_unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), s)


def test_dot_has_each_node_and_edge_once_and_escapes_labels():
    texts = {i: f"say \"hi\" \\ {i}\nnext line" for i in range(7)}
    texts[6] = "x" * 100
    nodes = tree({0: -1, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 5}, texts)
    dot = to_dot(nodes, chosen=CHOSEN, title='T "1"')
    assert dot.startswith("digraph search {\n") and dot.endswith("}\n")
    assert 'label="T \\"1\\""' in dot
    for n in nodes:
        (stmt,) = re.findall(rf"^  n{n.id} \[label={DOT_STR}(.*)\];$", dot, re.MULTILINE)
        label = dot_unescape(stmt[0])
        want = " ".join(n.text.split())
        assert label == (want if len(want) <= 60 else want[:57] + "...") + f"\nf={n.f:.2f} g={n.g:.2f} h={n.h:.2f}"
        assert ("penwidth=3" in stmt[1]) == (n.id in CHOSEN)
        if n.parent != -1:
            (attrs,) = re.findall(rf"^  n{n.parent} -> n{n.id}( \[.*\])?;$", dot, re.MULTILINE)
            assert ("penwidth=3" in attrs) == ((n.parent, n.id) in set(pairwise(CHOSEN)))
    assert len(re.findall(r"^  n\d+ \[", dot, re.MULTILINE)) == len(nodes)
    assert len(re.findall(r"->", dot)) == len(nodes) - 1
    assert 'say \\"hi\\" \\\\ 1 next line\\nf=' in dot


def test_infinite_scores_print_as_text_and_nan_is_rejected():
    nodes = [DrawNode(0, -1, "r", 0, 0, 0, 0, "expanded"), DrawNode(1, 0, "a", -INF, -INF, INF, -1, "pruned")]
    _, _, tips = svg_parts(to_svg(nodes))
    assert tips[1].endswith("f=-inf g=-inf h=inf reward=-1.00 status=pruned")
    assert ">-inf</text>" in to_svg(nodes) and "f=-inf g=-inf h=inf" in to_dot(nodes)
    assert "<td>-inf</td>" in to_html(nodes, chosen=[0, 1])
    with pytest.raises(ValueError, match="node 1 has a NaN"):
        to_svg([nodes[0], DrawNode(1, 0, "a", 0, math.nan, 0, 0, "open")])


def test_single_node_tree():
    (node,) = tree({0: -1})
    marks, edges, _ = svg_parts(to_svg([node], chosen=[0]))
    assert list(marks) == [0] and edges == {} and "chosen" in classes(marks[0])
    assert layout([node])[0][0] > 0


@pytest.mark.parametrize("suffix, start", [(".html", "<!DOCTYPE html>"), (".HTM", "<!DOCTYPE html>"),
                                           (".svg", "<?xml"), (".dot", "digraph"), (".gv", "digraph")])
def test_write_tree_picks_the_format_from_the_suffix(tmp_path, suffix, start):
    out = write_tree(SMALL, str(tmp_path / f"t{suffix}"), chosen=CHOSEN, title="q")
    assert out == tmp_path / f"t{suffix}" and out.read_text(encoding="utf-8").startswith(start)


def test_write_tree_rejects_bad_paths_and_writes_nothing_for_bad_trees(tmp_path):
    with pytest.raises(ValueError, match=r"path .*t\.png.* suffix '\.png'; use one of \.html, \.htm, \.svg, \.dot, \.gv"):
        write_tree(SMALL, tmp_path / "t.png")
    with pytest.raises(ValueError, match="suffix ''"):
        write_tree(SMALL, tmp_path / "tree")
    with pytest.raises(FileNotFoundError, match=r"path .*missing.*does not exist; create it first"):
        write_tree(SMALL, tmp_path / "missing" / "t.svg")
    with pytest.raises(ValueError, match="chosen"):
        write_tree(SMALL, tmp_path / "t.svg", chosen=[0, 3])
    assert not (tmp_path / "t.svg").exists()


R = DrawNode(0, -1, "r", 0, 0, 0, 0, "expanded")


@pytest.mark.parametrize("nodes, chosen, message", [
    ([], (), r"nodes is empty: pass at least the root"),
    ([*SMALL, SMALL[1]], (), r"nodes: id 1 appears more than once"),
    ([*SMALL, DrawNode(9, 42, "x", 0, 0, 0, 0, "open")], (), r"node 9 has parent 42, which is not among the nodes"),
    ([*SMALL, DrawNode(9, -1, "x", 0, 0, 0, 0, "open")], (), r"exactly one root \(parent=-1\), found 2"),
    ([DrawNode(1, 2, "a", 0, 0, 0, 0, "open"), DrawNode(2, 1, "b", 0, 0, 0, 0, "open")], (), r"exactly one root .* found 0"),
    ([R, DrawNode(1, 2, "a", 0, 0, 0, 0, "open"), DrawNode(2, 1, "b", 0, 0, 0, 0, "open")], (), r"cycle; ids \[1, 2\]"),
    ([R, DrawNode(1, 1, "a", 0, 0, 0, 0, "open")], (), r"cycle; ids \[1\]"),
    ([R, DrawNode(1, 0, "a", 0, 0, 0, 0, "done")], (), r"status 'done'; use one of open, selected"),
    ([R, DrawNode(-5, 0, "a", 0, 0, 0, 0, "open")], (), r"id -5 is negative"),
    ([R, DrawNode(1, 0, "a", 0, 0, math.nan, 0, "open")], (), r"NaN"),
    (SMALL, [0, 7], r"chosen: id 7 is not in the tree"),
    (SMALL, [0, 3], r"chosen id 3 is not a child of 0; pass a root-to-node path"),
    (SMALL, [2, 5], r"chosen must start at the root 0"),
    (SMALL, [0, 2, 2], r"chosen id 2 is not a child of 2"),
])
def test_bad_input_is_rejected_by_every_format(nodes, chosen, message):
    for render in (to_svg, to_html, to_dot):
        with pytest.raises(ValueError, match=message):
            render(nodes, chosen=chosen)


def test_nodes_must_be_draw_nodes():
    with pytest.raises(TypeError, match="nodes must hold DrawNode objects, got tuple"):
        to_svg([(0, -1, "r", 0, 0, 0, 0, "open")])  # type: ignore[list-item]


# ---- readability: title, labels, step text, counts


def test_a_long_title_wraps_instead_of_being_clipped():
    from qstar_native.render import TITLE_CHAR_WIDTH, TITLE_LINES

    title = "Ella receives 50 emails a day. 16% of those emails don't require any response. She responds to the rest. " * 2
    root = ET.fromstring(to_svg(SMALL, chosen=CHOSEN, title=title))
    (text,) = [t for t in root.iter(f"{NS}text") if "title" in classes(t)]
    lines = [s.text for s in text.iter(f"{NS}tspan")]
    assert 1 < len(lines) <= TITLE_LINES and " ".join(lines) == " ".join(title.split())
    width = float(root.get("width"))
    assert all(len(line) * TITLE_CHAR_WIDTH <= width - 2 * 30 for line in lines)
    ys = [float(s.get("y")) for s in text.iter(f"{NS}tspan")]
    marks = svg_parts(ET.tostring(root, encoding="unicode"))[0]
    assert ys == sorted(ys) and min(float(m.get("cy", m.get("y", 0))) for m in marks.values()) - 9 > ys[-1]  # the tree starts below it
    very_long = to_svg(SMALL, title="word " * 5000)
    assert len(list(ET.fromstring(very_long).iter(f"{NS}tspan"))) == TITLE_LINES and "…" in very_long


def label_boxes(root: ET.Element) -> list[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) around every text under a node (f and step), generously: 6 px a character, 10 px high."""
    boxes = []
    for g in root.iter(f"{NS}g"):
        if (g.get("id") or "").startswith("n"):
            for t in g.iter(f"{NS}text"):
                x, y, w = float(t.get("x")), float(t.get("y")), 6.0 * len(t.text or "")
                boxes.append((x - w / 2, y - 10, x + w / 2, y + 2))
    return boxes


def crosses(line: ET.Element, box: tuple[float, float, float, float]) -> bool:
    """Whether the segment meets the box (Liang-Barsky clipping)."""
    x1, y1, x2, y2 = (float(line.get(k)) for k in ("x1", "y1", "x2", "y2"))
    lo, hi = 0.0, 1.0
    for p, q in ((-(x2 - x1), x1 - box[0]), (x2 - x1, box[2] - x1), (-(y2 - y1), y1 - box[1]), (y2 - y1, box[3] - y1)):
        if p == 0:
            if q < 0:
                return False
        elif p < 0:
            lo = max(lo, q / p)
        else:
            hi = min(hi, q / p)
    return lo <= hi


@given(random_trees())
def test_no_edge_crosses_a_label(case):
    parents, _ = case
    nodes = tree(parents)
    root = ET.fromstring(to_svg(nodes, chosen=[next(c for c, p in parents.items() if p == -1)]))
    boxes = label_boxes(root)
    for line in root.iter(f"{NS}line"):
        if "edge" in classes(line):
            assert not any(crosses(line, b) for b in boxes), line.get("id")


def test_each_node_shows_its_f_and_the_start_of_its_step():
    from qstar_native.render import STEP_CHARS, short_text

    nodes = tree({0: -1, 1: 0, 2: 0}, texts={0: "Q?", 1: "He pays 3*4 = <<3*4=12>>12 dollars.", 2: "#### 12\n"})
    root = ET.fromstring(to_svg(nodes))
    for n in nodes:
        g = next(g for g in root.iter(f"{NS}g") if g.get("id") == f"n{n.id}")
        f, step = [t.text for t in g.iter(f"{NS}text")]
        assert f == f"{n.f:.2f}" and step == short_text(n.text) and len(step) <= STEP_CHARS
        assert g.find(f"{NS}title").text.startswith(n.text)  # the whole step in the tooltip
    assert short_text(nodes[1].text) == "He pays 3…" and short_text(nodes[2].text) == "#### 12"


def test_html_counts_the_nodes_it_draws():
    page = to_html(SMALL, chosen=CHOSEN)
    (count,) = re.findall(r"<p>(\d+) nodes;", page)
    assert int(count) == len(SMALL) == page.count('class="node')
