"""The sandbox: normal programs run, hostile ones are contained and reported, the runner survives.

Every hostile program is bounded on its own (a fork loop forks at most 40 times, sleeps end), so a
containment bug fails a test instead of taking the machine down. Tests that pass ``guard=False``
turn the seccomp filter and the audit hook off to check the rest of the OS layer alone; the ones
that need root (a per-run uid, a network namespace) skip elsewhere. The escapes of the sandbox
issue, run both as root and as an unprivileged user, are in ``test_sandbox_escapes.py``.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from qstar_native.tasks.sandbox import SandboxResult, _plan, run_untrusted

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="the per-run uid is used only as root")


def run(source: str, **options: Any) -> SandboxResult:
    """run_untrusted with test-sized limits: fast to hit, never flaky on 2 loaded cores."""
    options.setdefault("timeout_s", 5.0)
    options.setdefault("memory_bytes", 256 << 20)
    return run_untrusted(textwrap.dedent(source), **options)


@pytest.fixture(autouse=True)
def runner_survives() -> Iterator[None]:
    """After every test, hostile or not, the runner still runs a normal program."""
    yield
    after = run("print('still alive')")
    assert after.passed, after
    assert after.stdout == "still alive\n"


def _dead_or_zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


# --- normal programs ---------------------------------------------------------------------


def test_program_runs_and_its_output_is_returned() -> None:
    result = run("import sys\nprint(6 * 7)\nprint('note', file=sys.stderr)")
    assert result.passed and result.status == "ok"
    assert (result.returncode, result.stdout, result.stderr, result.reason) == (
        0,
        "42\n",
        "note\n",
        "",
    )
    assert 0 < result.wall_s < 5


def test_failing_program_reports_the_last_stderr_line() -> None:
    result = run("assert 1 + 1 == 3, 'arithmetic is broken'")
    assert not result.passed
    assert (result.status, result.returncode) == ("failed", 1)
    assert result.reason == "AssertionError: arithmetic is broken"


def test_syntax_error_and_exit_status_are_failures() -> None:
    assert run("def f(:\n").reason.startswith("SyntaxError")
    exited = run("import sys; sys.exit(3)")
    assert (exited.status, exited.returncode, exited.reason) == ("failed", 3, "exit status 3")


def test_program_runs_as_main_in_a_fresh_private_directory() -> None:
    result = run(
        """
        import os
        with open("data.txt", "w") as f:
            f.write("kept inside")
        print(__name__, os.listdir("."), open("data.txt").read(), os.getcwd())
        """
    )
    assert result.passed, result
    name, listing, *_, cwd = result.stdout.split(" ")
    assert name == "__main__" and "data.txt" in listing
    assert not Path(cwd.strip()).exists()  # removed after the run
    assert run("import os; print(os.getcwd())").stdout != result.stdout.split(" ")[-1]


def test_crash_by_signal_is_reported() -> None:
    result = run("import os; os.abort()")
    assert (result.status, result.returncode, result.reason) == (
        "crashed",
        -6,
        "killed by signal SIGABRT",
    )


def test_closing_stdout_does_not_end_the_run_early() -> None:
    result = run("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(0.3)\nraise SystemExit(4)")
    assert (result.status, result.returncode) == ("failed", 4)


def test_ordinary_library_use_is_not_blocked() -> None:
    # Threads (clone3 refused with ENOSYS, clone with CLONE_THREAD allowed), temporary
    # directories and rmtree inside the working directory, in-memory sqlite, signals to itself.
    result = run(
        """
        import os, shutil, signal, sqlite3, tempfile, threading
        seen = []
        threads = [threading.Thread(target=seen.append, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "a", "b"))
        os.makedirs("x/y")
        shutil.rmtree("x")
        signal.signal(signal.SIGUSR1, lambda *_: seen.append("usr1"))
        signal.raise_signal(signal.SIGUSR1)
        print(sorted(map(str, seen)), sqlite3.connect(":memory:").execute("select 2").fetchone())
        """
    )
    assert result.passed, result
    assert result.stdout == "['0', '1', '2', '3', 'usr1'] (2,)\n"


def test_concurrent_runs_do_not_interfere() -> None:
    sources = [f"import os\nprint({i}, os.getuid())" for i in range(6)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(run, sources))
    assert [r.stdout.split()[0] for r in results] == [str(i) for i in range(6)]
    if _plan(None).drop_root:  # each concurrent run had its own uid
        assert all(int(r.stdout.split()[1]) != 0 for r in results)


# --- hostile programs ----------------------------------------------------------------------


def test_infinite_loop_times_out() -> None:
    result = run("while True:\n    pass", timeout_s=1.5)
    assert (result.status, result.reason) == ("timeout", "wall time exceeded 1.5 s")
    assert result.returncode == -9 and 1.5 <= result.wall_s < 4


def test_sleeping_forever_times_out() -> None:
    result = run("import time\ntime.sleep(60)", timeout_s=1)
    assert result.status == "timeout" and result.wall_s < 3


def test_cpu_limit_stops_a_busy_loop() -> None:
    result = run("while True:\n    pass", timeout_s=8, cpu_s=1)
    assert (result.status, result.reason) == ("cpu_limit", "CPU time exceeded 1 s")
    assert result.cpu_s >= 0.9 and result.wall_s < 6


# A bounded fork bomb: the parent forks up to 40 children that sleep, and prints each pid.
FORK_BOMB = """
    import os, time
    for i in range(40):
        try:
            pid = os.fork()
        except OSError as exc:
            print("fork refused", exc, flush=True)
            break
        if pid == 0:
            time.sleep(20)
            os._exit(0)
        print(pid, flush=True)
    time.sleep(20)
