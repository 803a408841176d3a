"""The sandbox holds without root: the escapes of the sandbox issue, as root and as a plain user.

Each case runs twice: ``root`` (the sandbox's per-run uid; skipped when the tests are not root)
and ``user`` (the sandbox run by an unprivileged user: as root the test forks, drops to a uid
from the sandbox's own lease and runs the sandbox there with an interpreter that uid can run;
not as root, the sandbox runs directly). Every case asserts the verdict and that nothing
survived or leaked: the pids the program reports are gone, no late file appears, and as root
no process of the unprivileged uid is left once its run returned.

Hostile programs are bounded (late writers sleep 0.5 s, loops stop at the quota or the timeout).
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource  # noqa: F401  # os.wait4 imports it lazily: the forked uid may not read the stdlib
import secrets
import shutil
import tempfile
import textwrap
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qstar_native.tasks.sandbox import (
    SandboxResult,
    _child_source,
    _lease_uid,
    _live_pids_of,
    _plan,
    run_untrusted,
)

IS_ROOT = os.geteuid() == 0
LATE_S = 1.0  # how long to watch for a late write (the writers sleep 0.5 s)


@dataclasses.dataclass
class Outcome:
    result: SandboxResult
    survivors: list[int] | None  # processes of the unprivileged uid left after its run (root only)


def _options(options: dict[str, Any]) -> dict[str, Any]:
    options.setdefault("timeout_s", 5.0)
    options.setdefault("memory_bytes", 256 << 20)
    return options


def _as_unprivileged_user(source: str, options: dict[str, Any]) -> Outcome:
    """Fork, become a leased uid with no groups, run the sandbox there, report back as JSON."""
    plan = _plan(None)
    if not plan.drop_root:
        pytest.skip("no interpreter an unprivileged uid can run (pass one on the system PATH)")
    _child_source()  # read it now: the checkout may be unreadable to that uid
    read_end, write_end = os.pipe()
    with _lease_uid() as uid:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            try:
                os.close(read_end)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                tempfile.tempdir = None  # pick a directory this uid can write
                _plan.cache_clear()  # plan again, as a non-root user
                result = run_untrusted(source, python=plan.python, **options)
                payload = {"result": dataclasses.asdict(result)}
            except BaseException:
                payload = {"error": traceback.format_exc()}
            try:
                with os.fdopen(write_end, "w") as pipe:
                    json.dump(payload, pipe)
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            payload = json.loads(pipe.read() or '{"error": "no report"}')
        os.waitpid(pid, 0)
        _plan.cache_clear()
        survivors = _live_pids_of(uid)
    assert "error" not in payload, payload["error"]
    return Outcome(SandboxResult(**payload["result"]), survivors)


def run_as(who: str, source: str, **options: Any) -> Outcome:
    source, options = textwrap.dedent(source), _options(options)
    if who == "user" and IS_ROOT:
        return _as_unprivileged_user(source, options)
    return Outcome(run_untrusted(source, **options), None)


@pytest.fixture(params=["root", "user"])
def who(request: pytest.FixtureRequest) -> str:
    if request.param == "root" and not IS_ROOT:
        pytest.skip("the tests do not run as root")
    return request.param


@pytest.fixture(autouse=True)
def runner_survives() -> Iterator[None]:
    """After every test, hostile or not, the runner still runs a normal program."""
    yield
    after = run_untrusted("print('still alive')", timeout_s=5)
    assert after.passed and after.stdout == "still alive\n", after


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every uid may write to, outside the sandbox: where late writers aim."""
    path = Path(tempfile.mkdtemp(prefix="qstar-sandbox-test-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _gone(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def assert_nothing_survived(outcome: Outcome, pids: list[int], late_file: Path | None) -> None:
    if late_file is not None:
        time.sleep(LATE_S)
        assert not late_file.exists(), "a process of the run wrote after the run ended"
    assert all(_gone(pid) for pid in pids), pids
    assert outcome.survivors in (None, []), outcome.survivors


# --- row 1: _imp.create_builtin("_posixsubprocess"), fork_exec of a shell ----------------------

# fork_exec's parameters change between Python versions: call it the way subprocess.py does.
SPAWN_SHELL = """
    import _imp, os, re, sys
    from importlib.machinery import ModuleSpec, PathFinder

    if "_posixsubprocess" in sys.builtin_module_names:
        create = _imp.create_builtin
        if {bypass}:  # defeat the guard's wrapper: the original is in its closure
            create = next(
                cell.cell_contents
                for cell in create.__closure__
                if getattr(cell.cell_contents, "__name__", "") == "create_builtin"
            )
        module = create(ModuleSpec("_posixsubprocess", None, origin="built-in"))
    elif {bypass}:
        print("not built in")
        raise SystemExit(0)
    else:
        module = _imp.create_dynamic(PathFinder.find_spec("_posixsubprocess"))
    text = open(os.path.join(os.path.dirname(os.__file__), "subprocess.py")).read()
    start = end = re.search(r"fork_exec\\(\\s*args,", text).end() - len("args,")
    depth = 1
    while depth:
        depth += {{"(": 1, ")": -1}}.get(text[end], 0)
        end += 1
    errpipe_read, errpipe_write = os.pipe()
    names = dict(
        args=[b"/bin/sh", b"-c", b"echo shell $$; sleep 0.5; echo late > {late}"],
        executable_list=[b"/bin/sh"], close_fds=True, fds_to_keep={{errpipe_write}},
        p2cread=-1, p2cwrite=-1, c2pread=-1, c2pwrite=-1, errread=-1, errwrite=-1,
        errpipe_read=errpipe_read, errpipe_write=errpipe_write, restore_signals=True,
        start_new_session=True, process_group=-1, umask=-1, _USE_VFORK=True, allow_vfork=True,
        cwd=None, env_list=None, gid=None, gids=None, uid=None, preexec_fn=None,
        fork_exec=module.fork_exec, _fork_exec=module.fork_exec,
        _posixsubprocess=module,
    )
    pid = eval("fork_exec(" + text[start:end], {{"__builtins__": __builtins__}}, names)
    os.close(errpipe_write)
    print("spawned", pid, flush=True)
"""


def _spawned(result: SandboxResult) -> list[int]:
    return [int(line.split()[1]) for line in result.stdout.splitlines() if line[:6] == "spawne"]


def test_fork_exec_through_imp_is_blocked_by_the_guard(who: str, shared_dir: Path) -> None:
    late = shared_dir / "late"
    outcome = run_as(who, SPAWN_SHELL.format(bypass=False, late=late))
    result = outcome.result
    assert result.status == "blocked", result
    assert "_posixsubprocess" in result.reason and result.returncode == 86
    assert _spawned(result) == []
    assert_nothing_survived(outcome, [], late)


def test_fork_exec_past_the_guard_is_killed_by_seccomp(who: str, shared_dir: Path) -> None:
    late = shared_dir / "late"
    outcome = run_as(who, SPAWN_SHELL.format(bypass=True, late=late))
    result = outcome.result
    if result.stdout == "not built in\n":
        pytest.skip("_posixsubprocess is not built into this interpreter")
    assert (result.status, result.returncode) == ("blocked", -31), result  # SIGSYS
    assert result.reason.startswith("sandbox seccomp filter blocked a forbidden system call")
    assert _spawned(result) == []
    assert_nothing_survived(outcome, [], late)


def test_shell_started_without_the_guard_is_killed_when_the_run_ends(
    who: str, shared_dir: Path
) -> None:
    late = shared_dir / "late"
    outcome = run_as(who, SPAWN_SHELL.format(bypass=False, late=late), guard=False)
    result = outcome.result
    assert result.status == "ok", result
    pids = _spawned(result)
    assert len(pids) == 1  # the shell did start, in its own session
    assert_nothing_survived(outcome, pids, late)


def test_double_fork_with_setsid_is_killed_when_the_run_ends(who: str, shared_dir: Path) -> None:
    late = shared_dir / "late"
    outcome = run_as(
        who,
        f"""
        import os, time
        r, w = os.pipe()
        if os.fork() == 0:
            os.setsid()  # leaves the process group and the session
            if os.fork() == 0:
                os.write(w, b"%d" % os.getpid())
                time.sleep(0.5)
                open({str(late)!r}, "w").write("late")
                os._exit(0)
            os._exit(0)
        os.close(w)
        print(os.read(r, 32).decode(), flush=True)
        os.wait()
        """,
        guard=False,
    )
    result = outcome.result
    assert result.status == "ok", result
    assert_nothing_survived(outcome, [int(result.stdout)], late)


# --- row 2: writes outside the directory through dir_fd --------------------------------------

DIR_FD_WRITES = {
    "open": "os.close(os.open({name!r}, os.O_WRONLY | os.O_CREAT, dir_fd=fd))",
    "mkdir": "os.mkdir({name!r}, dir_fd=fd)",
}


@pytest.mark.parametrize("directory", ["/tmp", "/dev/shm"])
@pytest.mark.parametrize("how", sorted(DIR_FD_WRITES))
def test_writes_through_dir_fd_outside_are_blocked(who: str, directory: str, how: str) -> None:
    if not os.path.isdir(directory):
        pytest.skip(f"no {directory} here")
    name = f"qstar-leak-{secrets.token_hex(6)}"
    target = Path(directory, name)
    try:
        outcome = run_as(
            who,
            f"import os\nfd = os.open({directory!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
            + DIR_FD_WRITES[how].format(name=name),
        )
        assert outcome.result.status == "blocked", outcome.result
        assert outcome.result.reason == (
            "sandbox guard blocked open: directory outside the sandbox directory "
            f"(usable as dir_fd): {os.path.realpath(directory)}"
        )
        assert not target.exists()
        assert_nothing_survived(outcome, [], None)
    finally:
        if target.is_dir():
            target.rmdir()
        elif target.exists():
            target.unlink()


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (  # a descriptor of the working directory itself, and a path that climbs out of it
            "fd = os.open('.', os.O_RDONLY)\n"
            "os.close(os.open('../{name}', os.O_WRONLY | os.O_CREAT, dir_fd=fd))",
            "sandbox guard blocked open: relative path with '..' (it could be relative to any "
            "dir_fd): ../{name}",
        ),
        (  # a link out, to be followed later from a descriptor the guard cannot see through
            "os.symlink('/tmp', 'out')",
            "sandbox guard blocked os.symlink: link to outside the sandbox directory: /tmp",
        ),
        (  # mkfifo / mknod raise no audit event: the seccomp filter refuses them
            "os.mkfifo('/tmp/{name}')",
            "sandbox seccomp filter blocked a forbidden system call",
        ),
    ],
    ids=["dotdot", "symlink", "mkfifo"],
)
def test_other_ways_out_of_the_directory_are_blocked(who: str, source: str, reason: str) -> None:
    name = f"qstar-leak-{secrets.token_hex(6)}"
    outcome = run_as(who, "import os\n" + source.format(name=name))
    assert outcome.result.status == "blocked", outcome.result
    assert outcome.result.reason.startswith(reason.format(name=name))
    assert not Path("/tmp", name).exists() and not Path(tempfile.gettempdir(), name).exists()
    assert_nothing_survived(outcome, [], None)


