"""evaluate(): Wilson intervals, reports, paired comparison, reproducibility; GSM-Symbolic end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qstar_native.baselines import ProblemRecord, best_of_n, greedy, qstar
from qstar_native.evaluation import EvalReport, compare, evaluate, format_table, mcnemar_exact, problem_seed, wilson_interval
from qstar_native.tasks.math_task import MathTask
from qstar_native.protocols import Step, per_state
from qstar_native.tasks import GsmSymbolic
from scripted_mdp import SMALL_TREE, ScriptedPolicy, ScriptedTask

TREE = SMALL_TREE
OUTCOMES = {"ace": 0.0, "acf": 1.0, "ad": 0.5, "bg": 0.3, "bh": 1.0}
ANSWERS = {"ace": "1", "acf": "2", "ad": "1", "bg": "3", "bh": "2"}


@pytest.mark.parametrize("k, n, lo, hi", [
    (8, 10, 0.4901624715, 0.9433178485),   # textbook values (z = 1.96)
    (50, 100, 0.4038315304, 0.5961684696),
    (0, 10, 0.0, 0.2775327999),            # upper = z^2 / (n + z^2)
    (10, 10, 0.7224672001, 1.0),
])
def test_wilson_interval_known_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-9)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="correct"):
        wilson_interval(11, 10)


def test_mcnemar_exact_known_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)


def strip_wall(records):
    return [dataclasses.replace(r, wall_seconds=0.0) for r in records]


def test_same_seed_same_records_and_json_round_trip(tmp_path):
    task = ScriptedTask(OUTCOMES, ANSWERS)
    problems = [f"q{i}" for i in range(6)]
    method = best_of_n(3, "majority", temperature=1.0)
    r1 = evaluate(task, method, ScriptedPolicy(TREE), problems, seed=7)
    r2 = evaluate(task, method, ScriptedPolicy(TREE), problems, seed=7)
    assert strip_wall(r1.records) == strip_wall(r2.records)
    # per-problem seeds depend on (seed, problem id), not on the order problems come in
    r3 = evaluate(task, method, ScriptedPolicy(TREE), problems[::-1], seed=7)
    assert strip_wall(r3.records[::-1]) == strip_wall(r1.records)
    seeds_differ = evaluate(task, method, ScriptedPolicy(TREE), problems, seed=8)
    assert [r.completion for r in seeds_differ.records] != [r.completion for r in r1.records]
    path = tmp_path / "report.json"
    r1.to_json(path)
    back = EvalReport.from_json(path)
    assert back.records == r1.records and back.summary == r1.summary


def test_summary_table_and_paired_comparison():
    task = ScriptedTask(OUTCOMES, ANSWERS)
    problems = [f"q{i}" for i in range(5)]
    g = evaluate(task, greedy(), ScriptedPolicy(TREE), problems)
    q = evaluate(task, qstar(k=2, aggregate="zero", temperature=1.0, value=lambda n, c: [[float(s.text in "fh") for s in cs] for cs in c]),
                 ScriptedPolicy(TREE), problems)
    sg, sq = g.summary, q.summary
    assert (sg.n, sg.correct, sq.correct) == (5, 0, 5)
    assert (sq.ci_low, sq.ci_high) == wilson_interval(5, 5)
    assert sg.mean_generated == 3.0 and sg.mean_forwarded == 9.0
    table = format_table([g, q])
    assert "greedy" in table and q.method in table and "95% CI" in table
    c = compare(q, g, seed=0)
    assert (c.a_only, c.b_only, c.difference) == (5, 0, 1.0)
    assert c.p_value == pytest.approx(2 / 32) and c.ci_low == c.ci_high == 1.0
    assert compare(q, g, seed=0) == c  # fixed seed: the same interval
    with pytest.raises(ValueError, match="different problems"):
        compare(q, evaluate(task, greedy(), ScriptedPolicy(TREE), problems[:3]))


def test_evaluate_rejects_a_method_that_returns_no_record():
    with pytest.raises(TypeError, match="ProblemRecord"):
        evaluate(ScriptedTask(OUTCOMES), lambda task, policy, p, seed: None, ScriptedPolicy(TREE), ["q0"])
    assert ProblemRecord.__dataclass_fields__["correct"]


# ---- GSM-Symbolic through MathTask ----------------------------------------------------------


class GsmScripted:
    """Proposes a problem's next worked-solution line (bytes as tokens); at temperature > 0 every
    second sample is the same line with a wrong final answer."""

    def __init__(self, task: MathTask, problems) -> None:
        self.by_prompt = {bytes(task.root(p)): p for p in problems}
        self.tokens_generated = self.tokens_forwarded = 0

    def propose(self, states, k, *, temperature, seed):
        out = []
        for state, kk in zip(states, per_state(k, len(states))):
            data = bytes(np.asarray(state, dtype=np.uint8))
            prompt = next(p for p in self.by_prompt if data.startswith(p))
            problem = self.by_prompt[prompt]
            depth = data[len(prompt):].count(b"\n")
            line = problem.steps[depth] + "\n"
            options = [line] if temperature == 0 or depth + 1 < len(problem.steps) else [line, f"#### {problem.answer}9\n"]
            counts = [sum(1 for j in range(kk) if (j + seed) % len(options) == i) for i in range(len(options))]
            steps = []
            for text, c in zip(options, counts):
                if c:
                    steps.append(Step(list(text.encode()), text, 0.0, depth + 1 == len(problem.steps), c))
                    self.tokens_generated += len(text.encode())
            self.tokens_forwarded += len(state) + sum(len(s.tokens) for s in steps)
            out.append(steps)
        return out


def test_gsm_symbolic_end_to_end():
    task = MathTask(GsmSymbolic(template_ids=["0001", "0005"]), encode=lambda s: list((s + "\n").encode()))
    problems = list(task.task.problems(range(2)))
    report = evaluate(task, greedy(max_steps=30), GsmScripted(task, problems), problems, seed=0)
    assert report.summary.accuracy == 1.0 and all(r.answer == task.answer(f"#### {p.answer}") for r, p in zip(report.records, problems))
    assert all(r.tokens_generated == len(r.completion.encode()) for r in report.records)
    vote = evaluate(task, best_of_n(5, "majority", temperature=1.0, max_steps=30), GsmScripted(task, problems), problems, seed=0)
    # 5 samples of the last line split 3:2 between the true and the wrong answer; which gets 3
    # depends on the problem's seed (sample j takes option (j + seed) % 2): majority follows it
    for r in vote.records:
        assert r.correct == (problem_seed(0, r.question_id) % 2 == 0)
        assert sorted(r.extra["scores"]) == [2.0, 3.0]