"""


def test_fork_bomb_is_blocked_by_the_guard() -> None:
    result = run(FORK_BOMB, timeout_s=3)
    assert (result.status, result.reason) == ("blocked", "sandbox guard blocked os.fork")
    assert result.stdout == ""


def test_fork_bomb_is_contained_by_the_process_limit() -> None:
    result = run(FORK_BOMB, timeout_s=2, guard=False, max_processes=6)
    assert result.status == "timeout"
    pids = [int(line) for line in result.stdout.split() if line.isdigit()]
    assert "fork refused" in result.stdout  # RLIMIT_NPROC said no
    assert len(pids) < 6
    assert all(_dead_or_zombie(pid) for pid in pids)  # the whole group was killed


def test_process_that_leaves_its_group_is_killed_after_the_run() -> None:
    # The supervisor is a child subreaper: the orphan comes back to it, root or not.
    result = run(
        """
        import os, time
        pid = os.fork()
        if pid == 0:
            os.setsid()  # escapes the process group
            time.sleep(20)
            os._exit(0)
        print(pid, flush=True)
        """,
        guard=False,
    )
    assert result.passed, result
    assert _dead_or_zombie(int(result.stdout))


def test_memory_hog_hits_the_memory_limit() -> None:
    at_once = run("x = bytearray(1 << 30)")
    assert (at_once.status, at_once.reason) == (
        "memory_limit",
        f"memory limit of {256 << 20} bytes reached (MemoryError)",
    )
    growing = run("chunks = []\nwhile True:\n    chunks.append(b'x' * (1 << 20))")
    assert growing.status == "memory_limit", growing


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_huge_output_is_capped_and_stops_the_run(stream: str) -> None:
    result = run(
        f"import sys\nwhile True:\n    sys.{stream}.write('x' * 65536)", max_output_bytes=100_000
    )
    assert result.status == "output_limit" and result.output_truncated
    assert result.reason == "output exceeded 100000 bytes on stdout or stderr"
    assert getattr(result, stream) == "x" * 100_000


def test_big_file_hits_the_file_size_limit() -> None:
    result = run("open('big.bin', 'wb').write(b'x' * (2 << 20))", max_file_bytes=1 << 20)
    assert (result.status, result.reason) == (
        "file_limit",
        f"wrote a file larger than max_file_bytes={1 << 20}",
    )


def _escape_path() -> Path:
    return Path(tempfile.gettempdir(), f"qstar_escape_{secrets.token_hex(8)}")


def test_write_outside_its_directory_is_blocked() -> None:
    target = _escape_path()
    try:
        result = run(f"open({str(target)!r}, 'w').write('escaped')")
        assert result.status == "blocked"
        assert (
            result.reason
            == f"sandbox guard blocked open: write outside the sandbox directory: {target}"
        )
        assert not target.exists()
        via_os = run(f"import os\nos.mkdir({str(target)!r})")
        assert via_os.status == "blocked" and not target.exists()
    finally:
        if target.exists():
            os.remove(target) if target.is_file() else os.rmdir(target)


@needs_root
def test_write_outside_is_refused_by_the_os_without_the_guard(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"  # a directory of ours: another uid may not write there
    result = run(f"open({str(target)!r}, 'w').write('escaped')", guard=False)
    assert result.status == "failed" and result.reason.startswith("PermissionError")
    assert not target.exists()


SECRET = "qstar-test-secret-" + secrets.token_hex(8)
READ_ENV = """
    import os
    print(sorted(os.environ.items()), flush=True)
    print(open("/proc/{pid}/environ").read(), flush=True)