@pytest.mark.skipif(not IS_ROOT, reason="only a per-run uid tells the run's files apart")
def test_files_left_in_world_writable_dirs_are_removed_as_root() -> None:
    names = [f"qstar-leak-{secrets.token_hex(6)}" for _ in range(3)]
    result = run_untrusted(
        textwrap.dedent(
            f"""
            import os
            for directory, name in zip(["/tmp", "/dev/shm", "/tmp"], {names!r}):
                fd = os.open(directory, os.O_RDONLY)
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT, dir_fd=fd))
            os.mkdir("/tmp/{names[2]}.d")
            open("/tmp/{names[2]}.d/inner", "w").write("x")
            print(sorted(os.listdir("/tmp") + os.listdir("/dev/shm")), flush=True)
            """
        ),
        guard=False,  # the guard would stop this; here the OS layer cleans up on its own
    )
    assert result.status == "ok", result
    assert all(name in result.stdout for name in names)  # they were written...
    for path in [Path("/tmp", names[0]), Path("/dev/shm", names[1]), Path("/tmp", names[2])]:
        assert not path.exists()  # ...and removed with the run
    assert not Path("/tmp", names[2] + ".d").exists()


# --- row 3: a total quota for the working directory ------------------------------------------

FILL = {
    "files": """
        i = 0
        while True:  # 1 MiB files, each under max_file_bytes
            with open(f"f{i}", "wb") as f:
                f.write(b"x" * (1 << 20))
            i += 1
    """,
    "deleted_but_open": """
        import os, time
        kept = []
        for i in range(64):  # invisible to du: unlinked, still open
            f = open(f"f{i}", "wb")
            f.write(b"x" * (1 << 20))
            f.flush()
            os.unlink(f"f{i}")
            kept.append(f)
        time.sleep(10)
    """,
    "memfd": """
        import os, time
        kept = []
        for i in range(40):
            fd = os.memfd_create("x")
            os.write(fd, b"x" * (1 << 20))
            kept.append(fd)
        time.sleep(10)
    """,
}


