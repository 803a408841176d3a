"""qstar eval --ray (slow; CI runs it): a 2-actor local Ray cluster inside a private network
namespace (loopback only) with a temporary HOME; one actor is killed mid-run, its shard is
resubmitted and resumes from its record file, and the merged records equal a sequential run's.

    pip install ray && python -m pytest -m slow tests/test_ray_eval.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qstar_native.cli.ray_eval import shard_path

pytestmark = pytest.mark.slow

ARGV = ["eval", "--n", "12", "--methods", "greedy,qstar:8", "--k", "2", "--threads", "1", "--concurrency", "1", "--no-progress"]


def _records(path: Path) -> list[tuple]:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    return sorted((r["method"], r["question_id"], r["completion"], r["correct"], r["tokens_generated"], r["tokens_forwarded"]) for r in lines[1:])


def _actors() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and b"ray::_ShardRunner" in (d / "cmdline").read_bytes():
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def _sandboxed(argv: list[str], home: Path) -> list[str]:
    """argv in a new network namespace with only loopback up (root, or an unprivileged user namespace)."""
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    cmd = " ".join(["ip link set lo up && exec", sys.executable, "-m", "qstar_native", *argv])
    return [*unshare, "sh", "-c", cmd]


def test_ray_eval_survives_a_killed_actor_and_matches_a_sequential_run(request, tmp_path):
    if "slow" not in (request.config.getoption("markexpr") or "") and not os.environ.get("QSTAR_SLOW"):
        pytest.skip("slow: run with -m slow or QSTAR_SLOW=1")
    if importlib.util.find_spec("ray") is None or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs ray (pip install ray), unshare and ip")
    sequential = tmp_path / "sequential.jsonl"
    subprocess.run([sys.executable, "-m", "qstar_native", *ARGV, "--records", str(sequential)], check=True, capture_output=True)

    home = tmp_path / "home"
    home.mkdir()
    merged = tmp_path / "ray.jsonl"
    env = dict(os.environ, HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen(_sandboxed([*ARGV, "--records", str(merged), "--ray", "--ray-workers", "2"], home), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    killed = None
    deadline = time.time() + 600
    while proc.poll() is None and killed is None and time.time() < deadline:
        started = [p for p in (shard_path(str(merged), i, 2) for i in range(2)) if p.exists() and len(p.read_text().splitlines()) >= 3]
        actors = _actors()
        if started and len(actors) == 2:
            killed = actors[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    if killed is None:
        pytest.fail("the run ended before an actor could be killed")
    assert "lost its actor" in err and "resubmitted" in err
    assert _records(merged) == _records(sequential) and len(_records(merged)) == 24
    assert "24 records from 2 shards merged" in out
