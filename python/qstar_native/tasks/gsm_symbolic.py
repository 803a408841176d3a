"""GSM-Symbolic: 100 GSM8K templates that instantiate into fresh problems with known answers.

A template (``data/gsm_symbolic/eng/symbolic/*.toml``, MIT) holds a question and a worked
solution with ``{expr}`` placeholders, ``#init:`` lines that draw variables, ``#conditions:``
the draw must meet, and an ``#answer:`` expression. :func:`instantiate` draws with
``random.Random`` seeded by (template id, seed), so the same seed always gives the same problem,
on every machine. Expressions run through :mod:`qstar_native.tasks.safe_eval` (exact arithmetic),
never ``eval``.

A draw is cheap: every expression is compiled once per template, a condition is tested as soon
as the last variable it uses is drawn, and a failed draw starts over (plain rejection sampling,
so the accepted draws are uniform over the valid ones). Some templates need thousands of draws.

The instance's ``steps`` are the worked solution's lines, ending with the ``#### N`` line, with
GSM8K's ``<<expr=value>>`` annotations kept (see :func:`annotation_reward`).

>>> t = load_templates()[0]
>>> p = instantiate(t, seed=7)
>>> p == instantiate(t, seed=7), p.steps[-1] == f"#### {p.answer}"
(True, True)
"""

from __future__ import annotations

import ast
import functools
import importlib.resources
import json
import random
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._template_lib import DRAW_FUNCTIONS, HELPER_FUNCTIONS, Reject, format_value, literal_value
from .annotations import annotation_reward
from .math_answers import extract_answer, is_equivalent
from .problem import Problem
from .safe_eval import Compiled, SafeEvalError, compile_expr

__all__ = ["GsmSymbolic", "Template", "TemplateError", "instantiate", "load_instruction", "load_templates"]

MAX_DRAWS = 100_000

# Known slips in the upstream templates, fixed here so the shipped data stays byte-identical.
_KNOWN_FIXES: dict[str, tuple[tuple[str, str], ...]] = {
    # 0095's #answer indexes an int (`mult_var[1]`); its worked solution uses `mult_var`, as meant.
    "0095": (("#answer: n1 + n1 * mult_var[1] + n2 + n3", "#answer: n1 + n1 * mult_var + n2 + n3"),),
}

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_INIT_LINE = re.compile(r"^(?P<targets>\$?\w+(?:\s*,\s*\$?\w+)*)\s*=(?!=)\s*(?P<expr>.+)$")

Env = dict[str, object]
Piece = str | Compiled


class TemplateError(ValueError):
    """A template is malformed, or no draw meets its conditions."""


@dataclass(frozen=True)
class _Init:
    targets: tuple[str, ...]
    draw: Callable[[random.Random, Env], object]
    checks: tuple[Compiled, ...]  # the conditions whose last variable this line binds
    source: str


@dataclass(frozen=True)
class _Program:
    constants: Env  # the replacement lists, numeric strings already numbers
    inits: tuple[_Init, ...]
    answer: Compiled
    question: tuple[Piece, ...]
    solution: tuple[Piece, ...]


@dataclass(frozen=True)
class Template:
    """One parsed GSM-Symbolic template; build with :func:`parse_template` or :func:`load_templates`."""

    id: str
    question: str  # the question with {var,default} placeholders
    solution: str  # the worked solution with {expr} placeholders and a final '#### {expr}'
    init: tuple[str, ...]
    conditions: tuple[str, ...]
    answer: str  # the #answer expression
    original_question: str
    original_answer: str
    _program: _Program = field(repr=False, compare=False)


def _names_used(expr: str) -> set[str]:
    tree = ast.parse(expr.strip(), mode="eval")
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


def parse_template(data: Mapping[str, Any], template_id: str, replacements: Mapping[str, Any]) -> Template:
    """Parse one template (the TOML table as a dict) against the named lists in ``replacements``.

    Raises :class:`TemplateError` naming the template and the offending line.
    """
    where = f"template {template_id}"
    missing = [k for k in ("question", "answer", "question_annotated", "answer_annotated") if k not in data]
    if missing:
        raise TemplateError(f"{where}: missing field(s) {missing}")
    annotated = data["question_annotated"]
    for old, new in _KNOWN_FIXES.get(template_id, ()):
        annotated = annotated.replace(old, new)
    head, found, spec = annotated.partition("#init:")
    if not found:
        raise TemplateError(f"{where}: question_annotated has no '#init:' section")
    init, conditions, answer = _parse_spec(spec, where)
    constants: Env = {k: literal_value(v) for k, v in replacements.items()}
    question, solution = head.strip(), data["answer_annotated"].strip()
    try:
        program = _compile(init, conditions, answer, question, solution, constants)
    except (SafeEvalError, SyntaxError) as e:
        raise TemplateError(f"{where}: {e}") from None
    return Template(
        id=template_id,
        question=question,
        solution=solution,
        init=init,
        conditions=conditions,
        answer=answer,
        original_question=data["question"],
        original_answer=data["answer"].strip(),
        _program=program,
    )


