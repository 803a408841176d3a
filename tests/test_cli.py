"""The command line: every command on the embedded default, the label -> train -> eval pipeline
on a few problems, and clear errors (exit status 2, no traceback) for bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qstar_native.cli import main
from qstar_native.value import QValueModel

QUESTION = "A baker makes 12 trays of 8 muffins. He sells 30 muffins. How many muffins are left?"


@pytest.fixture(scope="module")
def qvm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qvm")
    QValueModel(hidden_size=128, head="mlp", mlp_width=8, out_act="sigmoid", seed=3).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("command", ["solve", "eval", "report", "label", "train-qvm"])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out
    if command != "report":
        assert "--seed" in out and "--device" in out and "--threads" in out


def test_solve_prints_path_and_writes_tree(qvm_dir, tmp_path, capsys):
    tree = tmp_path / "t.html"
    assert main(["solve", QUESTION, "--qvm", qvm_dir, "--k", "2", "--max-expansions", "6", "--tree", str(tree)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["f", "g", "h", "step"] or out.startswith("no solution found")
    assert tree.read_text().count("<svg") == 1 and f"search tree written to {tree}" in out
    # one node count everywhere: the result line, the tree line, the page's text and its marks
    page = tree.read_text()
    counts = {int(re.search(r", (\d+) nodes, ", out)[1]), int(re.search(r"\((\d+) nodes\)$", out, re.M)[1]),
              int(re.search(r"<p>(\d+) nodes;", page)[1]), page.count('class="node')}
    assert len(counts) == 1, counts


def test_eval_table_json_plot(qvm_dir, tmp_path, capsys):
    js, png = tmp_path / "e.json", tmp_path / "e.png"
    args = ["eval", "--n", "3", "--qvm", qvm_dir, "--methods", "greedy,best-of-n:2,beam:2,qstar:4", "--k", "2",
            "--json", str(js), "--plot", str(png), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for name in ("greedy", "best_of_2_qvm", "beam_w2_k2", "qstar_lam1_k2_min_e4_fallback_greedyfirst"):
        assert re.search(rf"^{name}\s+3\s", out, re.M), name
    assert "qstar_lam1_k2_min_e4_fallback_greedyfirst - greedy" in out and "McNemar" in out
    doc = json.loads(js.read_text())
    assert [s["method"] for s in doc["summaries"]] == ["greedy", "best_of_2_qvm", "beam_w2_k2", "qstar_lam1_k2_min_e4_fallback_greedyfirst"]
    assert all(len(r["records"]) == 3 for r in doc["reports"]) and len(doc["comparisons"]) == 3
    assert all(r["question"] and r["gold"] for rep in doc["reports"] for r in rep["records"])
    # every method saw the same problems, in the same order
    assert len({tuple(x["question_id"] for x in r["records"]) for r in doc["reports"]}) == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_settings_come_from_qstar_json_unless_given(qvm_dir, capsys):
    """The embedded default's qstar.json turns the calculator and the grounded reward on; the
    options override it."""
    base = ["eval", "--n", "1", "--qvm", qvm_dir, "--methods", "greedy", "--no-progress"]
    assert main(base) == 0
    assert "process reward grounded, calculator" in capsys.readouterr().err
    assert main([*base, "--calculator", "off", "--process-reward", "annotations"]) == 0
    err = capsys.readouterr().err
    assert "process reward annotations" in err and "calculator" not in err
    with pytest.raises(SystemExit):
        main([*base, "--calculator", "maybe"])


def test_label_train_eval_pipeline(tmp_path, capsys):
    labels, qvm = tmp_path / "l.jsonl", tmp_path / "qvm"
    task = ["--seeds", "2000:2001", "--n", "2"]
    assert main(["label", *task, "--out", str(labels), "--trajectories", "2", "--rollouts", "2", "--chunk", "1"]) == 0
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert rows and {r["question_id"] for r in rows} <= {"gsm_symbolic-0000-2000", "gsm_symbolic-0001-2000"}
    assert all(r["label"] in (0.0, 1.0) and r["method"] == "best_of_rollouts" for r in rows)
    # resuming adds nothing
    assert main(["label", *task, "--out", str(labels), "--trajectories", "2", "--rollouts", "2", "--chunk", "1"]) == 0
    assert len(labels.read_text().splitlines()) == len(rows)
    assert main(["train-qvm", *task, "--labels", str(labels), "--out", str(qvm), "--epochs", "3", "--val-fraction", "0"]) in (0, 2)
    err = capsys.readouterr().err
    if not (qvm / "config.json").exists():  # two problems may give labels of one class: then train-qvm refuses, loudly
        assert "nothing to learn" in err
        return
    assert "holds only" in err  # few rows: a loud warning
    loaded = QValueModel.from_pretrained(qvm)
    assert loaded.backbone is None and loaded.hidden_size == 128
    report = json.loads((qvm / "train_report.json").read_text())
    assert report["rows"] == len(rows) and report["mode"] == "hidden"
    capsys.readouterr()
    assert main(["eval", "--n", "1", "--qvm", str(qvm), "--methods", "qstar:2", "--k", "2", "--no-progress"]) == 0
    assert "qstar_lam1_k2_min_e2_fallback_greedyfirst" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--model", "/nonexistent/model"], "no such directory"),
        (["eval", "--task", "mbpp"], "--task mbpp needs --data FILE"),
        (["eval", "--task", "nope"], "unknown task 'nope'"),
        (["eval", "--methods", "greedy,dfs"], "unknown method 'dfs'"),
        (["eval", "--methods", "greedy,greedy"], "twice"),
        (["eval", "--methods", "beam:0"], "positive integer"),
        (["eval", "--qvm", "none", "--methods", "best-of-n"], "use majority"),
        (["eval", "--qvm", "/nonexistent/qvm"], "does not exist"),
        (["eval", "--seeds", "5"], None),  # a single seed is fine; checked below with --n
        (["eval", "--seeds", "x:y"], "START:STOP"),
        (["eval", "--device", "tpu:9"], "device"),
        (["eval", "--records", "/nonexistent/dir/r.jsonl"], "does not exist; create it first"),
        (["eval", "--resume"], "--resume continues a --records FILE"),
        (["label", "--seeds", "0:2", "--out", "x.jsonl"], "reserved for evaluation"),
        (["train-qvm", "--labels", "/nonexistent.jsonl", "--out", "q"], "no such file"),
        (["solve", QUESTION, "--tree", "t.png"], ".html, .svg or .dot"),
        (["solve", " "], "non-empty question"),
        (["report", "/nonexistent.jsonl"], "no such file"),
    ],
)
def test_errors_exit_2_with_a_message(argv, message, capsys):
    if message is None:
        argv = [*argv, "--n", "1", "--methods", "greedy", "--no-progress"]
        assert main(argv) == 0
        return
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("qstar: error:") and message in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["eval", "--n", "0"], ["eval", "--lam", "nan"], ["eval", "--lam", "inf"], ["eval", "--temperature", "nan"],
                                  ["eval", "--threads", "0"], ["eval", "--k", "x"]])  # fmt: skip
def test_bad_numbers_are_refused_while_parsing(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_bad_data_file_names_the_line(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n{"question": "2+2?", "answer": "four"}\n')
    assert main(["eval", "--data", str(data), "--task", "gsm8k", "--methods", "greedy"]) == 2
    err = capsys.readouterr().err
    assert "d.jsonl:2" in err and "####" in err
    data.write_text('{"question": "What is 2 + 3?", "answer": "2 + 3 = <<2+3=5>>5\\n#### 5"}\n')
    assert main(["eval", "--data", str(data), "--task", "gsm8k", "--methods", "greedy", "--no-progress"]) == 0
    assert re.search(r"^greedy\s+1\s", capsys.readouterr().out, re.M)


def test_module_entry_point_and_argparse_errors():
    proc = subprocess.run([sys.executable, "-m", "qstar_native", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def eval_argv(records, *extra):
    return [sys.executable, "-m", "qstar_native", "eval", "--n", "6", "--methods", "greedy,qstar:6", "--k", "2", "--threads", "1",
            "--concurrency", "2", "--no-progress", "--records", str(records), *extra]  # fmt: skip


def records_of(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["type"] == "header"
    return sorted((r["method"], r["question_id"], r["completion"], r["tokens_generated"], r["tokens_forwarded"]) for r in lines[1:])


def wait_for_records(path, proc, n):
    while proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) > n:
            return True
        time.sleep(0.05)
    return False


def test_kill_9_then_resume_gives_the_records_of_an_uninterrupted_run(tmp_path):
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    assert subprocess.run(eval_argv(full), capture_output=True, text=True).returncode == 0
    proc = subprocess.Popen(eval_argv(part), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if wait_for_records(part, proc, 2):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = records_of(part)
    resumed = subprocess.run(eval_argv(part, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert records_of(part) == records_of(full) and len(records_of(full)) == 12
    assert set(kept) <= set(records_of(full))


def test_sigint_keeps_finished_records_and_prints_the_table_so_far(tmp_path):
    part = tmp_path / "part.jsonl"
    proc = subprocess.Popen(eval_argv(part), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait_for_records(part, proc, 2):
        pytest.skip("the run finished before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "finished records are in" in err and "Traceback" not in err
    assert "method" in out and "accuracy" in out  # the table so far
    assert len(records_of(part)) >= 2


def test_report_remakes_the_table_from_record_files(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    base = ["eval", "--n", "3", "--k", "2", "--no-progress"]
    assert main([*base, "--methods", "greedy", "--records", str(a)]) == 0
    assert main([*base, "--methods", "qstar:4", "--records", str(b)]) == 0
    capsys.readouterr()
    assert main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^greedy\s+3\s", out, re.M) and "qstar_lam1_k2_min_e4_fallback_greedyfirst - greedy" in out
    assert main(["report", str(a), str(a)]) == 2  # the same (method, problem) twice


def test_report_into_a_closed_pipe_is_quiet():
    # `qstar report FILES | head -0`: the reader is gone before the table is written (closed
    # while the process still starts up); no traceback, the pipe's exit status.
    files = sorted(str(p) for p in (Path(__file__).parents[1] / "bench" / "results").glob("frontier_dev_*.jsonl.gz"))
    proc = subprocess.Popen([sys.executable, "-m", "qstar_native", "report", *files], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and b"Traceback" not in err, err.decode()
