"""The code task end to end: prompts, a line a step, the terminal rule, answer extraction from
chatty completions, the sandboxed outcome, the syntax reward aggregated with ``last``, and the
harness check (every HumanEval canonical solution passes through the evaluation path)."""

from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from qstar_native.batch import Batch, Steps
from qstar_native.evaluation import evaluate
from qstar_native.methods import BestOfN, Greedy
from qstar_native.policy import HFPolicy
from qstar_native.tasks import code_task
from qstar_native.tasks.code import CodeProblem, load_humaneval, syntax_reward
from qstar_native.tasks.code_task import CodeTask, extract_fenced
from qstar_native.tasks.load import ProblemSourceError, humaneval_heldout, load_problems
from qstar_native.value.scorers import code_syntax_reward, compose

HUMANEVAL = load_humaneval()
CHAT = "<user>{}</user>\n".format


def by_bytes(text: str) -> list[int]:
    return list(text.encode())


# ---- prompts, the terminal rule, extraction ---------------------------------------------------


def test_prompts_of_base_and_instruct_models():
    p = HUMANEVAL[0]
    assert CodeTask("humaneval", by_bytes).prompt(p) == p.prompt  # base: body mode
    chat = CodeTask("humaneval", by_bytes, render=CHAT).prompt(p)
    assert chat.startswith("<user>Complete the following Python function.\n```python\n" + p.prompt) and chat.endswith("</user>\n```python\n")
    mbpp = CodeProblem("7", "Write a function that doubles x.", "assert double(2) == 4\nassert double(0) == 0", None, "def double(x): return 2*x")
    assert CodeTask("mbpp", by_bytes).prompt(mbpp) == "Write a function that doubles x.\nYour code should pass this test:\nassert double(2) == 4\n```python\n"


def test_terminal_rule():
    body, chat = CodeTask("humaneval", by_bytes), CodeTask("humaneval", by_bytes, render=CHAT)
    for line, ends_body in [("    return x\n", False), ("\n", False), ("  \n", False), ("def g():\n", True), ("print(1)\n", True),
                            ("```\n", True), ("    ```", True), ("# done\n", True)]:  # fmt: skip
        assert body.is_terminal(line) == ends_body, line
    assert not chat.is_terminal("def f(x):\n") and chat.is_terminal("```\n")  # an instruct model writes the whole function
    assert not CodeTask("mbpp", by_bytes).is_terminal("import math\n")


def test_program_extraction_survives_chatty_completions():
    p = HUMANEVAL[0]  # the prompt imports List
    chat = CodeTask("humaneval", by_bytes, render=CHAT)
    whole = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n    return False\n"
    assert chat.program(p, whole + "```\nThis function returns False.") == "from typing import List\n" + whole
    # the model closed the fence at once and talked: its next fenced block answers
    assert chat.program(p, "```\nSure! Here it is:\n```python\n" + whole + "```\nDone.") == "from typing import List\n" + whole
    # only a body: appended to the prompt, cut at the first top-level line
    assert chat.program(p, "    return True\nprint(1)\n```") == p.prompt + "    return True\n"
    body = CodeTask("humaneval", by_bytes)
    assert body.program(p, "    x = 1\n\n    return x\ndef helper():\n    pass\n") == p.prompt + "    x = 1\n\n    return x\n"
    assert body.program(p, "    return x\n```\nExplanation...") == p.prompt + "    return x\n"
    assert CodeTask("mbpp", by_bytes).program(p, "def f():\n    return 1\n```\ntext") == "def f():\n    return 1\n"
    assert extract_fenced("no fence") is None and extract_fenced("a\n```py\nb = 1\n") == "b = 1\n"


def test_answers_for_majority_vote_ignore_layout_and_comments():
    task = CodeTask("humaneval", by_bytes)
    a = task.answer("    return  x+1  # inc\n")
    assert a == task.answer("    return x + 1\n") == "return x + 1"
    assert task.answer("    return x +\n") is None and task.answer("") is None
    assert task.answer("    y = 1\n    return y\ndef helper():\n    pass\n") == "y = 1\nreturn y"


def test_outcomes_run_distinct_programs_once_in_parallel(monkeypatch):
    calls = []
    real = code_task.check_program

    def counting(problem, program, **kw):
        calls.append(program)
        return real(problem, program, **kw)

    monkeypatch.setattr(code_task, "check_program", counting)
    p = HUMANEVAL[2]  # truncate_number
    task = CodeTask("humaneval", by_bytes, workers=2, timeout_s=5.0)
    good, bad = "    return number % 1.0\n", "    return 0.0\n"
    assert task.outcomes(p, [good, bad, good + "print(2)\n", bad]) == [1.0, 0.0, 1.0, 0.0]
    assert len(calls) == 2  # good+print(2) is the same program as good (the top-level line is cut)
    assert task.outcome(p, good) == 1.0 and len(calls) == 2  # cached