def _parse_spec(spec: str, where: str) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    sections: dict[str, list[str]] = {"init": [], "conditions": []}
    current, answer = "init", None
    for line in spec.splitlines():
        text = line.strip()
        if not text:
            continue
        if text.startswith("#conditions:"):
            current = "conditions"
        elif text.startswith("#answer:"):
            answer = text[len("#answer:") :].strip()
        elif text.startswith("-"):
            sections[current].append(text[1:].strip())
        else:
            raise TemplateError(f"{where}: unexpected line {text!r} (expected '- ...' or a '#section:')")
    if not answer:
        raise TemplateError(f"{where}: no '#answer: <expression>' line")
    if not sections["init"]:
        raise TemplateError(f"{where}: no '- name = expression' lines under '#init:'")
    return tuple(sections["init"]), tuple(sections["conditions"]), answer


def _compile(
    init: Sequence[str], conditions: Sequence[str], answer: str, question: str, solution: str, constants: Env
) -> _Program:
    bound_at: dict[str, int] = {}
    lines: list[tuple[tuple[str, ...], Callable[[random.Random, Env], object], str]] = []
    for i, line in enumerate(init):
        m = _INIT_LINE.match(line)
        if m is None:
            raise SafeEvalError(f"init line {line!r} is not 'name[, name...] = expression'")
        targets = tuple(t.strip().lstrip("$") for t in m["targets"].split(","))  # '$' marks numbers
        early = _names_used(m["expr"]) - bound_at.keys() - constants.keys()
        if early:
            raise SafeEvalError(f"init line {line!r} uses {sorted(early)} before an #init line draws it")
        lines.append((targets, _compile_draw(m["expr"], constants), line))
        for t in targets:
            bound_at[t] = i

    def last_line(expr: str) -> int:
        unknown = _names_used(expr) - bound_at.keys() - constants.keys()
        if unknown:
            raise SafeEvalError(f"{expr!r} uses unknown name(s) {sorted(unknown)}")
        return max((bound_at[n] for n in _names_used(expr) if n in bound_at), default=0)

    checks: list[list[Compiled]] = [[] for _ in init]
    for cond in conditions:
        checks[last_line(cond)].append(compile_expr(cond, functions=HELPER_FUNCTIONS))
    last_line(answer)
    inits = tuple(_Init(t, d, tuple(c), s) for (t, d, s), c in zip(lines, checks))
    return _Program(
        constants=constants,
        inits=inits,
        answer=compile_expr(answer, functions=HELPER_FUNCTIONS),
        question=_compile_text(question, last_line, question_style=True),
        solution=_compile_text(solution, last_line, question_style=False),
    )


def _compile_draw(expr: str, constants: Env) -> Callable[[random.Random, Env], object]:
    """A draw function call becomes fn(rng, *args); arguments without variables are folded once."""
    node = ast.parse(expr.strip(), mode="eval").body
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in DRAW_FUNCTIONS):
        value = compile_expr(expr, functions=HELPER_FUNCTIONS)
        return lambda rng, env: value(env)
    if node.keywords:
        raise SafeEvalError(f"{expr!r}: keyword arguments are not supported")
    fn = DRAW_FUNCTIONS[node.func.id]
    args: list[Compiled] = []
    for arg in node.args:
        source = ast.get_source_segment(expr.strip(), arg) or ""
        compiled = compile_expr(source, functions=HELPER_FUNCTIONS)
        if _names_used(source) <= constants.keys():  # no variables: evaluate once, now
            folded = compiled(constants)
            compiled = lambda env, folded=folded: folded  # noqa: E731
        args.append(compiled)
    return lambda rng, env: fn(rng, *[a(env) for a in args])


def _compile_text(text: str, check: Callable[[str], int], *, question_style: bool) -> tuple[Piece, ...]:
    """Split text into literal pieces and compiled {placeholders}; in questions '{var,default}'."""
    pieces: list[Piece] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        expr = m[1].split(",", 1)[0] if question_style else m[1]
        check(expr)
        pieces += [text[pos : m.start()], compile_expr(expr.strip(), functions=HELPER_FUNCTIONS)]
        pos = m.end()
    pieces.append(text[pos:])
    return tuple(p for p in pieces if p != "")


def _render(pieces: Sequence[Piece], env: Env) -> str:
    return "".join(p if isinstance(p, str) else format_value(p(env)) for p in pieces)


def instantiate(template: Template, seed: int, *, max_draws: int = MAX_DRAWS) -> Problem:
    """Draw the template's variables with ``seed`` until every condition holds; render the problem.

    Raises :class:`TemplateError` when no draw in ``max_draws`` meets the conditions.
    """
    if type(seed) is not int:
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if max_draws < 1:
        raise ValueError(f"max_draws must be >= 1, got {max_draws}")
    program = template._program
    rng = random.Random(f"gsm_symbolic:{template.id}:{seed}")  # str seeds hash the same everywhere
    for _ in range(max_draws):
        env = dict(program.constants)
        try:
            if not _draw(program, rng, env):
                continue
            answer = program.answer(env)
            question, solution = _render(program.question, env), _render(program.solution, env)
        except (Reject, ZeroDivisionError):
            continue
        except SafeEvalError as e:
            raise TemplateError(f"template {template.id}, seed {seed}: {e}") from None
        steps = tuple(line.strip() for line in solution.splitlines() if line.strip())
        return Problem(f"gsm_symbolic-{template.id}-{seed}", question, format_value(answer), steps)
    raise TemplateError(f"template {template.id}: no draw met its conditions in {max_draws} draws (seed {seed})")


