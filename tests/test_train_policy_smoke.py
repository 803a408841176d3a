"""Smoke test of scripts/train_policy.py and scripts/eval_greedy.py: 50 instances, 2 steps, a tiny
model. Checks the output files load with transformers, digits are single tokens, the held-out
check ran and the log has its fields; it says nothing about accuracy."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _load(name: str):
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reverse_results_roundtrip():
    tp = _load("train_policy")
    step = "2 * 13 = <<2*13=26>>26 boxes, then <<26+104=130>>130"
    assert tp.reverse_results(step) == "2 * 13 = <<2*13=62>>26 boxes, then <<26+104=031>>130"
    assert tp.unreverse_results(tp.reverse_results(step)) == step


def test_train_two_steps_and_eval(tmp_path):
    tp = _load("train_policy")
    out = tmp_path / "policy"
    log = tp.main(["--out", str(out), "--train-seeds", "1000:1001", "--check-seeds", "0:1", "--limit", "50",
                   "--tokenizer-docs", "50", "--vocab", "300", "--hidden", "32", "--layers", "1", "--heads", "2",
                   "--batch-size", "8", "--steps", "2", "--warmup", "1", "--log-every", "1", "--bf16", "off"])
    assert log["steps"] == 2 and len(log["curve"]) == 2
    assert log["data"]["train_seeds"] == "1000:1001" and log["data"]["check_seeds"] == "0:1"
    assert {"git_commit", "tokens_per_s", "final_loss", "args"} <= log.keys()
    saved = json.loads((out / "train_log.json").read_text())
    assert saved["steps"] == 2

    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(out)
    ids = tok("x = <<12*34=408>>408\n", add_special_tokens=False)["input_ids"]
    pieces = [tok.decode([i]) for i in ids]
    assert "408" not in pieces and "4" in pieces and "\n" in pieces
    assert tok.eos_token == "</s>" and tok.pad_token == "<pad>"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert (out / "model.safetensors").exists()
    assert model.config.vocab_size == len(tok)

    ev = _load("eval_greedy")
    res = ev.main(["--model", str(out), "--seeds", "0:1", "--limit", "3", "--max-new-tokens", "4", "--show", "0"])
    assert res["n"] == 3 and 0 <= res["greedy_acc"] <= 1
    lo, hi = ev.wilson(0, 3)
    assert abs(lo) < 1e-12 and 0.5 < hi < 0.6  # z^2 / (n + z^2) = 0.5615
