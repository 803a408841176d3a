"""Run untrusted Python source in a sandboxed subprocess and report what happened.

    >>> from qstar_native.tasks.sandbox import run_untrusted
    >>> run_untrusted("print(6 * 7)", timeout_s=5).stdout
    '42\\n'
    >>> run_untrusted("while True: pass", timeout_s=1).status
    'timeout'

Each run gets a fresh temporary working directory, a stripped environment (``PATH``, ``HOME`` =
the working directory, ``LANG``), ``python -I -S -B`` (no user site, no site-packages, no
``PYTHON*`` variables, no bytecode writes), no stdin, no inherited file descriptors and its own
session and process group. The launcher (``_sandbox_child.py``) forks into a **supervisor** that
never runs program code and the **program process**, which sets RLIMIT_CPU, RLIMIT_AS,
RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_NOFILE and RLIMIT_CORE=0, drops root (if it is root) to a
per-run uid, installs a seccomp filter and an audit-hook guard, and runs the program.

- Nothing the run started outlives it, root or not: the supervisor is a child subreaper, so every
  orphan (double fork, ``setsid``, a shell started through ``_posixsubprocess.fork_exec``) is
  re-parented to it, and when the program ends (or the parent stops it for a wall timeout or too
  much output) it SIGKILLs and reaps every process under it. The parent then kills the process
  group and, as root, every process of the run's uid, as a second line.
- The working directory has a total quota (``max_disk_bytes``): the supervisor measures it every
  20 ms (plus deleted files the run holds open) and ends the run with status ``'disk_limit'``.
- The verdict comes from the parent's own channel: the supervisor writes it on a pipe that the
  program process closes before it starts. ``'blocked'`` needs either a report from the guard
  carrying a random per-run token, or death by SIGSYS under the seccomp filter (which only the
  filter deals); printing the guard's ``qstar-sandbox: blocked`` line and exiting 86 is a failure.

Threat model, honestly:

- Meant for model-written code that is buggy or careless (loops forever, forks, allocates or prints
  without bound, writes files, opens sockets), not for an adversary who targets this sandbox.
- Kernel-enforced, root or not: resource limits; the seccomp filter (with ``guard``): no new
  processes (``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``; ``clone3`` says ENOSYS so
  libc falls back to ``clone``), no ``execve``, no signals except to itself (and never SIGSYS), no
  ``ptrace``/``process_vm_*``/``pidfd_getfd``, no ``mknod`` (FIFOs), no ``unshare``/``setns``/
  ``io_uring``, no sockets (``AF_UNIX`` fails with EPERM, so libc's nscd client falls back; any
  other family is forbidden). A forbidden call kills the process with SIGSYS: status
  ``'blocked'``. x86_64 and aarch64 only (only x86_64 is tested); elsewhere, or without
  ``ctypes`` in the interpreter, there is no filter and no subreaper.
- As root, also a fresh uid for each run (leased with a lock file, so concurrent runs never share
  it: RLIMIT_NPROC then counts this run's processes only; files outside the working directory
  and other processes' ``/proc`` entries are off limits; any leftover process of that uid is
  killed, and its files in ``/tmp``, ``/var/tmp``, ``/dev/shm`` and ``/run/lock`` are removed
  after the run), and a network namespace with no interfaces (``unshare -n``) where that works.
- The audit hook blocks sockets, process creation (also ``_imp.create_builtin`` of blocked
  modules, which raises no ``import`` event), signals, ``ctypes``, ``gc`` walks, writes outside
  the working directory, opening a directory outside it (a ``dir_fd`` the hook could not
  follow), relative paths with ``..``, symlinks pointing out of it, reads of other processes'
  ``/proc`` entries and of its own memory. It is defense in depth, not a boundary: in-process
  Python can defeat audit hooks (e.g. the original ``create_builtin`` is in the wrapper's
  closure), which is why process creation is also stopped by the seccomp filter. What only the
  hook stops: writing files outside the working directory, including world-writable places such
  as ``/tmp`` and ``/dev/shm`` (as root they are cleaned up afterwards; not as root, a program
  that defeats the hook can leave files there), and, not as root, reaching the user's files.
- Not run as root (typical CI): no uid change and no network namespace; RLIMIT_NPROC then counts
  all processes of the user, and the program can read (and, past the hook, write) whatever the
  user can. The seccomp filter still stops processes, signals and sockets. Use a container or VM
  for hostile code there.
- The guard's token sits in the hook's closure, in the program's own process: reachable from
  Python only through gc walks or its own memory (both refused by the hook) or native code
  (``ctypes`` refused). A program that defeats the hook anyway can forge a ``'blocked'``
  verdict with a reason of its choosing, never an ``'ok'``: that needs exit status 0 as seen by
  the supervisor.
- The disk quota is polled: between two measurements a program can write up to what it writes
  in 20 ms (bounded per file by ``max_file_bytes``). Every entry costs at least 4 KiB, and a tree
  that cannot be measured (unreadable, or deeper than 64) counts as over the quota.
- The supervisor runs with the user's uid when not root: with ``guard=False`` the program can
  signal it (the parent still kills the process group; orphans that left the group may then
  survive). ``guard=False`` is for testing the OS layer, not for running untrusted code.
- When the parent is root but its interpreter is unreadable to other uids (e.g. under ``/root``),
  the sandbox looks for the same Python version on the system PATH; failing that it runs as root
  and warns once. Pass ``python=`` to choose the interpreter.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import math
import os
import random
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["SandboxError", "SandboxResult", "SandboxStatus", "run_untrusted"]

SandboxStatus = Literal[
    "ok",
    "failed",
    "timeout",
    "cpu_limit",
    "memory_limit",
    "file_limit",
    "output_limit",
    "disk_limit",
    "blocked",
    "crashed",
]

_MAX_OPEN_FILES = 64
_EXIT_GRACE_S = 1.0  # after the supervisor ends, how long to wait for its pipes to close
_STOP_GRACE_S = 2.0  # after SIGTERM, how long the supervisor gets to clean up before SIGKILL
_MAX_REPORT_BYTES = 1 << 16
_WORLD_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_UID_RANGE = range(50_000, 60_000)  # inside the 65536-uid maps of user-namespaced containers
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


class SandboxError(RuntimeError):
    """The sandbox itself could not run (not the program: its failures are results)."""


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run did.

    ``status`` is ``'ok'`` when the program exited with status 0 within every limit; otherwise it
    names the first cause found, and ``reason`` says it in words (for ``'failed'``: the last line of
    stderr, e.g. ``'AssertionError'``). ``stdout``/``stderr`` hold at most ``max_output_bytes``
    each, decoded as UTF-8 with replacement; ``cpu_s`` is the main process's user + system time.
    """

    status: SandboxStatus
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    output_truncated: bool = False

    @property
    def passed(self) -> bool:
        """True when the program ran to a zero exit status within every limit."""
        return self.status == "ok"


