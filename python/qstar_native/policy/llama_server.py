"""Run llama.cpp's ``llama-server`` next to a search: start it on 127.0.0.1, wait until it is
healthy, kill it by pid. For tests, benchmarks and single-machine use; on GPUs, run vLLM/SGLang
or ``llama-server`` yourself and pass its URL.

``scripts/build_llama_server.sh`` builds the binary (and keeps llama.cpp's GGUF converter beside
it); :func:`write_f32_gguf` writes a Hugging Face model as an F32 GGUF so the server computes with
exactly the weights the in-process policy has.

Example:
    >>> with LlamaServer("model-f32.gguf", parallel=4) as server:  # doctest: +SKIP
    ...     policy = ServerPolicy(server.url, tokenizer)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

__all__ = ["LlamaServer", "find_llama_server", "write_f32_gguf"]

CACHE_ENV = "QSTAR_LLAMA_CACHE"
BINARY_ENV = "QSTAR_LLAMA_SERVER"


def find_llama_server() -> Path | None:
    """``$QSTAR_LLAMA_SERVER``, else the newest build in ``$QSTAR_LLAMA_CACHE`` (default
    ``~/.cache/qstar_native/llama-server``), else None."""
    env = os.environ.get(BINARY_ENV)
    if env:
        return Path(env)
    cache = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "qstar_native" / "llama-server")
    found = sorted(p for p in cache.glob("*/llama-server") if p.is_file())
    return found[-1] if found else None


def write_f32_gguf(model_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, binary: Path | None = None) -> Path:
    """Writes the Hugging Face model in ``model_dir`` as an F32 GGUF at ``out`` with llama.cpp's
    own converter (kept beside the built binary; needs the ``gguf`` and ``sentencepiece``
    packages). Returns ``out``."""
    binary = binary or find_llama_server()
    convert = binary.parent / "convert" if binary is not None else None
    if convert is None or not (convert / "convert_hf_to_gguf.py").is_file():
        raise FileNotFoundError("llama.cpp's converter is not beside llama-server; build it with scripts/build_llama_server.sh")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(convert / "gguf-py"), str(convert)]))
    proc = subprocess.run([sys.executable, str(convert / "convert_hf_to_gguf.py"), str(model_dir), "--outtype", "f32", "--outfile", str(out)],
                          env=env, capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"convert_hf_to_gguf.py failed on {model_dir}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return Path(out)


class LlamaServer:
    """``llama-server -m GGUF`` on 127.0.0.1 and a free port, ``parallel`` slots (the most samples
    one request gets), ``context`` tokens shared by the slots; extra command-line ``args``.
    ``url`` once started; ``cpu_seconds()`` its CPU time so far (for benchmarks)."""

    def __init__(self, gguf: str | os.PathLike[str], *, binary: Path | None = None, parallel: int = 4, context: int = 16384,
                 threads: int | None = None, args: tuple[str, ...] = (), startup_timeout: float = 120.0) -> None:  # fmt: skip
        self.binary = binary or find_llama_server()
        if self.binary is None or not Path(self.binary).is_file():
            raise FileNotFoundError("no llama-server: build it with scripts/build_llama_server.sh, or set QSTAR_LLAMA_SERVER")
        self.gguf, self.parallel, self.context, self.threads, self.args = Path(gguf), parallel, context, threads, tuple(args)
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> "LlamaServer":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
        cmd = [str(self.binary), "-m", str(self.gguf), "--host", "127.0.0.1", "--port", str(port), "-c", str(self.context),
               "--parallel", str(self.parallel), "-t", str(self.threads or os.cpu_count() or 1), *self.args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with status {self.proc.returncode}; its log: {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"llama-server did not become healthy within {self.startup_timeout:g} s; its log: {self.log.name}")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server process so far (Linux)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
