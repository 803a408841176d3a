"""Bad input to the command line ends with one ``qstar: error:`` line and exit status 2, before
any model loads where the input alone shows the mistake (one test per case of the hardening
issue), and the options users bring from lm-eval / vLLM / transformers work.

Most tests here fail before the weights load (``no_weights`` makes loading them a test failure);
the few that run a model use budgets of a handful of tokens."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qstar_native import pretrained, solver
from qstar_native.cli import main

QUESTION = "A baker makes 12 trays of 8 muffins. He sells 30 muffins. How many muffins are left?"
GOOD = {"question": "What is 2 + 3?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"}
TINY = ["--max-steps", "2", "--max-step-tokens", "8", "--threads", "1"]  # a run of a few tokens


@pytest.fixture
def no_weights(monkeypatch):
    """Loading a policy's weights fails the test: the error must come before."""

    def refuse(*a, **k):
        raise AssertionError("the model's weights were loaded before the error")

    monkeypatch.setattr(pretrained, "_load_model", refuse)


def one_error(capsys, argv, *fragments):
    """main(argv) exits 2 with one 'qstar: error:' line holding every fragment, no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("qstar: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def parse_error(capsys, argv, fragment):
    """argparse refuses argv: exit 2, its usage and one error line naming the problem."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("qstar") and fragment in err.strip().splitlines()[-1], err
    return err


