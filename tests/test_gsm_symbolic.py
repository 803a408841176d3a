"""GSM-Symbolic: every template instantiates, annotations and answers agree; the annotation rule."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest

from qstar_native.tasks import (
    GsmSymbolic,
    TemplateError,
    annotation_reward,
    check_annotations,
    extract_answer,
    instantiate,
    load_templates,
    safe_eval,
)
from qstar_native.tasks.gsm_symbolic import parse_template

TEMPLATES = load_templates()
BY_ID = {t.id: t for t in TEMPLATES}
SEEDS = range(30)
ANNOTATION = re.compile(r"<<(.*?)=([^=]*?)>>")
LONG_DECIMAL = re.compile(r"\d*\.\d{15,}")  # a repeating decimal printed at float precision


def test_ships_all_100_templates() -> None:
    assert [t.id for t in TEMPLATES] == [f"{i:04d}" for i in range(100)]


@pytest.mark.parametrize("template_id", sorted(BY_ID))
def test_instances_agree_with_their_template(template_id: str) -> None:
    template = BY_ID[template_id]
    questions = set()
    for seed in SEEDS:
        p = instantiate(template, seed)
        questions.add(p.question)
        assert p.id == f"gsm_symbolic-{template_id}-{seed}"
        assert p.steps and all(p.steps)
        assert "{" not in p.question + p.solution, "a placeholder was left unrendered"
        # The worked solution ends with '#### N' and N equals the template's #answer expression.
        final = extract_answer(p.steps[-1])
        assert p.steps[-1].startswith("####") and final is not None
        assert safe_eval(final) == safe_eval(p.answer), (seed, p.steps[-1], p.answer)
        for step in p.steps:
            for expr, value in ANNOTATION.findall(step):
                got, claimed = safe_eval(expr), safe_eval(value)
                if LONG_DECIMAL.search(expr) or LONG_DECIMAL.search(value):
                    assert abs(got - claimed) <= Fraction(1, 10**12) * max(1, abs(claimed)), (seed, step)
                else:
                    assert got == claimed, (seed, step)
            assert annotation_reward(step) == 0.0, (seed, step)
    # Different seeds give different questions (0098 has only ~400 distinct ones; 30 draws rarely collide).
    assert len(questions) >= 0.8 * len(SEEDS), template_id


def test_same_seed_same_instance_pinned() -> None:
    assert instantiate(BY_ID["0001"], 3) == instantiate(BY_ID["0001"], 3)
    assert instantiate(BY_ID["0001"], 3) != instantiate(BY_ID["0001"], 4)
    # Pinned: the draw stream is part of the contract (held-out sets are named by seed).
    p = instantiate(BY_ID["0005"], 0)
    assert (p.answer, p.steps[-1]) == (PINNED_0005_0_ANSWER, f"#### {PINNED_0005_0_ANSWER}")
    assert p.question == PINNED_0005_0_QUESTION


PINNED_0005_0_ANSWER = "168"
PINNED_0005_0_QUESTION = (
    "Ava makes coffee using teaspoons of sugar and cups of water in the ratio of 7:13. If she used a total of "
    "480 teaspoons of sugar and cups of water, calculate the number of teaspoonfuls of sugar she used."
)


def test_fractions_from_replacements_keep_their_text() -> None:
    # 0077 asks about '{frac}' of a paper: '1/3' must read as a fraction, not 0.3333333333333333.
    texts = {instantiate(BY_ID["0077"], s).question for s in range(40)}
    assert any(re.search(r"finished writing 1/\d+ of", q) for q in texts)
    assert not any("333333" in q for q in texts)


def _template(init: str, conditions: str = "", answer: str = "x") -> dict[str, str]:
    return {
        "question": "orig",
        "answer": "#### 1",
        "question_annotated": f"I have {{x,3}} apples.\n#init:\n{init}\n#conditions:\n{conditions}\n#answer: {answer}",
        "answer_annotated": "So <<{x}*2={x*2}>>{x*2}.\n#### {x}",
    }


def test_custom_template_and_errors() -> None:
    t = parse_template(_template("- $x = range(1, 50)", "- divides(x, 7)"), "t1", {})
    p = instantiate(t, 0)
    assert int(p.answer) % 7 == 0 and p.steps == (f"So <<{p.answer}*2={2 * int(p.answer)}>>{2 * int(p.answer)}.", f"#### {p.answer}")
    with pytest.raises(TemplateError, match="template t2: .*unknown name"):
        parse_template(_template("- $x = range(1, 5)", "- y > 2"), "t2", {})
    with pytest.raises(TemplateError, match="template t3: .*calling 'open'"):
        parse_template(_template("- $x = open('f')"), "t3", {})
    with pytest.raises(TemplateError, match="template t4: .*is not 'name"):
        parse_template(_template("- range(1, 5)"), "t4", {})
    with pytest.raises(TemplateError, match="template t5: no draw met its conditions in 50 draws"):
        instantiate(parse_template(_template("- $x = range(1, 5)", "- x > 10"), "t5", {}), 0, max_draws=50)
    with pytest.raises(TypeError, match="seed must be an int"):
        instantiate(t, "0")  # type: ignore[arg-type]


def test_load_templates_from_a_folder(tmp_path: Path) -> None:
    (tmp_path / "symbolic").mkdir()
    (tmp_path / "replacements.json").write_text('{"fruits": ["fig", "kiwi"]}')
    (tmp_path / "symbolic" / "0001.toml").write_text(
        'question = "q"\nanswer = "#### 1"\nquestion_annotated = """{f,fig} x {x,2}\n#init:\n'
        '- f = sample(fruits)\n- $x = range(2, 9)\n#answer: x"""\nanswer_annotated = "#### {x}"\n'
    )
    (t,) = load_templates(tmp_path)
    assert instantiate(t, 1).question.split()[0] in ("fig", "kiwi")
    with pytest.raises(FileNotFoundError, match="not a folder of GSM-Symbolic templates"):
        load_templates(tmp_path / "missing")


