"""Search-tree pictures: the SVG parses and holds one mark per node and edge, the chosen path and
only it is highlighted, tooltips round-trip hostile text, the layout is a tidy tree, and bad trees
or paths raise with a clear message."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qstar_native.render import _DX, DrawNode, layout, to_dot, to_html, to_svg, write_tree

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = 'He pays 3*4 = <<3*4=12>>12 & "tips" \\ <b>'


def tree(parents: list[int]) -> list[DrawNode]:
    """Node i has parent parents[i] (node 0 is the root)."""
    return [DrawNode(i, p, f"step {i} {HOSTILE}", f=i / 10, g=-float(i % 2), h=0.5, reward=0.0,
                     status=("solution" if i == len(parents) - 1 else "expanded"), terminal=i == len(parents) - 1)
            for i, p in enumerate(parents)]


SMALL = tree([-1, 0, 0, 1, 1, 2])  # chosen path 0 -> 2 -> 5
CHOSEN = [0, 2, 5]


def test_svg_marks_and_highlight():
    root = ET.fromstring(to_svg(SMALL, chosen=CHOSEN, title="Q & A"))
    circles = [c for c in root.iter(f"{SVG}circle") if c.get("r") != "5"]  # legend dots have r=5
    lines = list(root.iter(f"{SVG}line"))
    assert len(circles) == len(SMALL) and len(lines) == len(SMALL) - 1
    hot_circles = sum(c.get("class") == "chosen" for c in circles)
    hot_lines = sum(ln.get("class") == "chosen" for ln in lines)
    assert hot_circles == len(CHOSEN) and hot_lines == len(CHOSEN) - 1
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert len(titles) == len(SMALL)
    assert titles[3].startswith(f"step 3 {HOSTILE}\nf=0.30 g=-1.00 h=0.50")


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=0, max_size=60))
def test_layout_is_tidy(raw):
    parents = [-1] + [r % (i + 1) for i, r in enumerate(raw)]  # node i+1's parent is an earlier node
    nodes = tree(parents)
    pos = layout(nodes)
    kids: dict[int, list[int]] = {}
    for i, p in enumerate(parents):
        if p >= 0:
            kids.setdefault(p, []).append(i)
            assert pos[i][1] > pos[p][1]
    for p, cs in kids.items():
        xs = [pos[c][0] for c in cs]
        assert pos[p][0] == pytest.approx((min(xs) + max(xs)) / 2)
    by_depth: dict[float, list[float]] = {}
    for x, y in pos.values():
        by_depth.setdefault(y, []).append(x)
    for xs in by_depth.values():
        xs.sort()
        assert all(b - a >= _DX - 1e-9 for a, b in zip(xs, xs[1:]))
    ET.fromstring(to_svg(nodes))  # any such tree renders to valid XML


def test_html_page_has_svg_and_path_table():
    page = to_html(SMALL, chosen=CHOSEN, title="Q <x>")

    class Collect(HTMLParser):
        rows: list[list[str]] = []
        svg = 0

        def handle_starttag(self, tag, attrs):
            if tag == "svg":
                self.svg += 1
            if tag == "tr":
                self.rows.append([])

        def handle_data(self, data):
            if self.rows:
                self.rows[-1].append(data)

    p = Collect()
    p.feed(page)
    assert p.svg == 1
    body = [r for r in p.rows[1:]]
    assert [r[0] for r in body] == ["0", "1", "2"] and HOSTILE in "".join(body[1])
    assert "Q &lt;x&gt;" in page


def test_dot_nodes_edges_and_escaping():
    dot = to_dot(SMALL, chosen=CHOSEN)
    for n in SMALL:
        assert len(re.findall(rf"^  n{n.id} \[", dot, re.M)) == 1
        if n.parent >= 0:
            assert len(re.findall(rf"^  n{n.parent} -> n{n.id}\b", dot, re.M)) == 1
    assert '\\"tips\\"' in dot and "\\\\" in dot and "\\nf=" in dot
    assert dot.count("penwidth=3") == 2 * len(CHOSEN) - 1


def test_write_tree_by_suffix_and_errors(tmp_path):
    for suffix, start in ((".html", "<!DOCTYPE html>"), (".svg", "<svg"), (".dot", "digraph"), (".gv", "digraph")):
        out = write_tree(SMALL, tmp_path / f"t{suffix}", chosen=CHOSEN)
        assert out.read_text().startswith(start)
    with pytest.raises(ValueError, match="unknown suffix '.png'"):
        write_tree(SMALL, tmp_path / "t.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_tree(SMALL, tmp_path / "missing" / "t.svg")


@pytest.mark.parametrize(
    "nodes, chosen, message",
    [
        ([], (), "empty"),
        (SMALL + [SMALL[1]], (), "duplicate"),
        ([*SMALL, DrawNode(9, 42, "x", 0, 0, 0, 0, "open")], (), "parent 42"),
        ([*SMALL, DrawNode(9, -1, "x", 0, 0, 0, 0, "open")], (), "exactly one root"),
        ([DrawNode(0, -1, "r", 0, 0, 0, 0, "open"), DrawNode(1, 2, "a", 0, 0, 0, 0, "open"), DrawNode(2, 1, "b", 0, 0, 0, 0, "open")], (), "cycle"),
        (SMALL, [0, 7], "not in the tree"),
        (SMALL, [0, 3], "path of parent"),
        (SMALL, [2, 5], "path of parent"),
        ([DrawNode(0, -1, "r", float("nan"), 0, 0, 0, "open")], (), "NaN"),
    ],
)
def test_bad_trees_are_rejected(nodes, chosen, message):
    with pytest.raises(ValueError, match=message):
        to_svg(nodes, chosen=chosen)


def test_infinite_scores_print_as_text():
    nodes = [DrawNode(0, -1, "r", 0, 0, 0, 0, "expanded"), DrawNode(1, 0, "a", float("-inf"), float("-inf"), 0, -1, "pruned")]
    assert ">-inf<" in to_svg(nodes)