def write_jsonl(path: Path, *records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def own_model(tmp_path):
    """A copy of the embedded policy, as a user's own model directory."""
    d = tmp_path / "own_model"
    shutil.copytree(pretrained.DEFAULT_POLICY_DIR, d)
    return d


# ------------------------------------------------------------------ the table, row by row


def test_a_50_mb_question_in_a_data_file_is_refused_at_its_line(tmp_path, capsys, no_weights):
    data = tmp_path / "huge.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        f.write(json.dumps(GOOD) + "\n")
        f.write('{"question": "')
        for _ in range(50):
            f.write("x" * (1 << 20))
        f.write('", "answer": "#### 1"}\n')
    one_error(capsys, ["eval", "--data", str(data), "--task", "gsm8k"], "--data", "huge.jsonl:2", "longer than 4194304 bytes", "--max-question-bytes")


def test_a_question_over_the_byte_limit_names_its_problem(tmp_path, capsys, no_weights):
    data = write_jsonl(tmp_path / "d.jsonl", GOOD, {**GOOD, "question": "How much? " * 200, "id": "long-one"})
    one_error(capsys, ["eval", "--data", str(data), "--task", "gsm8k", "--max-question-bytes", "1000"],
              "problem long-one", "1999 bytes", "--max-question-bytes 1000")  # fmt: skip


def test_a_100k_character_solve_question_is_refused_by_the_context(capsys, no_weights):
    line = one_error(capsys, ["solve", "What is 1 + 1? " * 6700], "question 1: the prompt is", "384 positions", "at most 288")
    assert "tokens" in line


def test_a_data_question_longer_than_the_context_names_its_problem(tmp_path, capsys, no_weights):
    data = write_jsonl(tmp_path / "d.jsonl", GOOD, {**GOOD, "question": "Tom has 3 apples. " * 60, "id": "too-long"})
    one_error(capsys, ["eval", "--data", str(data), "--task", "gsm8k", "--methods", "greedy"], "problem too-long: the prompt is", "at most 288")


@pytest.mark.parametrize("question", ["", "   \n"])
def test_an_empty_question_in_a_data_file_is_refused(tmp_path, capsys, no_weights, question):
    data = write_jsonl(tmp_path / "d.jsonl", GOOD, {**GOOD, "question": question})
    one_error(capsys, ["eval", "--data", str(data), "--task", "gsm8k"], "d.jsonl:2", "field 'question' is empty")
    math_data = write_jsonl(tmp_path / "m.jsonl", {"problem": question, "solution": "\\boxed{1}"})
    one_error(capsys, ["label", "--data", str(math_data), "--task", "math", "--out", str(tmp_path / "l.jsonl")], "m.jsonl:1", "field 'problem' is empty")


@pytest.mark.parametrize("argv", [["solve", ""], ["solve", "ok?", "  "]])
def test_an_empty_solve_question_is_refused(capsys, no_weights, argv):
    one_error(capsys, argv, "non-empty question")


def test_an_empty_line_file_of_questions_is_refused(tmp_path, capsys, no_weights):
    f = tmp_path / "q.txt"
    f.write_text("\n  \n")
    one_error(capsys, ["solve", "--file", str(f)], "holds no question")


def test_a_non_utf8_byte_in_a_data_file_names_file_and_line(tmp_path, capsys, no_weights):
    data = tmp_path / "d.jsonl"
    data.write_bytes(json.dumps(GOOD).encode() + b'\n{"question": "caf\xff?", "answer": "#### 1"}\n')
    one_error(capsys, ["eval", "--data", str(data), "--task", "gsm8k"], "--data", "d.jsonl:2", "not UTF-8", "byte 0xff", "byte 18 of the line")
    q = tmp_path / "q.txt"
    q.write_bytes(b"What is 2 + 2?\ncaf\xe9?\n")
    one_error(capsys, ["solve", "--file", str(q)], "q.txt:2", "not UTF-8", "byte 0xe9")


def test_non_utf8_bytes_in_the_solve_argument(capsys, no_weights):
    one_error(capsys, ["solve", "caf\udce9 costs 3 euros?"], "question 1", "not valid UTF-8", "byte 0xe9")
    proc = subprocess.run([sys.executable, "-m", "qstar_native", "solve", b"caf\xe9 costs 3 euros?"], capture_output=True, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.strip() == "qstar: error: question 1: not valid UTF-8 text (byte 0xe9 at character 4); pass the question as UTF-8"


@pytest.mark.parametrize("damage", ["truncated", "zeros", "empty"])
def test_a_corrupt_or_truncated_model_safetensors(own_model, capsys, no_weights, damage):
    w = own_model / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes({"truncated": data[: len(data) // 2], "zeros": bytes(100), "empty": b""}[damage])
    one_error(capsys, ["solve", QUESTION, "--model", str(own_model)], "--model", f"{w} is corrupt or truncated", "download or save the model again")


def test_a_corrupt_qvm_safetensors(tmp_path, capsys, no_weights):
    qvm = tmp_path / "qvm"
    shutil.copytree(pretrained.DEFAULT_QVM_DIR, qvm)
    (qvm / "model.safetensors").write_bytes((qvm / "model.safetensors").read_bytes()[:300])
    one_error(capsys, ["eval", "--qvm", str(qvm)], "--qvm", "model.safetensors is corrupt or truncated", "qstar train-qvm")
    (qvm / "model.safetensors").unlink()
    one_error(capsys, ["solve", QUESTION, "--qvm", str(qvm)], "--qvm", "model.safetensors is missing")


def test_a_qvm_that_loads_badly_is_one_line(tmp_path, capsys):
    """A QVM whose files look whole but whose tensors do not fit its config fails at load time,
    after the policy: still one line."""
    from qstar_native.value import QValueModel

    qvm = tmp_path / "wide"
    QValueModel(hidden_size=7).save_pretrained(qvm)
    one_error(capsys, ["solve", QUESTION, "--qvm", str(qvm), *TINY], "--qvm", "width 7", "qstar train-qvm")


def test_a_model_without_its_tokenizer(own_model, capsys, no_weights):
    (own_model / "tokenizer.json").unlink()
    one_error(capsys, ["eval", "--model", str(own_model)], "--model", "has no tokenizer file", "tokenizer.save_pretrained(dir)")


def test_a_model_of_an_unknown_architecture(own_model, capsys, no_weights):
    cfg = json.loads((own_model / "config.json").read_text())
    (own_model / "config.json").write_text(json.dumps({**cfg, "model_type": "foo", "architectures": ["FooForCausalLM"]}))
    one_error(capsys, ["solve", QUESTION, "--model", str(own_model)], "--model", "config.json", "model type `foo`", "update transformers")


def test_weights_of_another_architecture(own_model, capsys):
    cfg = json.loads((own_model / "config.json").read_text())
    (own_model / "config.json").write_text(json.dumps({**cfg, "model_type": "bert", "architectures": ["BertModel"]}))
    one_error(capsys, ["solve", QUESTION, "--model", str(own_model)], "--model", "do not fit its config.json", "weights are missing")


def test_a_bad_qstar_json_names_the_setting(own_model, capsys, no_weights):
    (own_model / "qstar.json").write_text(json.dumps({"max_steps": 0}))
    one_error(capsys, ["eval", "--model", str(own_model)], "--model", "qstar.json: max_steps must be a positive integer")
    (own_model / "qstar.json").write_text("[1, 2]")
    one_error(capsys, ["eval", "--model", str(own_model)], "qstar.json: must hold one JSON object")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_lam_nan_or_inf_is_refused(capsys, value):
    parse_error(capsys, ["eval", f"--lam={value}"], "not finite")
    parse_error(capsys, ["solve", QUESTION, f"--lam={value}"], "not finite")


@pytest.mark.parametrize("option, value, fragment", [("--temperature", "nan", "not finite"), ("--top-p", "nan", "not finite"),
                                                     ("--top-p", "0", "not in (0, 1]"), ("--top-p", "1.5", "not in (0, 1]"),
                                                     ("--min-p", "1", "not in [0, 1)"), ("--min-p", "nan", "not finite"),
                                                     ("--max-steps", "0", "must be >= 1"), ("--max-step-tokens", "x", "not an integer"),
                                                     ("--dtype", "int8", "invalid choice")])  # fmt: skip
def test_bad_sampling_and_step_numbers_are_refused(capsys, option, value, fragment):
    parse_error(capsys, ["eval", option, value], fragment)


def test_label_out_pointing_at_a_data_file(tmp_path, capsys, no_weights):
    data = write_jsonl(tmp_path / "train.jsonl", GOOD)
    one_error(capsys, ["label", "--data", str(data), "--task", "gsm8k", "--out", str(data)], "--out", "is the --data file")
    other = write_jsonl(tmp_path / "other.jsonl", GOOD)
    one_error(capsys, ["label", "--data", str(data), "--task", "gsm8k", "--out", str(other)], "--out", "is not a label file", "qstar label")


@pytest.mark.parametrize("argv, fragments", [
    (["eval", "--methods", "beam:abc"], ["--methods", "beam:abc needs a positive integer"]),
    (["eval", "--methods", "qstar:0"], ["--methods", "qstar:0 needs a positive integer"]),
    (["eval", "--methods", ","], ["--methods", "no method given"]),
    (["eval", "--methods", "greedy,dfs"], ["unknown method 'dfs'"]),
    (["eval", "--qvm", "none", "--methods", "best-of-n:4"], ["use majority"]),
    (["eval", "--resume"], ["--resume continues a --records FILE"]),
])  # fmt: skip
def test_methods_are_checked_before_the_model_loads(capsys, no_weights, argv, fragments):
    one_error(capsys, argv, *fragments)


def test_num_solutions_zero_is_refused(capsys):
    parse_error(capsys, ["eval", "--num-solutions", "0"], "must be >= 1")


@pytest.mark.parametrize("line, fragment", [
    ('{"question": "q", "answer": ', "invalid JSON"),
    ('["question", "answer"]', "expected a JSON object"),
    ('{"question": "q"}', "missing field 'answer'"),
    ('{"question": 7, "answer": "#### 1"}', "field 'question' must be a string"),
    ('{"question": "q", "answer": "seven"}', "no '#### <final answer>' line"),
])  # fmt: skip
def test_bad_data_contents_are_checked_before_the_model_loads(tmp_path, capsys, no_weights, line, fragment):
    data = write_jsonl(tmp_path / "d.jsonl", GOOD, line)
    one_error(capsys, ["eval", "--data", str(data), "--task", "gsm8k", "--methods", "greedy"], "--data", "d.jsonl:2", fragment)


def test_a_data_file_with_a_repeated_id(tmp_path, capsys, no_weights):
    data = write_jsonl(tmp_path / "d.jsonl", {**GOOD, "id": "a"}, {**GOOD, "id": "a"})
    one_error(capsys, ["eval", "--data", str(data), "--task", "gsm8k"], "--data", "d.jsonl", "'a' occurs more than once")


def test_an_own_model_without_qvm_defaults_to_methods_without_one(own_model, capsys):
    from qstar_native.cli.evaluate import DEFAULT_METHODS_NO_QVM, default_methods

    args = __import__("argparse").Namespace(model=str(own_model), qvm=None)
    assert default_methods(args) == DEFAULT_METHODS_NO_QVM == "greedy,majority,beam,qstar"
    assert main(["eval", "--model", str(own_model), "--n", "1", "--k", "2", "--no-progress", *TINY]) == 0
    captured = capsys.readouterr()
    assert "QVM none" in captured.err and "Traceback" not in captured.err
    for name in ("greedy", "best_of_10_majority", "beam_w4_k2", "qstar_lam1_k2_min_fallback"):
        assert name in captured.out


def test_train_qvm_on_labels_that_are_all_0(tmp_path, capsys, no_weights):
    labels = tmp_path / "l.jsonl"
    rows = [{"question_id": f"q{i}", "steps": [], "candidate": "x\n", "label": 0.0, "method": "best_of_rollouts", "meta": {}} for i in range(3)]
    write_jsonl(labels, *rows)
    one_error(capsys, ["train-qvm", "--labels", str(labels), "--out", str(tmp_path / "q")], "--labels", "all 3 labels are 0", "nothing to learn")


def test_demo_is_gone(capsys):
    parse_error(capsys, ["demo", "--threads", "1"], "invalid choice: 'demo'")


def test_a_budget_past_2_to_the_63(capsys):
    from qstar_native import Searcher, SearchConfig

    with pytest.raises(ValueError, match=r"^max_expansions must be at most 2\*\*63 - 1; use None for no limit, got 1180591620717411303424$"):
        Searcher(lambda batch: [], max_expansions=2**70)
    with pytest.raises(ValueError, match=r"^max_nodes must be at most 2\*\*63 - 1"):
        SearchConfig(max_nodes=2**63)
    parse_error(capsys, ["solve", QUESTION, "--max-expansions", str(2**70)], "too large; give at most 2**63 - 1")


def test_select_before_add_root_raises():
    from qstar_native import Engine

    eng = Engine()
    with pytest.raises(RuntimeError, match=r"select\(\) before add_root\(\).*call add_root\(tokens\) first"):
        eng.select(1)
    with pytest.raises(RuntimeError, match="add_root"):
        eng.select()
    eng.add_root([1, 2])
    assert [int(x) for x in eng.select(1)] == [0]
    with pytest.raises(ValueError, match=r"k must be at most 2\*\*63 - 1"):
        eng.select(2**70)


# ------------------------------------------------------------------ loading and options


def test_model_may_be_an_id_in_the_local_hugging_face_cache(tmp_path, monkeypatch, capsys, no_weights):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-math"
    snap = repo / "snapshots" / ("0" * 40)
    shutil.copytree(pretrained.DEFAULT_POLICY_DIR, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert pretrained.resolve_model_dir("someone/tiny-math") == snap
    # the id goes through every check a directory does (here: the context)
    one_error(capsys, ["solve", "Tom has 3 apples. " * 60, "--model", "someone/tiny-math"], "question 1: the prompt is")
    one_error(capsys, ["eval", "--model", "someone/not-cached"], "--model", "'someone/not-cached' does not exist", "local Hugging Face cache", "hf download")
    one_error(capsys, ["eval", "--model", str(tmp_path / "nowhere")], "--model", "no such directory")


def test_apply_chat_template_needs_one(capsys, no_weights):
    one_error(capsys, ["eval", "--apply-chat-template"], "--apply-chat-template", "has no chat template", "drop the chat template option")


def test_a_blank_system_instruction_is_refused(capsys, no_weights):
    one_error(capsys, ["eval", "--system-instruction", " "], "--system-instruction", "non-empty")


def test_prompt_format_renders_chat_template_system_and_fewshot():
    tok = pretrained.load_tokenizer()
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}|{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    fmt = pretrained.PromptFormat(chat_template=True, system_instruction="Be brief.", fewshot=(("1+1?", "1+1 = 2\n#### 2"),))
    assert fmt.render(tok, "2+2?\n", "{question}\n") == "<system>Be brief.|<user>1+1?\n|<assistant>1+1 = 2\n#### 2|<user>2+2?\n|<assistant>"
    plain = pretrained.PromptFormat(system_instruction="Be brief.", fewshot=(("1+1?", "#### 2"),))
    assert plain.render(tok, "2+2?\n", "Q: {question}\n") == "Be brief.\n\nQ: 1+1?\n#### 2\n\n2+2?\n"
    assert pretrained.PromptFormat().plain and pretrained.PromptFormat().render(tok, "x\n") == "x\n"


def test_chat_template_solve_runs(own_model, capsys):
    cfg_path = own_model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    cfg_path.write_text(json.dumps(cfg))
    argv = ["solve", QUESTION, "--model", str(own_model), "--apply-chat-template", "--system-instruction", "Solve it.", "--k", "2",
            "--max-expansions", "2", *TINY]  # fmt: skip
    assert main(argv) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_num_fewshot_takes_examples_from_the_data(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", *[{**GOOD, "id": f"p{i}"} for i in range(3)])
    out = tmp_path / "run.json"
    argv = ["eval", "--data", str(data), "--task", "gsm8k", "--num-fewshot", "1", "--methods", "greedy", "--no-progress", "--json", str(out), *TINY]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert [r["question_id"] for r in doc["reports"][0]["records"]] == ["p1", "p2"]  # p0 is the example
    capsys.readouterr()
    one_error(capsys, [*argv[:6], "3", *argv[7:]], "--num-fewshot 3", "none left to run")


def test_output_path_writes_records_table_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "runs" / "a"
    argv = ["eval", "--n", "1", "--methods", "greedy", "--no-progress", "--output-path", str(out), "--dtype", "auto", "--top-p", "0.9", *TINY]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["plot.png", "records.jsonl", "results.json", "table.txt"]
    header = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert header["policy"] == {"dtype": "auto", "max_steps": 2, "max_step_tokens": 8, "top_p": 0.9, "min_p": 0.0, "greedy_first": "qstar",
                                "chat_template": False, "system_instruction": None, "num_fewshot": 0}  # fmt: skip
    assert "greedy" in (out / "table.txt").read_text()
    capsys.readouterr()
    one_error(capsys, argv, "records.jsonl already exists", "--resume")  # a second run into the same folder
    (tmp_path / "file").write_text("")
    one_error(capsys, ["eval", "--output-path", str(tmp_path / "file")], "--output-path", "is a file")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "auto"])
def test_dtype_loads_the_weights_in_it(dtype):
    import torch

    policy = pretrained.load_policy(dtype=dtype)
    assert policy.model.dtype == (torch.float32 if dtype == "auto" else getattr(torch, dtype))  # auto: the checkpoint's own
    with pytest.raises(ValueError, match="dtype='int8'; pick one of float32, bfloat16, float16, auto"):
        pretrained.load_policy(dtype="int8")


def test_step_options_override_qstar_json(own_model):
    from qstar_native.cli import build_parser
    from qstar_native.cli.common import policy_settings

    args = build_parser().parse_args(["eval", "--model", str(own_model), "--max-steps", "3", "--max-step-tokens", "5", "--top-p", "0.5"])
    s = policy_settings(args)
    assert (s.max_steps, s.max_step_tokens, s.top_p, s.temperature) == (3, 5, 0.5, 0.4)  # temperature: its qstar.json


def test_a_failed_model_load_leaves_no_record_file(own_model, tmp_path, capsys):
    cfg = json.loads((own_model / "config.json").read_text())
    (own_model / "config.json").write_text(json.dumps({**cfg, "model_type": "bert", "architectures": ["BertModel"]}))
    records = tmp_path / "r.jsonl"
    one_error(capsys, ["eval", "--model", str(own_model), "--records", str(records)], "do not fit its config.json")
    assert not records.exists()  # a rerun needs no --resume


def test_the_library_checks_prompts_where_they_enter_the_search():
    policy = pretrained.load_policy()
    assert pretrained.prompt_token_limit(policy.context_length, policy.settings) == 384 - 96
    ids = pretrained.check_prompt_lengths(policy, ["What is 2 + 2?\n"], ["p"])
    assert ids == [policy.encode("What is 2 + 2?\n")]
    with pytest.raises(pretrained.PromptTooLongError, match=r"^q7: the prompt is \d+ tokens but the model takes 384 positions"):
        pretrained.check_prompt_lengths(policy, ["Tom has 3 apples. " * 60], ["q7"])
    with pytest.raises(pretrained.PromptTooLongError, match=r"^prompt 0: the prompt is 20 bytes, over the limit of 10"):
        pretrained.check_prompt_lengths(policy, ["x" * 20], max_bytes=10)
    with pytest.raises(pretrained.PromptTooLongError, match="question 1: the prompt is"):
        solver.Solver(policy).solve_many(["What is 2 + 2?", "Tom has 3 apples. " * 60])