# ---- the harness check: canonical solutions through evaluate() ---------------------------------


class CanonicalLines:
    """Proposes the next line of each problem's canonical solution (bytes as tokens); in chat mode
    the whole reference program, then the closing fence. Terminal flags by the task's rule, and
    the last line is terminal as EOS would make it."""

    def __init__(self, task: CodeTask, problems: list[CodeProblem]) -> None:
        self.task = task
        self.lines = {}
        for p in problems:
            text = p.reference_solution[len(p.prompt) :] if task.body_mode else p.reference_solution + "```\n"
            self.lines[bytes(task.root(p))] = text.splitlines(keepends=True)

    def decode(self, ids) -> str:
        return bytes(np.asarray(ids, dtype=np.uint8)).decode()

    def as_expand(self, scorer=None):
        from qstar_native.scheduler import PolicyExpand

        return PolicyExpand(self, scorer)

    def propose(self, batch: Batch) -> Steps:
        toks, terminal = [], []
        for i in range(len(batch)):
            data = bytes(np.asarray(batch.state(i), dtype=np.uint8))
            root = next(r for r in self.lines if data.startswith(r))
            lines = self.lines[root]
            depth = data[len(root) :].count(b"\n")
            toks.append(list(lines[depth].encode()))
            terminal.append(depth + 1 == len(lines) or self.task.is_terminal(lines[depth]))
        return Steps(np.ones(len(batch), np.int64), np.array([t for ts in toks for t in ts], np.int32), [len(t) for t in toks],
                     terminal=np.array(terminal, bool))  # fmt: skip


@pytest.mark.parametrize("render", [None, CHAT], ids=["base", "instruct"])
def test_every_canonical_solution_passes_through_the_evaluation_path(render):
    task = CodeTask("humaneval", lambda s: list(s.encode()), render=render, timeout_s=10.0)
    policy = CanonicalLines(task, HUMANEVAL)
    scorer = compose(reward=code_syntax_reward(policy.decode))
    [report] = evaluate(task, [Greedy(max_steps=80)], policy.as_expand(scorer), HUMANEVAL, decode=policy.decode, concurrency=64)
    failed = [r.question_id for r in report.records if not r.correct]
    assert len(report.records) == 164 and failed == []


# ---- HFPolicy: the terminal rule sees whole lines ----------------------------------------------