@dataclass(frozen=True)
class _Plan:
    """How runs start on this machine: interpreter, whether to drop root, netns prefix."""

    python: str
    drop_root: bool
    netns: tuple[str, ...]


def run_untrusted(
    source: str,
    *,
    timeout_s: float = 10.0,
    cpu_s: float | None = None,
    memory_bytes: int = 1 << 30,
    max_processes: int = 16,
    max_file_bytes: int = 16 << 20,
    max_output_bytes: int = 1 << 20,
    guard: bool = True,
    python: str | None = None,
    max_disk_bytes: int = 64 << 20,
) -> SandboxResult:
    """Run ``source`` as ``__main__`` in a sandboxed subprocess (see the module docstring).

    Args:
        source: the program text.
        timeout_s: wall-clock limit; the run is stopped when it passes.
        cpu_s: CPU-time limit (whole seconds, rounded up); default ``timeout_s`` + 1, so that a
            single-threaded loop is reported as a 'timeout', and the CPU limit only stops
            programs that burn CPU faster than wall time (threads).
        memory_bytes: address-space limit (RLIMIT_AS) of each process.
        max_processes: RLIMIT_NPROC (processes and threads of the sandbox uid).
        max_file_bytes: largest file the program may write (RLIMIT_FSIZE).
        max_output_bytes: cap on each of stdout and stderr; more ends the run ('output_limit').
        guard: install the seccomp filter and the audit-hook guard; False only to test the rest
            of the OS layer on its own.
        python: interpreter to run; default ``sys.executable`` (see the module docstring).
        max_disk_bytes: total the working directory may hold (every entry at least 4 KiB, plus
            deleted files still open); more ends the run ('disk_limit').

    Raises:
        TypeError, ValueError: an argument is out of range (the message names it).
        SandboxError: the interpreter could not be started.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be str, got {type(source).__name__}; decode bytes first")
    _check_positive("timeout_s", timeout_s)
    cpu_limit = math.ceil(timeout_s + 1 if cpu_s is None else _check_positive("cpu_s", cpu_s))
    _check_int("memory_bytes", memory_bytes, 32 << 20, "a Python interpreter needs about 32 MiB")
    _check_int("max_processes", max_processes, 1, "the program itself is one process")
    _check_int("max_file_bytes", max_file_bytes, 0, "")
    _check_int("max_output_bytes", max_output_bytes, 1, "")
    _check_int("max_disk_bytes", max_disk_bytes, 1 << 20, "the working directory needs some room")
    plan = _plan(python)
    with contextlib.ExitStack() as stack:
        uid = stack.enter_context(_lease_uid()) if plan.drop_root else None
        root = os.path.realpath(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix="qstar-sandbox-", ignore_cleanup_errors=True)
            )
        )
        Path(root, "program.py").write_text(source, encoding="utf-8")
        if uid is not None:
            os.chown(root, uid, uid)
        # The supervisor's verdict: only it holds the write end once the program process starts.
        report_r, report_w = os.pipe()
        stack.callback(os.close, report_r)
        config = {
            "program": "program.py",
            "cpu_s": cpu_limit,
            "memory_bytes": memory_bytes,
            "max_processes": max_processes,
            "max_file_bytes": max_file_bytes,
            "max_open_files": _MAX_OPEN_FILES,
            "max_disk_bytes": max_disk_bytes,
            "uid": uid,
            "guard": guard,
            "report_fd": report_w,
            "parent_pid": os.getpid(),
        }
        launcher = _child_source()
        argv = [*plan.netns, plan.python, "-I", "-S", "-B", "-c", launcher, json.dumps(config)]
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=root,
                env=_child_env(root),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
                pass_fds=(report_w,),
                start_new_session=True,
            )
        except OSError as exc:
            raise SandboxError(f"could not start {plan.python!r}: {exc}; pass python=...") from exc
        finally:
            os.close(report_w)
        with proc:
            try:
                out, err, raw_report, killed_for = _supervise(
                    proc, report_r, start + timeout_s, max_output_bytes
                )
            finally:
                _kill_everything(proc.pid, uid, plan)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                if uid is not None:
                    _remove_files_of(uid)
        wall = time.monotonic() - start
    stdout, stderr = _decode(out), _decode(err)
    report = _parse_report(raw_report)
    if report is None:  # the supervisor died before its verdict: what we know is its own end
        rc, cpu = proc.returncode, usage.ru_utime + usage.ru_stime
    else:
        rc, cpu = os.waitstatus_to_exitcode(report["wait_status"]), float(report["cpu_s"])
    status_, reason = _classify(
        rc,
        killed_for,
        report,
        stderr,
        cpu,
        cpu_limit=cpu_limit,
        timeout_s=timeout_s,
        memory_bytes=memory_bytes,
        max_file_bytes=max_file_bytes,
        max_output_bytes=max_output_bytes,
        max_disk_bytes=max_disk_bytes,
    )
    return SandboxResult(
        status=status_,
        reason=reason,
        returncode=rc,
        stdout=stdout,
        stderr=stderr,
        wall_s=wall,
        cpu_s=cpu,
        output_truncated=killed_for == "output_limit",
    )


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")
    return value


def _check_int(name: str, value: int, minimum: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        hint = f" ({why})" if why else ""
        raise ValueError(f"{name} must be at least {minimum}{hint}, got {value}")


def _child_env(root: str) -> dict[str, str]:
    # Nothing inherited: the parent's environment may hold secrets (API keys, tokens).
    return {"PATH": "/usr/bin:/bin", "HOME": root, "TMPDIR": root, "LANG": "C.UTF-8"}


def _supervise(
    proc: subprocess.Popen[bytes], report_fd: int, deadline: float, cap: int
) -> tuple[bytes, bytes, bytes, str | None]:
    """Collect output and the verdict until the supervisor ends.

    Returns (stdout, stderr, report, why the parent cut the run short). On a wall timeout or too
    much output, the supervisor gets SIGTERM ("stop now"; it kills the program and everything
    under it, then reports) and ``_STOP_GRACE_S`` to do it; the caller SIGKILLs what is left.
    """
    fds = (proc.stdout.fileno(), proc.stderr.fileno())  # type: ignore[union-attr]  # PIPEs
    buffers = {fd: bytearray() for fd in fds}
    report = bytearray()
    cut_short: str | None = None
    stop_sent: float | None = None
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel, _pidfd(proc.pid) as pidfd:
        for fd in (*fds, report_fd):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        if pidfd is not None:
            sel.register(pidfd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if exited_at is None and _has_exited(proc.pid):
                exited_at = now
            pipes_open = any(key.fd != pidfd for key in sel.get_map().values())
            if exited_at is not None and (not pipes_open or now - exited_at > _EXIT_GRACE_S):
                break
            if cut_short is None and now >= deadline:
                cut_short = "timeout"
            if cut_short is not None and stop_sent is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)  # our unreaped child: no pid reuse
                stop_sent = now
            if stop_sent is not None and now - stop_sent > _STOP_GRACE_S:
                break
            wake = [exited_at + _EXIT_GRACE_S if exited_at is not None else math.inf]
            wake.append(stop_sent + _STOP_GRACE_S if stop_sent is not None else deadline)
            wait = max(0.0, min(wake) - now)
            if pidfd is None:  # without a pidfd, poll for the supervisor's exit every 50 ms
                wait = min(wait, 0.05)
            for key, _ in sel.select(wait):
                if key.fd == pidfd:
                    sel.unregister(pidfd)
                elif key.fd == report_fd:
                    _read_into(report_fd, report, _MAX_REPORT_BYTES, sel)
                elif not _read_into(key.fd, buffers[key.fd], cap, sel) and cut_short is None:
                    cut_short = "output_limit"
    return bytes(buffers[fds[0]]), bytes(buffers[fds[1]]), bytes(report), cut_short


def _read_into(fd: int, buf: bytearray, cap: int, sel: selectors.BaseSelector) -> bool:
    """Append what ``fd`` has to ``buf`` up to ``cap`` bytes; False once more than that came."""
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return True
    if not chunk:
        sel.unregister(fd)
        return True
    room = max(cap - len(buf), 0)
    buf += chunk[:room]
    return len(chunk) <= room


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int | None]:
    try:
        fd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):  # Python < 3.9 or Linux < 5.3
        fd = None
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the zombie unreaped, so its pid (and process group id) cannot be reused
    # before _kill_everything has signalled the group.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_everything(pid: int, uid: int | None, plan: _Plan) -> None:
    """SIGKILL the run's process group and, with a dedicated uid, every process of that uid.

    The supervisor has normally killed everything already; this is the second line, for a
    supervisor that did not get to (killed, or no subreaper without ctypes).
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if uid is None:
        return
    for _ in range(3):
        if not _live_pids_of(uid):
            return
        # kill(-1) from that uid reaches exactly its processes: no pid-reuse race from here.
        _run_as(uid, [plan.python, "-I", "-S", "-c", "import os\ntry: os.kill(-1, 9)\nexcept OSError: pass"], 10)


