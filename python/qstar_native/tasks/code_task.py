"""CodeTask: HumanEval and MBPP as the :class:`~qstar_native.protocols.Task` that evaluation,
labelling and the methods use. A step is one line of code.

The prompt. Instruct models (``render`` given: the tokenizer's chat template) get the usual
instruction as the user turn (HumanEval: complete this function, shown in a code block; MBPP: its
text and first test) and an answer that already opens a code fence, so the model writes the whole
program from its first token. Base models get HumanEval's prompt as it is (the model writes the
function's body: *body mode*), or MBPP's text, its first test and an open fence.

The terminal rule (:meth:`CodeTask.is_terminal`, given to the policy): a line that closes the
fence, and in body mode also a line at column 0 (the body has ended: the next top-level
statement); the policy adds end-of-sequence. The line is the step's text preceded by whatever the
state already holds of the current line, since tokenizers merge a newline with the next line's
indentation.

The answer (:meth:`CodeTask.program`): the code up to the closing fence (when a chatty model
closes it at once, its next fenced block); for HumanEval, the prompt's
imports and the function when the model wrote it whole, else the prompt and the body up to its
first line at column 0. The outcome: all tests pass in the sandbox
(:func:`~qstar_native.tasks.code.check_program`); several programs run in parallel up to the core
count, each with its own limits, and no program runs twice.

Example:
    >>> from qstar_native.tasks.code import load_humaneval
    >>> task = CodeTask("humaneval", encode=lambda s: list(s.encode()))   # a base model: body mode
    >>> p = load_humaneval()[0]
    >>> body = p.reference_solution[len(p.prompt):]
    >>> task.outcome(p, body + "\nprint('done')\n"), task.outcome(p, "    return True\n")
    (1.0, 0.0)
    >>> task.is_terminal("    return x\n"), task.is_terminal("def helper():\n"), task.is_terminal("```\n")
    (False, True, True)
"""

from __future__ import annotations

import ast
import os
import re
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Literal, Sequence

from .code import CODE_REWARD_AGGREGATION, CodeProblem, check_program

__all__ = ["CODE_MAX_STEPS", "CodeSource", "CodeTask", "extract_fenced"]

CODE_MAX_STEPS = 40
"""Lines a solution may take unless ``--max-steps`` says otherwise (HumanEval's longest canonical
body has 31 lines, blank lines included)."""
_FENCE = "```"
_IMPORT = re.compile(r"^(?:import|from)\s", re.M)


def extract_fenced(text: str) -> str | None:
    """The content of the first complete or open ```` ``` ```` block in ``text`` (None without one).

    >>> extract_fenced("Sure!\\n```python\\nx = 1\\n```\\nDone."), extract_fenced("no code")
    ('x = 1\\n', None)
    """
    start = text.find(_FENCE)
    if start < 0:
        return None
    newline = text.find("\n", start)
    if newline < 0:
        return ""
    return _until_fence(text[newline + 1 :])


def _until_fence(code: str) -> str:
    """``code`` up to the first line that starts (after indentation) with a closing fence."""
    out = []
    for line in code.splitlines(keepends=True):
        if line.lstrip().startswith(_FENCE):
            break
        out.append(line)
    return "".join(out)


def _body(code: str) -> str:
    """A function body: ``code`` up to its first non-blank line at column 0."""
    out = []
    for line in code.splitlines(keepends=True):
        if line.strip() and not line[0].isspace():
            break
        out.append(line)
    return "".join(out)