"""


def test_parent_environment_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QSTAR_TEST_SECRET", SECRET)
    result = run(READ_ENV.format(pid=os.getpid()))
    assert result.status == "blocked" and "environ" in result.reason
    plain = run("import os\nprint(sorted(os.environ))")
    assert plain.stdout == "['HOME', 'LANG', 'PATH', 'TMPDIR']\n"
    assert SECRET not in result.stdout + result.stderr + plain.stdout


@needs_root
def test_parent_environment_is_unreadable_without_the_guard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QSTAR_TEST_SECRET", SECRET)
    result = run(READ_ENV.format(pid=os.getpid()), guard=False)
    assert result.status == "failed" and result.reason.startswith("PermissionError")
    assert SECRET not in result.stdout + result.stderr


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        yield server


def _accepted_anything(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


CONNECT = "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')"


def test_socket_is_blocked(listening_socket: socket.socket) -> None:
    result = run(CONNECT.format(port=listening_socket.getsockname()[1]))
    assert result.status == "blocked" and result.reason.startswith("sandbox guard blocked socket.")
    assert not _accepted_anything(listening_socket)


def test_socket_is_refused_by_the_network_namespace(listening_socket: socket.socket) -> None:
    if not _plan(None).netns:
        pytest.skip("no network namespace here (needs root and a working `unshare -n`)")
    result = run(CONNECT.format(port=listening_socket.getsockname()[1]), guard=False)
    assert result.status == "failed" and "OSError" in result.reason
    assert not _accepted_anything(listening_socket)


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import subprocess\nsubprocess.run(['true'])", "import _posixsubprocess"),
        ("import os\nos.system('true')", "os.system"),
        ("import os\nos.execv('/bin/true', ['true'])", "os.exec"),
        ("import ctypes", "import ctypes"),
        ("import os\nos.kill(1, 0)", "os.kill"),
    ],
)
def test_guard_blocks_processes_signals_and_native_code(source: str, what: str) -> None:
    result = run(source)
    assert (result.status, result.reason, result.returncode) == (
        "blocked",
        f"sandbox guard blocked {what}",
        86,
    )


# --- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "names"),
    [
        ({"timeout_s": 0}, ValueError, "timeout_s"),
        ({"timeout_s": float("inf")}, ValueError, "timeout_s"),
        ({"cpu_s": -1}, ValueError, "cpu_s"),
        ({"memory_bytes": 1 << 20}, ValueError, "memory_bytes"),
        ({"max_processes": 0}, ValueError, "max_processes"),
        ({"max_output_bytes": 1.5}, TypeError, "max_output_bytes"),
        ({"max_disk_bytes": 4096}, ValueError, "max_disk_bytes"),
    ],
)
def test_bad_arguments_name_the_argument(options: dict[str, Any], error: type, names: str) -> None:
    with pytest.raises(error, match=names):
        run_untrusted("print(1)", **options)


def test_source_must_be_text() -> None:
    with pytest.raises(TypeError, match="decode bytes first"):
        run_untrusted(b"print(1)")  # type: ignore[arg-type]
