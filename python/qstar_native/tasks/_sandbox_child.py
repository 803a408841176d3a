"""The sandbox's launcher: the first code that runs inside the sandboxed interpreter.

Not imported by the parent: ``sandbox.py`` reads this file's text and runs it with
``python -I -S -B -c <this source> <config json>`` in the fresh working directory. The process
splits in two with ``fork``:

- the **supervisor** (this process; it never runs program code) becomes a child subreaper
  (``PR_SET_CHILD_SUBREAPER``: every orphan of the run is re-parented to it, even one that called
  ``setsid``) and non-dumpable (the program's uid cannot ptrace it or read its ``/proc`` entries),
  waits for the program, measures the working directory's disk use (``max_disk_bytes``), and
  when the program ends, or the parent asks with SIGTERM, kills every process left under it.
  It then writes its verdict as one JSON object to ``report_fd``, a pipe only it holds: the
  program closes its copy before it runs, so nothing the program prints or exits with can
  forge a verdict.
- the **program process** closes ``report_fd``, sets the resource limits (soft = hard), drops
  root to the sandbox uid when the config names one (after the limits: RLIMIT_NPROC is exempt
  for root), and with ``guard`` installs a seccomp filter (no new processes, no exec, no signals
  to other processes, no ptrace, no ``mknod``, no network sockets: the kernel kills the process
  with SIGSYS) and then the audit-hook guard. A hook event the guard forbids ends the process with
  exit status ``BLOCKED_EXIT`` after the guard wrote ``<token> blocked <what>`` on a pipe to the
  supervisor. The token is random per run and lives only in the hook's closure, so a program that
  writes a look-alike line there (or prints the ``qstar-sandbox: blocked`` line and exits 86)
  is reported as what it is: a failure.

Standard library only; it must run on any interpreter the parent picks. ``ctypes`` (for
``prctl``) is used before any program code runs; without it there is no subreaper, no seccomp
filter, and the parent's process-group kill is the only cleanup.
"""

import json
import os
import resource
import signal
import stat
import struct
import sys
import time

BLOCKED_EXIT = 86
MARKER = "qstar-sandbox: blocked "
_DISK_POLL_S = 0.02  # how often the supervisor measures the working directory (~0.2 ms a time)
_ENTRY_BYTES = 4096  # every file or directory costs at least one block: bounds the walk as well
_MAX_DEPTH = 64  # deeper trees count as over the disk limit (one descriptor per level)

# prctl options (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_SECCOMP = 22
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38