def code_tokenizer() -> PreTrainedTokenizerFast:
    """Printable characters, plus newline+indentation merged into one token as BPE tokenizers do."""
    merged = ["\n" + " " * n for n in (1, 2, 3, 4, 7, 8)]
    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    vocab = {"<eos>": 0, "<unk>": 1, **{t: i + 2 for i, t in enumerate(merged + chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\n(?:        |       |    |   |  | )(?! )|[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")


def tiny_llama(vocab: int, seed: int = 0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, vocab_size=vocab, bos_token_id=None, eos_token_id=0, pad_token_id=None)  # fmt: skip
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def test_tokenizer_merges_newlines_with_indentation():
    tok = code_tokenizer()
    pieces = [tok.decode([i]) for i in tok.encode("if x:\n    y\nz")]
    assert "\n   " not in pieces and "\n    " in pieces and pieces[-2:] == ["\n", "z"]


def test_terminal_rule_gets_the_whole_line():
    tok = code_tokenizer()
    model = tiny_llama(len(tok.get_vocab()))
    seen = []

    def rule(line: str) -> bool:
        seen.append(line)
        return False

    policy = HFPolicy(model, tok, num_candidates=6, temperature=1.5, max_step_tokens=12, is_terminal=rule)
    states = [tok.encode(s) for s in ("def f(x):\n    ", "def f(x):\n    y = 1\n", "x = (1 +", "no newline yet")]
    steps = policy.propose(Batch.of_states(states, k=6, temperature=1.5, seed=3))
    off = steps.offsets
    expected = []
    for i in range(len(steps)):
        state = states[int(steps.node_index[i])]
        if steps.finish[i] in ("eos", "stop"):
            continue
        full = tok.decode(list(state) + steps.tokens[off[i] : off[i + 1]].tolist())
        last_line_start = tok.decode(list(state)).rfind("\n") + 1
        expected.append(full[last_line_start:])
    assert seen == expected and any(line.startswith("    ") for line in seen)


# ---- a tiny model that learned one program: greedy solves it, in the sandbox ---------------------

PROBLEM = CodeProblem("toy/0", 'def double(x):\n    """Twice x."""\n', "def check(candidate):\n    assert candidate(3) == 6\n", "double",
                      'def double(x):\n    """Twice x."""\n    y = x + x\n    return y\n', source="humaneval")  # fmt: skip
LEARNED = PROBLEM.prompt + "    y = x + x\n    return y\nprint(y)\n"


@pytest.fixture(scope="module")
def learned():
    """A tiny Llama trained until it reproduces LEARNED from its prompt."""
    tok = code_tokenizer()
    model = tiny_llama(len(tok.get_vocab()), seed=1).train()
    # tokenized as the policy sees it: the prompt alone, then the lines it writes
    ids = torch.tensor([tok.encode(PROBLEM.prompt) + tok.encode(LEARNED[len(PROBLEM.prompt) :]) + [0]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).logits[0], ids[0, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    return model.eval(), tok


def test_code_task_end_to_end_on_a_tiny_model(learned):
    model, tok = learned
    task = CodeTask("humaneval", lambda s: tok.encode(s), timeout_s=10.0)
    policy = HFPolicy(model, tok, max_step_tokens=40, is_terminal=task.is_terminal)
    scorer = compose(reward=code_syntax_reward(policy.decode))
    greedy, prm = evaluate(task, [Greedy(max_steps=10), BestOfN(4, "prm", temperature=1.0, max_steps=10, aggregate="last")],
                           policy.as_expand(scorer), [PROBLEM], decode=policy.decode)  # fmt: skip
    [g] = greedy.records
    # a line a step; the top-level line ends the solution and is left out of the program
    assert g.completion == "    y = x + x\n    return y\nprint(y)\n" and g.extra["steps"] == 3
    assert task.program(PROBLEM, g.completion) == PROBLEM.reference_solution and g.correct and g.reward == 1.0
    # the syntax reward aggregated with last: every finished sample's g is the reward of its whole code
    [b] = prm.records
    assert b.extra["distinct"] >= 1 and len(b.extra["scores"]) == b.extra["distinct"]
    assert all(s in (0.0, -0.5) for s in b.extra["scores"])


def test_syntax_reward_is_read_on_the_code_so_far():
    tok = code_tokenizer()
    state = tok.encode("    y = (x +")  # a bare state (no engine, so no prompt): all of it is code
    a, b = tok.encode(" x)\n"), tok.encode(" 1\n")
    steps = Steps([2], np.array(a + b, np.int32), [len(a), len(b)])
    rewards = code_syntax_reward(tok.decode)(Batch.of_states([state]), steps).tolist()
    assert rewards == [syntax_reward("    y = (x + x)\n"), syntax_reward("    y = (x + 1\n")] == [0.0, -0.5]


# ---- loading and the CLI ------------------------------------------------------------------------


def test_humaneval_split_by_task_number():
    held = load_problems(task="humaneval-heldout", purpose="eval")
    label = load_problems(task="humaneval", purpose="train")
    assert len(held.problems) == len(label.problems) == 82
    assert all(humaneval_heldout(p.task_id) for p in held.problems) and not any(humaneval_heldout(p.task_id) for p in label.problems)
    assert len(load_problems(task="humaneval", purpose="eval").problems) == 164
    with pytest.raises(ProblemSourceError, match="held out for evaluation"):
        load_problems(task="humaneval-heldout", purpose="train")
    with pytest.raises(ProblemSourceError, match="--task mbpp needs --data"):
        load_problems(task="mbpp")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, learned):
    model, tok = learned
    d = tmp_path_factory.mktemp("code_model")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_cli_eval_humaneval_and_mbpp(model_dir, tmp_path):
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text(json.dumps({"task_id": 1, "text": "Double x.", "code": "def double(x):\n    return 2 * x\n",
                                "test_list": ["assert double(2) == 4"]}) + "\n")  # fmt: skip
    for task in (["--task", "humaneval", "--n", "2"], ["--task", "mbpp", "--data", str(mbpp)]):
        out = tmp_path / f"records_{task[1]}.jsonl"
        cmd = [sys.executable, "-m", "qstar_native", "eval", *task, "--model", str(model_dir), "--qvm", "none", "--methods", "greedy,best-of-n-prm:2",
               "--max-steps", "4", "--max-step-tokens", "16", "--records", str(out), "--no-progress"]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert "process reward syntax" in run.stderr and "best_of_2_prm" in run.stdout
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        records = [r for r in rows if "question_id" in r]
        assert len(records) == (4 if task[1] == "humaneval" else 2) and all(isinstance(r["correct"], bool) for r in records)