def _draw(program: _Program, rng: random.Random, env: Env) -> bool:
    for step in program.inits:
        value = step.draw(rng, env)
        if len(step.targets) == 1:
            env[step.targets[0]] = value
        else:
            if not isinstance(value, (list, tuple)) or len(value) != len(step.targets):
                raise SafeEvalError(f"{step.source!r} gives {value!r}, which does not unpack to {step.targets}")
            env.update(zip(step.targets, value))
        for check in step.checks:
            if not check(env):
                return False
    return True


def _data_root(directory: str | Path | None) -> Any:
    if directory is not None:
        return Path(directory)
    return importlib.resources.files("qstar_native") / "data" / "gsm_symbolic" / "eng"


def load_templates(directory: str | Path | None = None) -> tuple[Template, ...]:
    """Parse the templates shipped with the package, or those under ``directory`` (a folder with
    ``symbolic/*.toml`` and ``replacements.json``), sorted by id."""
    if directory is None:
        return _packaged_templates()
    return _load(_data_root(directory))


@functools.cache
def _packaged_templates() -> tuple[Template, ...]:
    return _load(_data_root(None))


def _load(root: Any) -> tuple[Template, ...]:
    symbolic = root / "symbolic"
    if not symbolic.is_dir():
        raise FileNotFoundError(f"{symbolic} is not a folder of GSM-Symbolic templates (*.toml)")
    replacements = json.loads((root / "replacements.json").read_text(encoding="utf-8"))
    entries = sorted((e for e in symbolic.iterdir() if e.name.endswith(".toml")), key=lambda e: e.name)
    templates = []
    for entry in entries:
        try:
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise TemplateError(f"{entry}: invalid TOML: {e}") from None
        templates.append(parse_template(data, entry.name[: -len(".toml")], replacements))
    return tuple(templates)


def load_instruction(directory: str | Path | None = None) -> str:
    """The instruction line for prompts (asks for the final answer in ``\\boxed{}``)."""
    data = tomllib.loads((_data_root(directory) / "instruction.toml").read_text(encoding="utf-8"))
    return str(data["instruction"]).strip()


class GsmSymbolic:
    """The GSM-Symbolic task: problems for a range of seeds, prompts, outcome and process rewards.

    >>> task = GsmSymbolic(template_ids=["0001", "0005"])
    >>> [p.id for p in task.problems(range(2))]
    ['gsm_symbolic-0001-0', 'gsm_symbolic-0005-0', 'gsm_symbolic-0001-1', 'gsm_symbolic-0005-1']
    >>> task.step_reward("12 / 4 = <<12/4=3>>3 boxes"), task.step_reward("<<12/4=4>>4 boxes")
    (0.0, -1.0)
    """

    def __init__(
        self,
        template_ids: Iterable[str] | None = None,
        *,
        templates: Sequence[Template] | None = None,
        prompt_template: str | None = None,
    ) -> None:
        if prompt_template is not None and "{question}" not in prompt_template:
            raise ValueError(f"prompt_template must contain '{{question}}', got {prompt_template!r}; e.g. '{{question}}\\n'")
        pool = tuple(templates) if templates is not None else load_templates()
        if template_ids is not None:
            by_id = {t.id: t for t in pool}
            wanted = list(template_ids)
            unknown = [i for i in wanted if i not in by_id]
            if unknown:
                raise ValueError(f"template_ids: unknown id(s) {unknown}; ids look like '0000'..'0099'")
            pool = tuple(by_id[i] for i in wanted)
        if not pool:
            raise ValueError("GsmSymbolic needs at least one template")
        self.templates: tuple[Template, ...] = pool
        self.instruction: str = load_instruction()
        self.prompt_template = prompt_template

    def problems(self, seeds: Iterable[int]) -> Iterator[Problem]:
        """Each seed in turn, every template: ``len(seeds) * len(templates)`` problems."""
        for seed in seeds:
            for template in self.templates:
                yield instantiate(template, seed)

    def prompt(self, problem: Problem) -> str:
        """The instruction and the question, as one user message; with ``prompt_template`` (e.g.
        ``"{question}\\n"``, the embedded default policy's format) that template filled in."""
        if self.prompt_template is not None:
            return self.prompt_template.replace("{question}", problem.question)
        return f"{self.instruction}\n\n{problem.question}"

    def is_correct(self, problem: Problem, completion: str) -> bool:
        """Outcome reward: the completion's final answer (``\\boxed{}`` or ``####``) equals the answer."""
        predicted = extract_answer(completion)
        return predicted is not None and is_equivalent(predicted, problem.answer)

    def step_reward(self, step: str) -> float:
        """Process reward of one step: :func:`annotation_reward`."""
        return annotation_reward(step)