# Whole families of events: processes, signals to other processes, sockets, native code, and
# the gc walks that could reach the guard's own closure.
_BLOCKED_EVENTS = frozenset(
    {
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "subprocess.Popen",
        "os.kill",
        "os.killpg",
        "pty.spawn",
        "os.startfile",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
    }
)
_BLOCKED_PREFIXES = ("socket.", "ctypes.")
# Modules whose functions raise no audit event of their own (``fork_exec``, ``shm_open``, raw
# ``dlopen``), and ``_imp`` itself: a fresh copy of it would not have the wrapped create_builtin.
_BLOCKED_IMPORTS = frozenset({"_posixsubprocess", "_posixshmem", "_ctypes", "ctypes", "_imp"})
# Events that create, change or delete a path: argument positions holding such paths.
_PATH_EVENTS = {
    "os.mkdir": (0,),
    "os.rmdir": (0,),
    "os.remove": (0,),
    "os.rename": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (1,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "sqlite3.connect": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_ALWAYS_WRITABLE = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", ":memory:", ""})

# --- seccomp ---------------------------------------------------------------------------------
# Syscall numbers per machine (x86_64: arch/x86/entry/syscalls/syscall_64.tbl; aarch64:
# include/uapi/asm-generic/unistd.h). Only x86_64 is exercised by the tests.
_SECCOMP_ARCH = {
    "x86_64": {
        "audit_arch": 0xC000003E,
        "x32_bit": 0x40000000,  # x32 syscalls share the arch value: refuse them all
        "clone": 56,
        "clone3": 435,
        "socket": 41,
        "kill": 62,
        "tgkill": 234,
        "forbidden": {
            "fork": 57,
            "vfork": 58,
            "execve": 59,
            "execveat": 322,
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "tkill": 200,
            "rt_sigqueueinfo": 129,
            "rt_tgsigqueueinfo": 297,
            "pidfd_send_signal": 424,
            "pidfd_getfd": 438,
            "mknod": 133,
            "mknodat": 259,
            "unshare": 272,
            "setns": 308,
            "io_uring_setup": 425,
        },
    },
    "aarch64": {
        "audit_arch": 0xC00000B7,
        "x32_bit": None,
        "clone": 220,
        "clone3": 435,
        "socket": 198,
        "kill": 129,
        "tgkill": 131,
        "forbidden": {
            "execve": 221,
            "execveat": 281,
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "tkill": 130,
            "rt_sigqueueinfo": 138,
            "rt_tgsigqueueinfo": 240,
            "pidfd_send_signal": 424,
            "pidfd_getfd": 438,
            "mknodat": 33,
            "unshare": 97,
            "setns": 268,
            "io_uring_setup": 425,
        },
    },
}
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_CLONE_THREAD = 0x00010000
_AF_UNIX = 1
_EPERM, _ENOSYS = 1, 38


def _seccomp_program(machine: str, own_pid: int) -> "bytes | None":
    """The BPF filter as packed ``struct sock_filter``s; None on a machine without a table."""
    table = _SECCOMP_ARCH.get(machine)
    if table is None:
        return None
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|..|K, BPF_RET|K
    nr, arch, arg = 0, 4, lambda i: 16 + 8 * i  # offsets in struct seccomp_data (low 32 bits)
    code = [(ld, 0, 0, arch), (jeq, 0, "kill", table["audit_arch"]), (ld, 0, 0, nr)]
    if table["x32_bit"] is not None:
        code.append((jge, "kill", 0, table["x32_bit"]))
    code += [
        # glibc tries clone3 first and falls back to clone, whose flags a filter can read.
        (jeq, "enosys", 0, table["clone3"]),
        (jeq, "clone", 0, table["clone"]),
        (jeq, "socket", 0, table["socket"]),
        (jeq, "kill_args", 0, table["kill"]),
        (jeq, "tgkill_args", 0, table["tgkill"]),
    ]
    code += [(jeq, "kill", 0, number) for number in sorted(table["forbidden"].values())]
    code += [(ret, 0, 0, _RET_ALLOW)]
    labels = {}
    # Threads are clone(CLONE_THREAD ...); anything else makes a process.
    labels["clone"] = len(code)
    code += [(ld, 0, 0, arg(0)), (jset, "allow", "kill", _CLONE_THREAD)]
    # Unix sockets fail softly (libc's nscd and uuidd clients fall back); others end the run.
    labels["socket"] = len(code)
    code += [(ld, 0, 0, arg(0)), (jeq, "eperm", "kill", _AF_UNIX)]
    # Signals only to itself, and never SIGSYS: death by SIGSYS then always means "seccomp".
    labels["kill_args"] = len(code)
    code += [(ld, 0, 0, arg(0)), (jeq, 0, "kill", own_pid), (ld, 0, 0, arg(1))]
    code += [(jeq, "kill", "allow", signal.SIGSYS)]
    labels["tgkill_args"] = len(code)
    code += [(ld, 0, 0, arg(0)), (jeq, 0, "kill", own_pid), (ld, 0, 0, arg(2))]
    code += [(jeq, "kill", "allow", signal.SIGSYS)]
    for name, value in (
        ("allow", _RET_ALLOW),
        ("kill", _RET_KILL_PROCESS),
        ("eperm", _RET_ERRNO | _EPERM),
        ("enosys", _RET_ERRNO | _ENOSYS),
    ):
        labels[name] = len(code)
        code.append((ret, 0, 0, value))

    def offset(at: int, target: "int | str") -> int:
        if isinstance(target, int):
            return target
        jump = labels[target] - at - 1
        assert 0 <= jump < 256, (target, jump)
        return jump

    return b"".join(
        struct.pack("=HBBI", op, offset(i, jt), offset(i, jf), k & 0xFFFFFFFF)
        for i, (op, jt, jf, k) in enumerate(code)
    )


def _libc_prctl():  # -> Callable[[int, int, int | bytes], None] | None
    """``prctl`` through ctypes (raises OSError on failure), or None where ctypes is missing."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4

    class SockFprog(ctypes.Structure):  # struct sock_fprog
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    def call(option: int, arg2: int = 0, arg3: "int | bytes" = 0) -> None:
        if isinstance(arg3, bytes):  # a BPF program: pass a pointer to a sock_fprog
            buffer = ctypes.create_string_buffer(arg3, len(arg3))
            fprog = SockFprog(len(arg3) // 8, ctypes.addressof(buffer))
            arg3 = ctypes.addressof(fprog)
        if prctl(option, arg2, arg3, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl({option}) failed")

    return call


# --- the program process ---------------------------------------------------------------------


def _install_guard(root: str, guard_fd: int, secret: list) -> None:
    # Bind everything the hook needs now: the program may rebind os.* afterwards.
    write, exit_, realpath, fsdecode, getpid, isdir, isabs = (
        os.write,
        os._exit,
        os.path.realpath,
        os.fsdecode,
        os.getpid,
        os.path.isdir,
        os.path.isabs,
    )
    # From now on the token is only in this closure, out of every frame's locals. It is written
    # only as the process ends: a program that reopens the pipe through /proc/self/fd finds
    # nothing in it while it runs.
    token = secret.pop()
    inside = root.rstrip("/") + "/"
    os.set_blocking(guard_fd, False)  # a program that filled the pipe loses its reason, no more

    def deny(what: str) -> None:
        what = what.replace("\n", " ")[:1000]  # one line, under PIPE_BUF: written atomically
        try:
            write(guard_fd, f"{token} blocked {what}\n".encode("utf-8", "replace"))
        except OSError:  # the program closed or filled the pipe: it loses its verdict, no more
            pass
        try:
            write(2, ("\n" + MARKER + what + "\n").encode("utf-8", "replace"))  # for humans only
        finally:
            exit_(BLOCKED_EXIT)

    def within(full: str) -> bool:
        return full == root or full.startswith(inside)

    def resolve(event: str, path: object) -> "str | None":
        if isinstance(path, int):  # an already open descriptor
            return None
        try:
            text = fsdecode(path)
        except (TypeError, ValueError):
            return "<unresolvable>"
        # The audit event of open() does not carry dir_fd, so a relative path is resolved from
        # the working directory. That is sound only while every directory descriptor is inside
        # the working directory (opening one outside is refused below) and a relative path
        # cannot climb out of the directory it is relative to: hence no ".." at all.
        if not isabs(text) and ".." in text.replace("\\", "/").split("/"):
            deny(f"{event}: relative path with '..' (it could be relative to any dir_fd): {text}")
        try:
            return realpath(text)
        except (ValueError, OSError):
            return "<unresolvable>"

    def check_write(event: str, path: object) -> None:
        if isinstance(path, (str, bytes)) and fsdecode(path) in _ALWAYS_WRITABLE:
            return
        if isinstance(path, str) and path.startswith("file:"):  # sqlite3 URI: any path
            deny(f"{event}: URI filename {path}")
        full = resolve(event, path)
        if full is not None and not within(full):
            deny(f"{event}: write outside the sandbox directory: {full}")

    def check_symlink_target(target: object) -> None:
        # A link inside the directory that points out of it would turn a checked relative path
        # into an unchecked one; an absolute target is fixed, a relative one without ".." stays
        # below the link wherever the link is moved.
        try:
            text = fsdecode(target)
        except (TypeError, ValueError):
            deny("os.symlink: unresolvable target")
        if isabs(text):
            full = realpath(text)
            if not within(full):
                deny(f"os.symlink: link to outside the sandbox directory: {full}")
        elif ".." in text.replace("\\", "/").split("/"):
            deny(f"os.symlink: relative link target with '..': {text}")

    def check_read(event: str, path: object) -> None:
        full = resolve(event, path)
        if full is None or within(full):
            return
        if full.startswith("/proc/"):
            parts = full.split("/")
            # Other processes' /proc entries (environ, cmdline, fds) are off limits, and so is
            # this process's memory (where the guard's token lives).
            if parts[2].isdigit() and int(parts[2]) != getpid():
                deny(f"{event}: read of another process's {full}")
            if parts[-1] == "mem":
                deny(f"{event}: read of process memory {full}")
        if isdir(full):
            deny(f"{event}: directory outside the sandbox directory (usable as dir_fd): {full}")

    def hook(event: str, args: tuple) -> None:
        if event in _BLOCKED_EVENTS or event.startswith(_BLOCKED_PREFIXES):
            deny(event)
        elif event == "import":
            if args and args[0] in _BLOCKED_IMPORTS:
                deny(f"import {args[0]}")
        elif event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing:
                check_write(event, path)
            else:
                check_read(event, path)
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args):
                    check_write(event, args[i])
            if event == "os.symlink" and args:
                check_symlink_target(args[0])

    # _imp.create_builtin loads a built-in module with no "import" event (create_dynamic raises
    # one): route it past the same list. A program can still dig the original out of this
    # wrapper's closure; the seccomp filter is what stops the process creation after that.
    import _imp

    create_builtin = _imp.create_builtin

    def guarded_create_builtin(spec: object) -> object:
        name = getattr(spec, "name", None)
        if name in _BLOCKED_IMPORTS:
            deny(f"_imp.create_builtin {name}")
        return create_builtin(spec)

    _imp.create_builtin = guarded_create_builtin
    for name in ("ctypes", "ctypes._endian", "_ctypes", "_posixsubprocess", "_posixshmem"):
        sys.modules.pop(name, None)  # a later import raises the "import" event again
    sys.addaudithook(hook)


def _run_program(
    config: dict, source: str, root: str, prctl, seccomp: "bytes | None", guard_fd: int, secret: list
) -> None:
    limits = (
        (resource.RLIMIT_CPU, config["cpu_s"], config["cpu_s"] + 1),  # SIGXCPU, then SIGKILL
        (resource.RLIMIT_AS, config["memory_bytes"], config["memory_bytes"]),
        (resource.RLIMIT_NPROC, config["max_processes"], config["max_processes"]),
        (resource.RLIMIT_FSIZE, config["max_file_bytes"], config["max_file_bytes"]),
        (resource.RLIMIT_NOFILE, config["max_open_files"], config["max_open_files"]),
        (resource.RLIMIT_CORE, 0, 0),
    )
    for kind, soft, hard in limits:
        resource.setrlimit(kind, (soft, hard))
    uid = config["uid"]
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    if prctl is not None:
        # Dumpable again (the supervisor is not): the supervisor, with this uid when not root,
        # reads /proc/<pid>/fd to count deleted-but-open files against the disk quota.
        prctl(_PR_SET_DUMPABLE, 1)
        if seccomp is not None:  # a failure raises: the program never runs unfiltered
            prctl(_PR_SET_NO_NEW_PRIVS, 1)
            prctl(_PR_SET_SECCOMP, 2, seccomp)  # SECCOMP_MODE_FILTER
    if config["guard"]:
        _install_guard(root, guard_fd, secret)
    secret.clear()
    sys.argv = [config["program"]]
    namespace = {
        "__name__": "__main__",
        "__file__": config["program"],
        "__builtins__": __builtins__,
    }
    code = compile(source, config["program"], "exec")
    del config, source, prctl
    exec(code, namespace)


# --- the supervisor --------------------------------------------------------------------------


def _children_of(pid: int) -> "list[int]":
    """Direct children of ``pid`` (``/proc/<pid>/task/*/children``, else a scan of /proc)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: "list[int]" = []
    found_file = False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
            found_file = True
        except (OSError, ValueError):
            continue
    if found_file:
        return kids
    for name in os.listdir("/proc"):  # kernels without CONFIG_PROC_CHILDREN
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(pid):
                kids.append(int(name))
    return kids


def _kill_descendants() -> int:
    """SIGKILL and reap every process under this subreaper; returns how many there were."""
    me, killed = os.getpid(), set()
    while True:
        for pid in _children_of(me):
            # Our unreaped child: its pid cannot be reused before we wait for it.
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            killed.add(pid)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:  # none left, and orphans re-parent before their parent is reaped
            return len(killed)


def _disk_use(limit: int, pid: int) -> "tuple[int, str | None]":
    """Bytes used by the working directory plus deleted files the run still holds open.

    Stops counting past ``limit``. The error string says why the tree could not be measured
    (an unreadable or too deep directory), which the verdict counts as over the limit.
    """
    seen: "set[tuple[int, int]]" = set()
    total = 0

    def subdirectories(fd: int) -> "list[str]":
        nonlocal total
        names = []
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed while we looked
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += max(st.st_blocks * 512, _ENTRY_BYTES)
                if stat.S_ISDIR(st.st_mode):
                    names.append(entry.name)
        return names

    # Descriptor-based, O_NOFOLLOW | O_DIRECTORY: whatever the program swaps in while we walk,
    # we never follow a link out of the directory, nor open a FIFO or a device (as root).
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    stack: "list[tuple[int, object]]" = []
    try:
        top = os.open(".", flags)
        stack.append((top, iter(subdirectories(top))))
        while stack and total <= limit:
            fd, names = stack[-1]
            name = next(names, None)  # type: ignore[call-overload]
            if name is None:
                os.close(stack.pop()[0])
                continue
            if len(stack) >= _MAX_DEPTH:
                return total, f"directories nested deeper than {_MAX_DEPTH}"
            try:
                sub = os.open(name, flags, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError):  # removed or replaced meanwhile
                continue
            stack.append((sub, iter(subdirectories(sub))))
    except OSError as exc:  # unreadable (chmod 000), or a directory swapped for a symlink
        return total, f"{type(exc).__name__}: {exc}"
    finally:
        for fd, _ in stack:
            os.close(fd)
    # Written, kept open, unlinked (or a memfd): invisible to the walk, still on a disk or in RAM.
    todo, visited = [pid], set()
    while todo and total <= limit:
        proc = todo.pop()
        if proc in visited:
            continue
        visited.add(proc)
        try:
            fds = os.listdir(f"/proc/{proc}/fd")
        except OSError:
            continue
        for fd_name in fds:
            try:
                st = os.stat(f"/proc/{proc}/fd/{fd_name}")  # the open file itself, not opened
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 0 and key not in seen:
                seen.add(key)
                total += st.st_blocks * 512
        todo += _children_of(proc)
    return total, None


def _read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _supervise(pid: int, guard_fd: int, token: str, max_disk_bytes: int, seccomp: bool) -> dict:
    """Wait for the program (or SIGTERM, or the disk quota), then kill what is left."""
    report: dict = {"stopped": False, "disk_bytes": None, "disk_error": None}
    status = usage = None
    waiting = {signal.SIGCHLD, signal.SIGTERM}
    next_check = 0.0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done == pid:
            break
        status = None
        now = time.monotonic()
        if now >= next_check:
            used, error = _disk_use(max_disk_bytes, pid)
            if error is not None or used > max_disk_bytes:
                report["disk_bytes"], report["disk_error"] = used, error
                break
            cost = time.monotonic() - now
            next_check = now + cost + max(_DISK_POLL_S, 2 * cost)  # a big tree: poll less often
        info = signal.sigtimedwait(waiting, max(0.0, next_check - time.monotonic()))
        if info is not None and info.si_signo == signal.SIGTERM:  # the parent's "stop now"
            report["stopped"] = True
            break
    if status is None:
        os.kill(pid, signal.SIGKILL)  # still our unreaped child: no pid-reuse race
        _, status, usage = os.wait4(pid, 0)
    report["leftovers"] = _kill_descendants()
    report["wait_status"] = status
    report["cpu_s"] = usage.ru_utime + usage.ru_stime
    # With the filter on, death by SIGSYS can only be its doing (it refuses SIGSYS as a signal).
    report["seccomp"], report["blocked"] = seccomp, None
    prefix = token + " blocked "
    for line in _read_available(guard_fd).decode("utf-8", "replace").splitlines():
        if line.startswith(prefix):  # anything else was written by the program itself
            report["blocked"] = line[len(prefix) :]
            break
    return report


def _main() -> None:
    config = json.loads(sys.argv[1])
    with open(config["program"], encoding="utf-8") as f:
        source = f.read()
    root = os.path.realpath(os.getcwd())
    report_fd = config["report_fd"]
    prctl = _libc_prctl()
    if prctl is not None:
        prctl(_PR_SET_CHILD_SUBREAPER, 1)
        prctl(_PR_SET_DUMPABLE, 0)  # the program's uid may not ptrace or read us
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))  # the caller died: clean up all the same
        if os.getppid() != config["parent_pid"]:
            os._exit(1)  # it died before the line above took effect
    seccomp = None
    if prctl is not None and config["guard"]:
        seccomp = _seccomp_program(os.uname().machine, 0)  # None: no table for this machine
    # A list, emptied by the program process, so no frame's locals hold the token there.
    token = os.urandom(16).hex()
    secret = [token]
    guard_r, guard_w = os.pipe()
    # Blocked before fork, so that no SIGTERM or SIGCHLD is lost; the program unblocks them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGTERM})
    pid = os.fork()
    if pid == 0:
        # The program process. An exception (the program's, or a failed limit) ends it as an
        # uncaught exception ends python: traceback on stderr, exit status 1.
        del token
        os.close(report_fd)
        os.close(guard_r)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if seccomp is not None:
            seccomp = _seccomp_program(os.uname().machine, os.getpid())
        _run_program(config, source, root, prctl, seccomp, guard_w, secret)
        sys.exit(0)  # never fall through into the supervisor's code
    os.close(guard_w)
    del source
    report = _supervise(pid, guard_r, token, config["max_disk_bytes"], seccomp is not None)
    os.write(report_fd, json.dumps(report).encode())


if __name__ == "__main__":
    _main()
