"""evaluate(): Wilson intervals, reports, paired comparison, reproducibility whatever the
concurrency and order, streamed records and resume; GSM-Symbolic end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qstar_native.batch import Batch, Steps
from qstar_native.evaluation import compare, evaluate, format_table, mcnemar_exact, problem_seed, wilson_interval
from qstar_native.methods import Beam, BestOfN, Greedy, QStar
from qstar_native.records import RecordFileError, RecordWriter, read_records
from qstar_native.tasks import GsmSymbolic
from qstar_native.tasks.math_task import MathTask
from qstar_native.value.scorers import compose
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


def q_fh(batch, steps):
    return [float(t in "fh") for t in steps.texts]


METHODS = [Greedy(), BestOfN(3, "majority", temperature=1.0), Beam(2, 2, temperature=1.0, aggregate="zero"),
           QStar(k=2, aggregate="zero", temperature=1.0, max_expansions=2, fallback=True)]  # fmt: skip


def run(methods, problems, *, seed=0, concurrency=16, writer=None, policy=None, task=None):
    policy = policy or ScriptedPolicy(TREE)
    return evaluate(task or ScriptedTask(OUTCOMES, ANSWERS), methods, policy.as_expand(compose(q=q_fh)), problems, decode=policy.decode,
                    seed=seed, concurrency=concurrency, writer=writer)  # fmt: skip


def test_same_seed_same_records_in_any_order_and_concurrency():
    problems = [f"q{i}" for i in range(6)]
    base = run(METHODS, problems, seed=7, concurrency=1)
    for concurrency, order in ((1, problems[::-1]), (3, problems), (64, problems[2:] + problems[:2])):
        got = run(METHODS, order, seed=7, concurrency=concurrency)
        for a, b in zip(base, got):
            assert a.method == b.method and strip_wall(a.records) == strip_wall(b.records)
    seeds_differ = run(METHODS[1:2], problems, seed=8)[0]
    assert [r.completion for r in seeds_differ.records] != [r.completion for r in base[1].records]


def test_many_problems_share_each_round():
    policy = ScriptedPolicy(TREE)
    run([Greedy()], [f"q{i}" for i in range(5)], concurrency=16, policy=policy)
    assert policy.batches == [5, 5, 5]  # greedy depth 3: every problem in every round
    policy = ScriptedPolicy(TREE)
    run([Greedy()], [f"q{i}" for i in range(5)], concurrency=2, policy=policy)
    assert sum(policy.batches) == 15 and max(policy.batches) == 2  # a finished problem frees its slot at once


def test_summary_table_and_paired_comparison():
    problems = [f"q{i}" for i in range(5)]
    g, q = run([Greedy(), QStar(k=2, aggregate="zero", temperature=1.0)], problems)
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
    short = run([Greedy()], problems[:3])[0]
    with pytest.raises(ValueError, match="different problems"):
        compare(q, short)
    assert compare(q, short, common=True).n == 3


def test_records_stream_to_disk_and_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    problems = [f"q{i}" for i in range(6)]
    full = tmp_path / "full.jsonl"
    with RecordWriter(full, {"seed": 3}) as w:
        run(METHODS, problems, seed=3, writer=w, concurrency=4)
    header, done = read_records(full)
    assert header["seed"] == 3 and len(done) == len(METHODS) * len(problems)
    # interrupted after a few rounds: what finished is on disk; --resume does only the rest
    part = tmp_path / "part.jsonl"
    crashing = ScriptedPolicy(TREE, fail_after=4)
    with pytest.raises(RuntimeError, match="scripted crash"), RecordWriter(part, {"seed": 3}) as w:
        run(METHODS, problems, seed=3, writer=w, concurrency=4, policy=crashing)
    kept = read_records(part)[1]
    assert 0 < len(kept) < len(done)
    with pytest.raises(RecordFileError, match="already exists"):
        RecordWriter(part, {"seed": 3})
    with pytest.raises(RecordFileError, match="other settings"):
        RecordWriter(part, {"seed": 4}, resume=True)
    policy = ScriptedPolicy(TREE)
    with RecordWriter(part, {"seed": 3}, resume=True) as w:
        reports = run(METHODS, problems, seed=3, writer=w, concurrency=2, policy=policy)
    assert sum(len(r.records) for r in reports) == len(done)
    key = lambda r: (r.method, r.question_id)  # noqa: E731
    assert sorted(strip_wall(read_records(part)[1]), key=key) == sorted(strip_wall(done), key=key)


def test_a_cut_last_line_is_dropped_and_repaired_on_resume(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path, {"seed": 0}) as w:
        run([Greedy()], ["q0", "q1"], writer=w)
    with open(path, "ab") as f:
        f.write(b'{"type": "record", "question_id": "q2", "meth')  # a write cut short by a crash
    with pytest.warns(RuntimeWarning, match="incomplete last line"):
        w = RecordWriter(path, {"seed": 0}, resume=True)
    w.write([])
    w.close()
    assert [r.question_id for r in read_records(path)[1]] == ["q0", "q1"]


# ---- GSM-Symbolic through MathTask ----------------------------------------------------------


class GsmScripted:
    """Proposes a problem's next worked-solution line (bytes as tokens); at temperature > 0 every
    second sample is the same line with a wrong final answer."""

    def __init__(self, task: MathTask, problems) -> None:
        self.by_prompt = {bytes(task.root(p)): p for p in problems}

    def decode(self, ids) -> str:
        return bytes(np.asarray(ids, dtype=np.uint8)).decode()

    def as_expand(self, scorer=None):
        from qstar_native.scheduler import PolicyExpand

        return PolicyExpand(self, scorer)

    def propose(self, batch: Batch) -> Steps:
        per_node, toks, texts, terminal, count, gen, fwd = [], [], [], [], [], [], []
        for i in range(len(batch)):
            data = bytes(np.asarray(batch.state(i), dtype=np.uint8))
            prompt = next(p for p in self.by_prompt if data.startswith(p))
            problem = self.by_prompt[prompt]
            depth = data[len(prompt):].count(b"\n")
            line = problem.steps[depth] + "\n"
            kk, seed = int(batch.k[i]), int(batch.seed[i])
            options = [line] if batch.temperature[i] == 0 or depth + 1 < len(problem.steps) else [line, f"#### {problem.answer}9\n"]
            counts = [sum(1 for j in range(kk) if (j + seed) % len(options) == o) for o in range(len(options))]
            made = [(text, c) for text, c in zip(options, counts) if c]
            per_node.append(len(made))
            for text, c in made:
                toks.append(list(text.encode()))
                texts.append(text)
                terminal.append(depth + 1 == len(problem.steps))
                count.append(c)
            gen.append(sum(len(t.encode()) for t, _ in made))
            fwd.append(len(data) + gen[-1])
        return Steps(np.array(per_node), np.array([t for ts in toks for t in ts], np.int32), [len(t) for t in toks],
                     terminal=np.array(terminal, bool), count=count, texts=texts, generated=gen, forwarded=fwd)  # fmt: skip


def test_gsm_symbolic_end_to_end():
    task = MathTask(GsmSymbolic(template_ids=["0001", "0005"]), encode=lambda s: list((s + "\n").encode()))
    problems = list(task.task.problems(range(2)))
    policy = GsmScripted(task, problems)
    [report] = evaluate(task, [Greedy(max_steps=30)], policy.as_expand(), problems, decode=policy.decode, seed=0)
    assert report.summary.accuracy == 1.0 and all(r.answer == task.answer(f"#### {p.answer}") for r, p in zip(report.records, sorted(problems, key=lambda p: p.id)))
    assert all(r.tokens_generated == len(r.completion.encode()) for r in report.records)
    assert all(r.question and r.gold for r in report.records)  # a wrong answer can be read without the data
    [vote] = evaluate(task, [BestOfN(5, "majority", temperature=1.0, max_steps=30)], policy.as_expand(), problems, decode=policy.decode, seed=0)
    # 5 samples of the last line split 3:2 between the true and the wrong answer; which gets 3
    # depends on the problem's seed (sample j takes option (j + seed) % 2): majority follows it
    for r in vote.records:
        assert r.correct == (problem_seed(0, r.question_id) % 2 == 0)
        assert sorted(r.extra["scores"]) == [2.0, 3.0]