def test_task_object() -> None:
    task = GsmSymbolic(template_ids=["0001", "0040"])
    problems = list(task.problems(range(3)))
    assert [p.id for p in problems[:2]] == ["gsm_symbolic-0001-0", "gsm_symbolic-0040-0"]
    assert len(problems) == 6
    p = problems[0]
    assert task.prompt(p).startswith("Solve the following math problem") and p.question in task.prompt(p)
    assert task.is_correct(p, f"... so the total is \\boxed{{{p.answer}}}.")
    assert not task.is_correct(p, f"\\boxed{{{int(p.answer) + 1}}}")
    assert not task.is_correct(p, "I do not know")
    with pytest.raises(ValueError, match="template_ids: unknown id"):
        GsmSymbolic(template_ids=["9999"])


# ------------------------------------------------------------------------ annotation rule


@pytest.mark.parametrize(
    ("step", "reward"),
    [
        ("No calculator here.", 0.0),
        ("He pays 3*4 = <<3*4=12>>12 dollars.", 0.0),
        ("<<3*4=13>>13", -1.0),
        ("<<3*4=12>>12 then <<12+1=14>>14 then <<14/2=6>>6", -2.0),
        ("<<10/3=3.33>>3.33", 0.0),  # rounded to its last written place
        ("<<10/3=3.3>>3.3", 0.0),
        ("<<10/3=3.4>>3.4", -1.0),
        ("<<7/2=3>>3", -1.0),  # a whole-number value gets no rounding slack
        ("<<12*0.6666666666666667=8>>8", 0.0),  # float-precision operand
        ("<<1,000*2=2,000>>2,000", 0.0),
        ("<<.5*4=2>>2", 0.0),
        ("<<oops>>", -1.0),
        ("<<1/0=1>>", -1.0),
        ("<<__import__('os').system('x')=0>>", -1.0),
        ("<<2**100000=1>>", -1.0),
    ],
)
def test_annotation_reward(step: str, reward: float) -> None:
    assert annotation_reward(step) == reward


def test_annotation_details_and_penalty() -> None:
    checks = check_annotations("<<2+2=4>> and <<2+2=5>>")
    assert [c.correct for c in checks] == [True, False]
    assert "2+2 is 4, not 5" in checks[1].reason
    assert annotation_reward("<<2+2=5>> <<1+1=3>>", penalty=-0.5) == -1.0
