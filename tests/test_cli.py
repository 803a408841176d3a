"""The command line: the demo runs and A* finds what greedy misses."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from qstar_native.__main__ import main


def test_demo_astar_beats_greedy(capsys):
    assert main(["demo", "--problems", "20", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    greedy = float(re.search(r"^greedy\s+([\d.]+)%", out, re.M).group(1))
    astar = float(re.search(r"^A\*\s+([\d.]+)%", out, re.M).group(1))
    assert astar == 100.0 and greedy < astar


def test_bad_arguments_exit_with_a_message():
    with pytest.raises(SystemExit):
        main(["demo", "--problems", "0"])
    proc = subprocess.run([sys.executable, "-m", "qstar_native", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