@pytest.mark.parametrize("how", sorted(FILL))
def test_disk_quota_ends_the_run(who: str, how: str) -> None:
    outcome = run_as(
        who,
        "import os\nprint(os.getcwd(), flush=True)\n" + textwrap.dedent(FILL[how]),
        max_disk_bytes=8 << 20,
        max_file_bytes=2 << 20,
        timeout_s=8,
    )
    result = outcome.result
    assert result.status == "disk_limit", result
    assert result.reason.startswith(f"the sandbox directory grew past max_disk_bytes={8 << 20} (")
    assert result.returncode == -9 and result.wall_s < 4  # stopped by the quota, not the timeout
    assert not Path(result.stdout.strip()).exists()  # the directory went with the run
    assert_nothing_survived(outcome, [], None)


@pytest.mark.parametrize(
    "source",
    [
        "import os, time\nfor _ in range(80):\n    os.mkdir('d')\n    os.chdir('d')\n"
        "time.sleep(10)",
        "import os, time\nos.makedirs('a/b')\nopen('a/b/x', 'w').close()\nos.chmod('a', 0)\n"
        "time.sleep(10)",
    ],
    ids=["too_deep", "unreadable"],
)
def test_a_tree_that_cannot_be_measured_counts_as_over_the_quota(who: str, source: str) -> None:
    if "chmod" in source and who == "root":
        pytest.skip("the supervisor reads everything as root: nothing is unmeasurable")
    outcome = run_as(who, source, timeout_s=8)
    result = outcome.result
    assert result.status == "disk_limit", result
    assert "could not be measured" in result.reason and result.wall_s < 4
    assert_nothing_survived(outcome, [], None)