def _live_pids_of(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = Path("/proc", name, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)] and not fields.get(
            "State", ""
        ).strip().startswith("Z"):
            pids.append(int(name))
    return pids


def _remove_files_of(uid: int) -> None:
    """Delete what ``uid`` left in the world-writable directories (its processes are dead).

    Only entries owned by ``uid``, searched in the top level and in world-writable
    subdirectories (a uid can create files nowhere else there); never following a symlink.
    """
    todo = [d for d in _WORLD_WRITABLE_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    todo += [] if tempfile.gettempdir() in todo else [tempfile.gettempdir()]
    seen: set[tuple[int, int]] = set()
    while todo:
        directory = todo.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid == uid:
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(entry.path, ignore_errors=True)  # fd-based: symlink-safe
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
            elif (
                stat.S_ISDIR(st.st_mode)
                and st.st_mode & stat.S_IWOTH
                and (st.st_dev, st.st_ino) not in seen
            ):
                seen.add((st.st_dev, st.st_ino))
                todo.append(entry.path)


def _parse_report(raw: bytes) -> dict | None:
    try:
        report = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return report if isinstance(report, dict) and "wait_status" in report else None


_SECCOMP_WHAT = (
    "a forbidden system call (process creation, exec, a signal to another process, ptrace, "
    "mknod, unshare or a network socket)"
)


def _classify(
    rc: int | None,
    killed_for: str | None,
    report: dict | None,
    stderr: str,
    cpu: float,
    *,
    cpu_limit: int,
    timeout_s: float,
    memory_bytes: int,
    max_file_bytes: int,
    max_output_bytes: int,
    max_disk_bytes: int,
) -> tuple[SandboxStatus, str]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    if killed_for == "output_limit":
        return "output_limit", f"output exceeded {max_output_bytes} bytes on stdout or stderr"
    if report is not None and report.get("disk_error"):
        return "disk_limit", (
            f"disk use of the sandbox directory could not be measured ({report['disk_error']}); "
            f"counted as over max_disk_bytes={max_disk_bytes}"
        )
    if report is not None and report.get("disk_bytes") is not None:
        return "disk_limit", (
            f"the sandbox directory grew past max_disk_bytes={max_disk_bytes} "
            f"({report['disk_bytes']} bytes measured)"
        )
    if report is not None and report.get("blocked"):
        return "blocked", "sandbox guard blocked " + str(report["blocked"])
    if report is not None and report.get("seccomp") and rc == -signal.SIGSYS:
        return "blocked", "sandbox seccomp filter blocked " + _SECCOMP_WHAT
    if killed_for == "timeout":
        return "timeout", f"wall time exceeded {timeout_s:g} s"
    if report is None:
        detail = f"; last stderr line: {last}" if last else ""
        return "crashed", f"sandbox supervisor ended without a verdict (exit status {rc}){detail}"
    if rc == -signal.SIGXCPU or (rc == -signal.SIGKILL and cpu >= cpu_limit):
        return "cpu_limit", f"CPU time exceeded {cpu_limit} s"
    if rc == -signal.SIGXFSZ or (rc != 0 and f"[Errno {errno.EFBIG}]" in last):
        return "file_limit", f"wrote a file larger than max_file_bytes={max_file_bytes}"
    if rc != 0 and any("MemoryError" in line for line in lines[-3:]):
        return "memory_limit", f"memory limit of {memory_bytes} bytes reached (MemoryError)"
    if rc is not None and rc < 0:
        name = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        return "crashed", f"killed by signal {name}"
    if rc != 0:
        return "failed", last or f"exit status {rc}"
    return "ok", ""


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


# --- one-time probes: which interpreter, whether root can be dropped, whether netns works ----


@functools.cache
def _child_source() -> str:
    return Path(__file__).with_name("_sandbox_child.py").read_text(encoding="utf-8")


@functools.cache
def _plan(python: str | None) -> _Plan:
    chosen = python or sys.executable
    if not chosen:
        raise SandboxError("sys.executable is empty; pass python='/path/to/python3'")
    if os.geteuid() != 0:
        return _Plan(chosen, drop_root=False, netns=())
    netns = _netns_prefix()
    candidates = [chosen]
    if python is None:
        same_version = shutil.which(
            f"python{sys.version_info[0]}.{sys.version_info[1]}", path=_SYSTEM_PATH
        )
        candidates += [same_version] if same_version else []
    with _lease_uid() as uid:
        for candidate in candidates:
            if _runs_as(candidate, uid):
                return _Plan(candidate, drop_root=True, netns=netns)
    warnings.warn(
        f"qstar_native sandbox: {chosen!r} cannot be run by an unprivileged uid (is it under "
        "/root?), so sandboxed programs run as root with resource limits and the audit hook "
        "only; pass python= an interpreter readable by all users",
        RuntimeWarning,
        stacklevel=3,
    )
    return _Plan(chosen, drop_root=False, netns=netns)


def _run_as(uid: int, argv: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """A short helper command as ``uid``, silent, in / with the sandbox's stripped environment."""
    return subprocess.run(
        argv,
        user=uid,
        group=uid,
        extra_groups=[],
        cwd="/",
        env=_child_env("/"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        timeout=timeout,
        check=False,
    )


def _runs_as(python: str, uid: int) -> bool:
    try:
        done = _run_as(uid, [python, "-I", "-S", "-B", "-c", "import encodings, math, re, collections, json"], 30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _netns_prefix() -> tuple[str, ...]:
    unshare = shutil.which("unshare", path=_SYSTEM_PATH)
    true = shutil.which("true", path=_SYSTEM_PATH)
    if not unshare or not true:
        return ()
    try:
        done = subprocess.run(
            [unshare, "-n", "--", true], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    return (unshare, "-n", "--") if done.returncode == 0 else ()


@contextlib.contextmanager
def _lease_uid() -> Iterator[int]:
    """Hold an exclusive lock on a random uid of _UID_RANGE (across threads and processes)."""
    lock_dir = Path(tempfile.gettempdir(), "qstar-sandbox-uids")
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    info = lock_dir.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SandboxError(
            f"{lock_dir} must be a directory owned by uid {os.geteuid()} with mode 0700"
        )
    rng = random.SystemRandom()
    for _ in range(256):
        uid = rng.choice(_UID_RANGE)
        fd = os.open(lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield uid
        finally:
            os.close(fd)  # closing releases the lock
        return
    raise SandboxError(f"no free sandbox uid in {_UID_RANGE}: too many concurrent runs")
