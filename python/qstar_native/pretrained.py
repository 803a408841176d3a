"""Loading a policy (any Hugging Face causal-LM directory) and its Q-value model, and solving.

A policy directory is what ``save_pretrained`` writes (``config.json``, weights, tokenizer),
optionally with a ``qstar.json`` of :class:`PolicySettings` (prompt template, step delimiter,
step length); without one the defaults below apply. A QVM directory is what
:meth:`QValueModel.save_pretrained` writes: a head alone reads the policy's own hidden states
(no extra forward pass), a head with a backbone reads the state itself.

The embedded default (``qstar_native/data``) is a 1M-parameter GSM-Symbolic policy and its QVM,
both trained from scratch by the scripts in this repository (see their READMEs).

Example:
    >>> import qstar_native
    >>> solver = qstar_native.load_default()  # doctest: +SKIP
    >>> print(solver.solve("Tom has 3 boxes of 12 eggs. He breaks 5. How many are left?"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .batch import Node
from .methods import QStar
from .policy.calculator import Calculator
from .policy.hf import HFPolicy
from .scheduler import PolicyExpand, Scheduler, Search, single
from .tasks.math_answers import extract_answer
from .types import Aggregate, SearchResult
from .value import QValueModel
from .value.scorers import QVMScorer, annotation_step_reward, compose

__all__ = [
    "DEFAULT_POLICY_DIR", "DEFAULT_QVM_DIR", "Policy", "PolicySettings", "SolveResult", "SolvedStep", "Solver",
    "SearchSetup", "load_default", "load_policy", "load_qvm", "search_setup",
]  # fmt: skip

_DATA = Path(__file__).resolve().parent / "data"
DEFAULT_POLICY_DIR = _DATA / "default_policy"
DEFAULT_QVM_DIR = _DATA / "default_qvm"
SETTINGS_NAME = "qstar.json"


@dataclass(frozen=True)
class PolicySettings:
    """How a policy is prompted and how its output splits into steps (``qstar.json``).

    ``prompt_template``: the prompt, ``{question}`` replaced by the question. ``step_delimiter``:
    a step ends at the first token whose text contains it. ``max_step_tokens``: a step's length
    limit. ``max_steps``: a solution's step limit. The search defaults for this policy (each
    overridable per call): ``temperature`` of proposals, ``process_reward`` (see :class:`Solver`)
    and ``calculator``.
    """

    prompt_template: str = "{question}\n"
    step_delimiter: str = "\n"
    max_step_tokens: int = 96
    max_steps: int = 12
    temperature: float = 0.7
    process_reward: str | None = "annotations"
    calculator: bool = False

    @classmethod
    def read(cls, directory: str | os.PathLike[str]) -> "PolicySettings":
        path = Path(directory) / SETTINGS_NAME
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e.msg}, line {e.lineno})") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {unknown}; known: {sorted(known)}")
        out = cls(**data)
        if "{question}" not in out.prompt_template:
            raise ValueError(f"{path}: prompt_template must contain '{{question}}'")
        if out.process_reward not in PROCESS_REWARDS:
            raise ValueError(f"{path}: process_reward must be one of {PROCESS_REWARDS}, got {out.process_reward!r}")
        return out


def resolve_device(device: str | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU; otherwise the device named."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device={device!r} is not a torch device ({e}); use 'cpu', 'cuda', 'cuda:0' or 'auto'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device; use device='cpu'")
    return dev


@dataclass
class Policy:
    """A loaded policy: the HF model, its tokenizer, its settings and where it came from."""

    model: Any
    tokenizer: Any
    settings: PolicySettings
    path: Path

    def prompt(self, question: str) -> str:
        return self.settings.prompt_template.replace("{question}", question)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Any) -> str:
        return str(self.tokenizer.decode(np.asarray(ids).tolist(), skip_special_tokens=True))

    def hf_policy(self, *, calculator: bool | None = None, **kw: Any) -> HFPolicy:
        """An :class:`HFPolicy` over this model with this policy's step settings (and its
        calculator setting unless ``calculator`` says otherwise)."""
        kw.setdefault("step_delimiter", self.settings.step_delimiter)
        kw.setdefault("max_step_tokens", self.settings.max_step_tokens)
        use = self.settings.calculator if calculator is None else calculator
        return HFPolicy(self.model, self.tokenizer, calculator=Calculator(self.encode) if use else None, **kw)


def load_policy(path: str | os.PathLike[str] | None = None, *, device: str | None = "cpu") -> Policy:
    """Loads a causal LM, its tokenizer and settings from a directory (default: the embedded one)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = Path(path) if path is not None else DEFAULT_POLICY_DIR
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {str(directory)!r} does not exist; pass a directory written by save_pretrained (config.json, weights, tokenizer)")
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} has no config.json: not a Hugging Face model directory (save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir))")
    settings = PolicySettings.read(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model = model.to(resolve_device(device)).eval()  # type: ignore[arg-type]
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return Policy(model, tokenizer, settings, directory)


def load_qvm(path: str | os.PathLike[str] | None, policy: Policy) -> QValueModel:
    """Loads a QVM for ``policy`` (default path: the embedded default's QVM). A head without a
    backbone must read hidden states of the policy's width."""
    directory = Path(path) if path is not None else DEFAULT_QVM_DIR
    if not directory.is_dir():
        raise FileNotFoundError(f"QVM directory {str(directory)!r} does not exist; pass a directory written by QValueModel.save_pretrained (qstar train-qvm --out DIR)")
    qvm = QValueModel.from_pretrained(directory)
    width = int(policy.model.config.hidden_size)
    if qvm.backbone is None and qvm.hidden_size != width:
        raise ValueError(f"the QVM in {directory} reads hidden states of width {qvm.hidden_size} but the policy in {policy.path} has width {width}: train a QVM for this policy (qstar train-qvm)")
    dev = next(policy.model.parameters()).device
    return qvm.to(dev).eval()


PROCESS_REWARDS = ("annotations", "grounded", None)


def process_reward_scorer(policy: Policy, kind: str | None) -> annotation_step_reward | None:
    """The step scorer for g: ``"annotations"``, ``"grounded"`` or None (see :class:`Solver`)."""
    if kind not in PROCESS_REWARDS:
        raise ValueError(f"process_reward={kind!r}; pick one of {PROCESS_REWARDS}")
    return None if kind is None else annotation_step_reward(policy.decode, grounded=kind == "grounded")


def qvm_scorer(qvm: QValueModel | None) -> QVMScorer | None:
    """The step scorer of ``qvm``: on the policy's hidden states for a head alone, else on the
    state through the QVM's own backbone."""
    return None if qvm is None else QVMScorer(qvm, "hidden" if qvm.backbone is None else "sequence")


@dataclass(frozen=True)
class SearchSetup:
    """One search setting, resolved against the policy's ``qstar.json``: the HF policy (with the
    calculator or not), the scorer giving each step its reward (g) and q (h), and the proposal
    temperature. ``expand`` is what the scheduler calls."""

    policy: HFPolicy
    scorer: compose
    temperature: float
    process_reward: str | None
    calculator: bool
    has_qvm: bool

    @property
    def expand(self) -> PolicyExpand:
        return self.policy.as_expand(self.scorer)

    def describe(self) -> str:
        return f"process reward {self.process_reward}{', calculator' if self.calculator else ''}"


def search_setup(
    policy: Policy,
    qvm: QValueModel | None = None,
    *,
    seed: int = 0,
    temperature: float | None = None,
    process_reward: str | None = "default",
    calculator: bool | None = None,
    **policy_options: Any,
) -> SearchSetup:
    """The parts every method shares (see :class:`Solver` for the arguments); ``None``
    (``"default"`` for ``process_reward``) takes the policy's setting."""
    settings = policy.settings
    temperature = settings.temperature if temperature is None else temperature
    process_reward = settings.process_reward if process_reward == "default" else process_reward
    calculator = settings.calculator if calculator is None else calculator
    scorer = compose(reward=process_reward_scorer(policy, process_reward), q=qvm_scorer(qvm))
    hf = policy.hf_policy(calculator=calculator, seed=seed, **policy_options)
    return SearchSetup(hf, scorer, temperature, process_reward, calculator, qvm is not None)


@dataclass(frozen=True)
class SolvedStep:
    """One step of the chosen path: its text, process reward, and g, h, f of the node it made."""

    text: str
    reward: float
    g: float
    h: float
    f: float


@dataclass(frozen=True)
class SolveResult:
    """What :meth:`Solver.solve` returns: the chosen path (empty when the search found no
    solution), its answer, and the whole search (its tree kept)."""

    question: str
    steps: list[SolvedStep]
    answer: str | None
    search: SearchResult
    node_texts: dict[int, str]

    @property
    def completion(self) -> str:
        return "".join(s.text for s in self.steps)

    @property
    def f(self) -> float | None:
        return self.search.best.f if self.search.best is not None else None

    def chosen_path(self) -> list[int]:
        """Node ids from the root to the chosen solution (``[0]`` when there is none)."""
        best = self.search.best
        return [0] if best is None or self.search.engine is None else self.search.engine.path(best.node_id)

    def write_tree(self, path: str | os.PathLike[str]) -> Path:
        """Writes the search tree as ``.html``, ``.svg`` or ``.dot``, the chosen path highlighted."""
        from .render import DrawNode, write_tree

        if self.search.tree is None:
            raise ValueError("this result has no search tree to draw")
        nodes = [DrawNode(n.id, n.parent, self.node_texts.get(n.id, ""), n.f, n.g, n.h, n.reward, n.status, n.terminal) for n in self.search.tree]
        return write_tree(nodes, path, chosen=self.chosen_path(), title=self.question)

    def __str__(self) -> str:
        if not self.steps:
            return f"no solution found (search stopped: {self.search.stop_reason})"
        lines = [f"{'f':>7} {'g':>7} {'h':>7}  step"]
        for s in self.steps:
            lines.append(f"{s.f:7.3f} {s.g:7.3f} {s.h:7.3f}  {s.text.rstrip()}")
        st = self.search.stats
        lines.append(f"answer: {self.answer}   ({st.expanded} expansions, {st.nodes} nodes, {self.search.wall_seconds:.2f} s)")
        return "\n".join(lines)


class Solver:
    """Q* on a loaded policy: A* with g = the process reward aggregated along the path and
    h = the QVM's Q of each proposed step.

    Args:
        policy: a :class:`Policy` (:func:`load_policy`).
        qvm: its Q-value model, or None for h = 0 (best-first on g alone).
        lam: weight of h. k: next steps proposed per expansion. temperature: their sampling
            (None: the policy's setting).
        process_reward: ``"annotations"`` (the GSM8K ``<<expr=value>>`` check, -1 per wrong one),
            ``"grounded"`` (that, and -1 per operand the context never states), None (g = 0), or
            ``"default"``: the policy's setting.
        aggregate: how g combines step rewards. batch_size: nodes expanded per round.
        max_expansions, max_tokens: the search's budgets. seed: sampling seed.
        calculator: write every ``<<expr=value>>`` result during decode (see
            :mod:`qstar_native.policy.calculator`); None: the policy's setting.
        concurrency: questions searched at once by :meth:`solve_many`.

    Example:
        >>> solver = Solver.from_pretrained()  # the embedded default  # doctest: +SKIP
        >>> result = solver.solve("A box holds 6 eggs. How many eggs are in 7 boxes?")  # doctest: +SKIP
        >>> result.answer, result.write_tree("tree.html")  # doctest: +SKIP
    """

    def __init__(
        self,
        policy: Policy,
        qvm: QValueModel | None = None,
        *,
        lam: float = 1.0,
        k: int = 4,
        temperature: float | None = None,
        process_reward: str | None = "default",
        aggregate: Aggregate = "min",
        batch_size: int = 1,
        max_expansions: int | None = 48,
        max_tokens: int | None = None,
        seed: int = 0,
        calculator: bool | None = None,
        concurrency: int = 16,
    ) -> None:
        self.policy, self.seed, self.concurrency = policy, int(seed), concurrency
        self.setup = search_setup(policy, qvm, seed=seed, temperature=temperature, process_reward=process_reward, calculator=calculator)
        self.method = QStar(
            lam=lam, k=k, aggregate=aggregate, temperature=self.setup.temperature, max_steps=policy.settings.max_steps,
            batch_size=batch_size, max_expansions=max_expansions, max_tokens=max_tokens,
        )  # fmt: skip

    @classmethod
    def from_pretrained(
        cls, policy_dir: str | os.PathLike[str] | None = None, *, qvm: str | os.PathLike[str] | None = "default", device: str | None = "cpu", **kw: Any
    ) -> "Solver":
        """Loads a policy directory (default: the embedded default) and a QVM (``"default"``: the
        embedded one when the policy is the default, else none; a path; or None) and returns a Solver."""
        policy = load_policy(policy_dir, device=device)
        if qvm == "default":
            qvm = DEFAULT_QVM_DIR if policy_dir is None and DEFAULT_QVM_DIR.is_dir() else None
        return cls(policy, None if qvm is None else load_qvm(qvm, policy), **kw)

    def solve(self, question: str, *, seed: int | None = None) -> SolveResult:
        """Searches for the best reasoning path for ``question`` (the whole tree is kept, for
        :meth:`SolveResult.write_tree`)."""
        return self.solve_many([question], seed=seed)[0]

    def solve_many(self, questions: Sequence[str], *, seed: int | None = None) -> list[SolveResult]:
        """Solves several questions together (many in flight, one model call per round)."""
        for i, q in enumerate(questions):
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"question {i} must be a non-empty string")
        config = self.method.config
        seed = self.seed if seed is None else seed
        searches = [Search(self.policy.encode(self.policy.prompt(q)), config, seed=seed, keep_tree=True) for q in questions]
        results: list[Any] = [None] * len(questions)
        scheduler = Scheduler(self.setup.expand, concurrency=self.concurrency)
        for i, res in scheduler.run(single(s) for s in searches):
            results[i] = self._result(questions[i], res)
        return results

    def _result(self, question: str, result: SearchResult) -> SolveResult:
        tree: list[Node] = result.tree or []
        texts = {n.id: self.policy.decode(n.step) for n in tree}
        texts[0] = question
        steps: list[SolvedStep] = []
        if result.best is not None:
            for node_id in result.engine.path(result.best.node_id)[1:]:
                n = tree[node_id]
                steps.append(SolvedStep(texts[node_id], n.reward, n.g, n.h, n.f))
        answer = extract_answer("".join(s.text for s in steps)) if steps else None
        return SolveResult(question, steps, answer, result, texts)


def load_default(*, device: str | None = "cpu", **kw: Any) -> Solver:
    """The embedded default policy and QVM as a :class:`Solver` (keyword arguments go to it)."""
    return Solver.from_pretrained(None, qvm="default", device=device, **kw)