# --- row 4: the verdict comes from the parent's own channel ----------------------------------


def test_printing_the_blocked_line_and_exiting_86_is_a_failure(who: str) -> None:
    outcome = run_as(
        who,
        """
        import os, sys
        line = "qstar-sandbox: blocked os.fork"
        for fd in range(3, 64):
            try:  # read back whatever the pipes hold (as a plain user the pipe can be reopened)
                with open(f"/proc/self/fd/{fd}", "rb", buffering=0) as f:
                    os.set_blocking(f.fileno(), False)
                    print(fd, f.read(4096), flush=True)
            except Exception:
                pass
            try:  # wherever the guard's pipe is, a look-alike report
                os.write(fd, b"0123456789abcdef0123456789abcdef blocked os.fork\\n" + line.encode())
            except OSError:
                pass
        print(line, flush=True)
        print(line, file=sys.stderr, flush=True)
        sys.exit(86)
        """,
    )
    result = outcome.result
    assert (result.status, result.returncode) == ("failed", 86), result
    assert " blocked " not in result.stdout.replace("qstar-sandbox: blocked", "")  # no token seen
    assert_nothing_survived(outcome, [], None)


def test_the_program_cannot_kill_its_supervisor(who: str) -> None:
    # No audit event for pidfd_send_signal: the seccomp filter refuses signals to others.
    outcome = run_as(
        who,
        "import os, signal\n"
        "signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)\n"
        "print('supervisor killed')",
    )
    result = outcome.result
    assert (result.status, result.returncode, result.stdout) == ("blocked", -31, ""), result
    assert_nothing_survived(outcome, [], None)


def test_a_real_block_is_still_reported_as_user(who: str) -> None:
    outcome = run_as(who, "import os\nos.fork()")
    assert (outcome.result.status, outcome.result.reason) == (
        "blocked",
        "sandbox guard blocked os.fork",
    )
    assert_nothing_survived(outcome, [], None)
