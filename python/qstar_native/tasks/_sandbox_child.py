"""The sandbox's launcher: the first code that runs inside the sandboxed interpreter.

Not imported by the parent: ``sandbox.py`` reads this file's text and runs it with
``python -I -S -B -c <this source> <config json>`` in the fresh working directory. In order, it

1. reads the program (``program.py`` in the working directory),
2. sets the resource limits (soft = hard, so the program cannot raise them back),
3. drops root to the sandbox uid/gid when the config names one (after the limits: RLIMIT_NPROC
   is exempt for root, so it only bites once the uid is unprivileged),
4. installs the audit-hook guard, which ends the process with exit status ``BLOCKED_EXIT`` and a
   ``qstar-sandbox: blocked ...`` line on stderr on a forbidden event; a hook that raised
   instead could be caught by the program,
5. runs the program as ``__main__``.

Standard library only; it must run on any interpreter the parent picks.
"""

import json
import os
import resource
import sys

BLOCKED_EXIT = 86
MARKER = "qstar-sandbox: blocked "

# Whole families of events: processes, signals to other processes, sockets, native code.
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
    }
)
_BLOCKED_PREFIXES = ("socket.", "ctypes.")
# Modules whose functions raise no audit event of their own (``fork_exec``, raw ``dlopen``).
_BLOCKED_IMPORTS = frozenset({"_posixsubprocess", "_ctypes", "ctypes"})
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
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_ALWAYS_WRITABLE = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})


def _install_guard(root: str) -> None:
    # Bind everything the hook needs now: the program may rebind os.* afterwards.
    write, exit_, realpath, fsdecode, getpid = (
        os.write,
        os._exit,
        os.path.realpath,
        os.fsdecode,
        os.getpid,
    )
    inside = root.rstrip("/") + "/"

    def deny(what: str) -> None:
        try:
            write(2, ("\n" + MARKER + what + "\n").encode("utf-8", "replace"))
        finally:
            exit_(BLOCKED_EXIT)

    def resolve(path: object) -> "str | None":
        if isinstance(path, int):  # an already open descriptor
            return None
        try:
            return realpath(fsdecode(path))
        except (TypeError, ValueError, OSError):
            return "<unresolvable>"

    def check_write(event: str, path: object) -> None:
        if isinstance(path, (str, bytes)) and fsdecode(path) in _ALWAYS_WRITABLE:
            return
        full = resolve(path)
        if full is not None and full != root and not full.startswith(inside):
            deny(f"{event}: write outside the sandbox directory: {full}")

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
                return
            full = resolve(path)
            # Other processes' /proc entries (environ, cmdline, fds) are off limits.
            if full is not None and full.startswith("/proc/"):
                pid = full.split("/")[2]
                if pid.isdigit() and int(pid) != getpid():
                    deny(f"open: read of another process's {full}")
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args):
                    check_write(event, args[i])

    sys.addaudithook(hook)


def _main() -> None:
    config = json.loads(sys.argv[1])
    with open(config["program"], encoding="utf-8") as f:
        source = f.read()
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
    if config["guard"]:
        _install_guard(os.path.realpath(os.getcwd()))
    sys.argv = [config["program"]]
    namespace = {
        "__name__": "__main__",
        "__file__": config["program"],
        "__builtins__": __builtins__,
    }
    code = compile(source, config["program"], "exec")
    del config, source
    exec(code, namespace)


if __name__ == "__main__":
    _main()