class CodeTask:
    """HumanEval or MBPP problems (:class:`~qstar_native.tasks.code.CodeProblem`) as a Task.

    Args:
        kind: ``"humaneval"`` (a function to complete) or ``"mbpp"`` (a program to write).
        encode: the policy tokenizer's ``text -> token ids``.
        render: the chat template as ``user text -> prompt text`` (instruct models); None for a
            base model.
        workers: sandbox runs at once in :meth:`outcomes` (default: the core count).
        sandbox_options: keyword arguments of the sandbox (``timeout_s`` ...).
    """

    def __init__(self, kind: Literal["humaneval", "mbpp"], encode: Callable[[str], Sequence[int]], *,
                 render: Callable[[str], str] | None = None, workers: int | None = None, **sandbox_options: Any) -> None:  # fmt: skip
        if kind not in ("humaneval", "mbpp"):
            raise ValueError(f"kind={kind!r}; pick 'humaneval' or 'mbpp'")
        if not callable(encode):
            raise TypeError("encode must be callable: text -> token ids (e.g. tokenizer.encode)")
        self.kind, self.encode, self.render = kind, encode, render
        self.body_mode = kind == "humaneval" and render is None
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.sandbox_options = sandbox_options
        self._results: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    # ---- the prompt -----------------------------------------------------------------------

    def instruction(self, problem: CodeProblem) -> str:
        """The user turn of an instruct model (the usual harnesses' wording)."""
        if self.kind == "humaneval":
            return f"Complete the following Python function.\n{_FENCE}python\n{problem.prompt}{_FENCE}"
        first_test = problem.tests.splitlines()[0] if problem.tests else ""
        return f"{problem.prompt}\nYour code should pass this test:\n{first_test}"

    def prompt(self, problem: CodeProblem) -> str:
        """The root state's text (see the module docstring)."""
        if self.body_mode:
            return problem.prompt
        if self.render is not None:
            return self.render(self.instruction(problem)) + f"{_FENCE}python\n"
        return self.instruction(problem) + f"\n{_FENCE}python\n"

    # ---- the Task protocol ----------------------------------------------------------------

    def problem_id(self, problem: CodeProblem) -> str:
        return str(problem.task_id)

    def root(self, problem: CodeProblem) -> Sequence[int]:
        return list(self.encode(self.prompt(problem)))

    def is_terminal(self, line: str) -> bool:
        """Whether a step (its line, see the module docstring) ends the solution: it closes the
        fence, or in body mode it starts at column 0."""
        if line.lstrip().startswith(_FENCE):
            return True
        return self.body_mode and bool(line.strip()) and not line[0].isspace()

    def code(self, completion: str) -> str:
        """The code a completion holds: up to the closing fence; when the model closed the fence
        at once and went on talking, the next fenced block. In body mode, up to the first line at
        column 0."""
        code = _until_fence(completion)
        if not code.strip() and _FENCE in completion:
            rest = completion[completion.index(_FENCE) :].partition("\n")[2]
            code = extract_fenced(rest) or ""
        return _body(code) if self.body_mode else code

    def program(self, problem: CodeProblem, completion: str) -> str:
        """The program a completion answers with: MBPP's code; for HumanEval the prompt and the
        body, or the prompt's imports and the function when the model wrote it whole."""
        code = self.code(completion)
        if self.kind == "mbpp":
            return code
        if problem.entry_point and re.search(rf"^def {re.escape(problem.entry_point)}\s*\(", code, re.M):
            imports = "".join(line + "\n" for line in problem.prompt.splitlines() if _IMPORT.match(line))
            return imports + code
        return problem.prompt + _body(code)

    def outcome(self, problem: CodeProblem, completion: str) -> float:
        """1.0 when the program passes all the problem's tests in the sandbox, else 0.0."""
        return self.outcomes(problem, [completion])[0]

    def outcomes(self, problem: CodeProblem, completions: Sequence[str]) -> list[float]:
        """:meth:`outcome` of several completions, their distinct programs run in parallel."""
        programs = [self.program(problem, c) for c in completions]
        with self._lock:
            todo = sorted({p for p in programs if (problem.task_id, p) not in self._results})
        if todo:
            with ThreadPoolExecutor(min(self.workers, len(todo))) as pool:
                passed = list(pool.map(lambda p: check_program(problem, p, **self.sandbox_options).passed, todo))
            with self._lock:
                self._results.update({(problem.task_id, p): float(ok) for p, ok in zip(todo, passed)})
        with self._lock:
            return [self._results[(problem.task_id, p)] for p in programs]

    def answer(self, completion: str) -> str | None:
        """The completion's code in a canonical form (``ast.unparse``: layout and comments do not
        count) for majority vote; None when it does not parse."""
        code = self.code(completion)
        first = next((line for line in code.splitlines() if line.strip()), "")
        code = textwrap.dedent(_body(code) if first[:1].isspace() else code)  # a body, maybe with helpers after it
        try:
            return ast.unparse(ast.parse(code)) if code.strip() else None
        except SyntaxError:
            return None


class CodeSource:
    """A code task before a policy is chosen: ``task(encode, render)`` makes its :class:`CodeTask`."""

    aggregate = CODE_REWARD_AGGREGATION
    """How g combines the syntax rewards of a path's steps (the paper's: the last one)."""

    def __init__(self, kind: Literal["humaneval", "mbpp"]) -> None:
        if kind not in ("humaneval", "mbpp"):
            raise ValueError(f"kind={kind!r}; pick 'humaneval' or 'mbpp'")
        self.kind = kind

    def task(self, encode: Callable[[str], Sequence[int]], render: Callable[[str], str] | None = None) -> CodeTask:
        return CodeTask(self.kind, encode, render=render)
