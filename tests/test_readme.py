"""The README's Python example runs as written."""

from __future__ import annotations

import pathlib
import re


def test_readme_api_tour_runs(capsys):
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "solutions" in out
