"""Loading a policy (any Hugging Face causal-LM directory) and its Q-value model, and the parts every
method built on them shares (:func:`search_setup`); :mod:`qstar_native.solver` solves with them.

A policy directory is what ``save_pretrained`` writes (``config.json``, weights, tokenizer),
optionally with a ``qstar.json`` of :class:`PolicySettings` (prompt template, step delimiter,
step length); without one the defaults below apply. A QVM directory is what
:meth:`QValueModel.save_pretrained` writes: a head alone reads the policy's own hidden states
(no extra forward pass), a head with a backbone reads the state itself.

The embedded default (``qstar_native/data``) is a 1M-parameter GSM-Symbolic policy and its QVM,
both trained from scratch by the scripts in this repository (see their READMEs).

Example:
    >>> from qstar_native.pretrained import load_policy, load_qvm, DEFAULT_QVM_DIR
    >>> policy = load_policy(None)  # the embedded default  # doctest: +SKIP
    >>> qvm = load_qvm(DEFAULT_QVM_DIR, policy)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .gguf_model import convert_gguf, is_gguf
from .policy.calculator import Calculator
from .policy.hf import HFPolicy
from .policy.server import ServerPolicy
from .scheduler import PolicyExpand
from .types import DTYPES
from .value import QValueModel
from .value.remote import EmbeddingQVMScorer
from .value.scorers import QVMScorer, annotation_step_reward, code_syntax_reward, compose

__all__ = [
    "DEFAULT_POLICY_DIR", "DEFAULT_QVM_DIR", "DTYPES", "ModelLoadError", "LoadedPolicy", "PolicySettings", "PromptFormat",
    "PromptTooLongError", "SearchSetup", "check_prompt_lengths",
    "load_policy", "load_qvm", "load_tokenizer", "model_context_length", "prompt_token_limit", "resolve_model_dir",
    "search_setup",
]  # fmt: skip

_DATA = Path(__file__).resolve().parent / "data"
DEFAULT_POLICY_DIR = _DATA / "default_policy"
DEFAULT_QVM_DIR = _DATA / "default_qvm"
SETTINGS_NAME = "qstar.json"
DEFAULT_MAX_PROMPT_BYTES = 4 << 20
"""The longest prompt (UTF-8 bytes) :func:`check_prompt_lengths` tokenizes by default: 4 MiB."""


class ModelLoadError(ValueError):
    """A model, tokenizer or QVM directory cannot be loaded; the message names the file and the fix."""


class PromptTooLongError(ValueError):
    """A prompt does not fit the model's context (see :func:`prompt_token_limit`); the message
    names the problem."""


def _reason(e: BaseException) -> str:
    """The first line of an exception's message, short enough for a one-line error."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if len(text) > 120 and ". " in text[:200]:  # a long explanation: its first sentence
        text = text[: text.index(". ") + 1]
    return text if len(text) <= 200 else text[:197] + "..."


def _positive_int(path: Any, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{path}: {name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class PolicySettings:
    """How a policy is prompted and how its output splits into steps (``qstar.json``).

    ``prompt_template``: the prompt, ``{question}`` replaced by the question. ``step_delimiter``:
    a step ends at the first token whose text contains it. ``max_step_tokens``: a step's length
    limit. ``max_steps``: a solution's step limit. The search defaults for this policy (each
    overridable per call): ``temperature`` and ``top_p`` of proposals, ``process_reward`` (see
    :class:`~qstar_native.solver.Solver`) and ``calculator``. Every value is checked when the settings are made.
    """

    prompt_template: str = "{question}\n"
    step_delimiter: str = "\n"
    max_step_tokens: int = 96
    max_steps: int = 12
    temperature: float = 0.7
    process_reward: str | None = "annotations"
    calculator: bool = False
    top_p: float = 1.0

    def __post_init__(self) -> None:
        self.check("PolicySettings")

    def check(self, where: Any) -> None:
        """Raises ValueError naming ``where`` (the qstar.json path) and the bad setting."""
        for name in ("prompt_template", "step_delimiter"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{where}: {name} must be a non-empty string, got {getattr(self, name)!r}")
        if "{question}" not in self.prompt_template:
            raise ValueError(f"{where}: prompt_template must contain '{{question}}'")
        _positive_int(where, "max_step_tokens", self.max_step_tokens)
        _positive_int(where, "max_steps", self.max_steps)
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ValueError(f"{where}: temperature must be a finite number >= 0 (0 is greedy), got {t!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 < p <= 1:
            raise ValueError(f"{where}: top_p must be a number in (0, 1], got {p!r}")
        if self.process_reward not in PROCESS_REWARDS:
            raise ValueError(f"{where}: process_reward must be one of {PROCESS_REWARDS}, got {self.process_reward!r}")
        if not isinstance(self.calculator, bool):
            raise ValueError(f"{where}: calculator must be true or false, got {self.calculator!r}")

    @classmethod
    def read(cls, directory: str | os.PathLike[str]) -> "PolicySettings":
        path = Path(directory) / SETTINGS_NAME
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e.msg}, line {e.lineno})") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text; save it as UTF-8 JSON") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: must hold one JSON object of settings, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**data)
        except ValueError as e:  # name the file rather than the class
            raise ValueError(str(e).replace("PolicySettings", str(path), 1)) from None


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


@dataclass(frozen=True)
class PromptFormat:
    """How a question's templated text (``prompt_template`` applied) becomes the prompt.

    ``chat_template``: the text is the last user turn of the tokenizer's chat template, after a
    ``system_instruction`` turn (if any) and one user/assistant pair per ``fewshot`` example
    (question, worked solution), rendered with the generation prompt (the assistant's turn opened).
    Without it (base models), the system instruction and then each example (its templated
    question followed by its solution) come first, separated by blank lines.

    >>> PromptFormat(system_instruction="Solve it.", fewshot=(("1+1?", "#### 2"),)).render(None, "2+2?\\n", "{question}\\n")
    'Solve it.\\n\\n1+1?\\n#### 2\\n\\n2+2?\\n'
    """

    chat_template: bool = False
    system_instruction: str | None = None
    fewshot: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.system_instruction is not None and (not isinstance(self.system_instruction, str) or not self.system_instruction.strip()):
            raise ValueError(f"system_instruction must be a non-empty string or None, got {self.system_instruction!r}")
        shots = tuple(tuple(x) for x in self.fewshot)
        if any(len(x) != 2 or not all(isinstance(t, str) and t.strip() for t in x) for x in shots):
            raise ValueError("fewshot must hold (question, solution) pairs of non-empty strings")
        object.__setattr__(self, "fewshot", shots)

    @property
    def plain(self) -> bool:
        """Whether the prompt is the templated text alone."""
        return not self.chat_template and self.system_instruction is None and not self.fewshot

    def check(self, tokenizer: Any, where: Any = "the tokenizer") -> None:
        """Raises ValueError when the chat template is asked for and ``tokenizer`` has none."""
        if self.chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{where} has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja); "
                             "it is a base model: drop the chat template option")  # fmt: skip

    def render(self, tokenizer: Any, text: str, template: str = "{question}\n") -> str:
        if self.plain:
            return text
        shots = [(template.replace("{question}", q), a) for q, a in self.fewshot]
        if not self.chat_template:
            parts = ([self.system_instruction] if self.system_instruction else []) + [q + a for q, a in shots] + [text]
            return "\n\n".join(parts)
        messages = [{"role": "system", "content": self.system_instruction}] if self.system_instruction else []
        for q, a in shots:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        messages.append({"role": "user", "content": text})
        try:
            out = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # jinja2 raises its own TemplateError (e.g. a template without a system role)
            raise ValueError(f"the tokenizer's chat template failed ({_reason(e)}); drop the system instruction or the chat template") from None
        return str(out)


@dataclass
class LoadedPolicy:
    """A loaded policy: the HF model, its tokenizer, its settings and where it came from, and how
    its prompts are built (``prompt_format``: chat template, system instruction, few-shot)."""

    model: Any
    tokenizer: Any
    settings: PolicySettings
    path: Path
    prompt_format: PromptFormat | None = None

    def prompt(self, question: str) -> str:
        """The prompt of ``question``: the settings' ``prompt_template``, then the prompt format."""
        return self.format_prompt(self.settings.prompt_template.replace("{question}", question))

    def format_prompt(self, text: str) -> str:
        """Applies the prompt format to a question's templated text (identity without one)."""
        fmt = self.prompt_format
        return text if fmt is None else fmt.render(self.tokenizer, text, self.settings.prompt_template)

    @property
    def context_length(self) -> int | None:
        """Positions the model takes (``max_position_embeddings``; None when it names none)."""
        return _context_of(getattr(self.model, "config", None))

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Any) -> str:
        return str(self.tokenizer.decode(np.asarray(ids).tolist(), skip_special_tokens=True))

    def hf_policy(self, *, calculator: bool | None = None, **kw: Any) -> HFPolicy:
        """An :class:`HFPolicy` over this model with this policy's step settings (and its
        calculator setting unless ``calculator`` says otherwise)."""
        use = self.settings.calculator if calculator is None else calculator
        return HFPolicy(self.model, self.tokenizer, calculator=Calculator(self.encode) if use else None, **self._step_settings(kw))

    def server_policy(self, urls: Sequence[str], **kw: Any) -> ServerPolicy:
        """A :class:`~qstar_native.policy.server.ServerPolicy` for this model served at ``urls``
        (the server runs the same weights; this side needs the tokenizer only), with this
        policy's step settings."""
        return ServerPolicy(urls, self.tokenizer, **self._step_settings(kw))

    def _step_settings(self, kw: dict[str, Any]) -> dict[str, Any]:
        """Policy arguments with this policy's step settings where ``kw`` gives none."""
        s = self.settings
        return {"step_delimiter": s.step_delimiter, "max_step_tokens": s.max_step_tokens, "top_p": s.top_p, **kw}


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def resolve_model_dir(path: str | os.PathLike[str] | None, *, gguf_cache: str | os.PathLike[str] | None = None) -> Path:
    """The directory of a model: ``path`` itself when it is a directory; a GGUF file's converted
    directory (dequantized once into ``gguf_cache``, see :func:`qstar_native.gguf_model.convert_gguf`);
    else a Hugging Face model id (``org/name``) already in the local cache (offline: nothing is
    downloaded). None is the embedded default policy. Raises FileNotFoundError saying which."""
    if path is None:
        return DEFAULT_POLICY_DIR
    directory = Path(path)
    if directory.is_dir():
        return directory
    if directory.is_file() and (directory.suffix == ".gguf" or is_gguf(directory)):
        try:
            return convert_gguf(directory, gguf_cache)
        except ValueError as e:
            raise ModelLoadError(str(e)) from None
    name = str(path)
    if _HUB_ID.match(name) and not directory.exists():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(name, local_files_only=True))
        except Exception:  # not cached (or not a valid id): say both were tried
            from huggingface_hub import constants

            raise FileNotFoundError(
                f"model directory {name!r} does not exist, and no model {name!r} is in the local Hugging Face cache "
                f"({constants.HF_HUB_CACHE}); pass a directory written by save_pretrained, or download the model first "
                f"(hf download {name})"
            ) from None
    if directory.exists():
        raise FileNotFoundError(f"model directory {name!r} is a file, not a directory; pass the directory written by save_pretrained")
    raise FileNotFoundError(f"model directory {name!r} does not exist; pass a directory written by save_pretrained (config.json, weights, tokenizer)")


def _check_model_dir(directory: Path) -> None:
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} has no config.json: not a Hugging Face model directory (save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir))")


def _context_of(config: Any) -> int | None:
    n = getattr(config, "max_position_embeddings", None) if config is not None else None
    return int(n) if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def model_context_length(path: str | os.PathLike[str] | None = None) -> int | None:
    """``max_position_embeddings`` of a model directory's config.json, read without loading the
    weights (None when the config names none)."""
    from transformers import AutoConfig

    directory = resolve_model_dir(path)
    _check_model_dir(directory)
    try:
        config = AutoConfig.from_pretrained(directory)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{directory / 'config.json'}: cannot read it ({_reason(e)}); save the model again with save_pretrained, "
                             "or update transformers if the architecture is newer than it") from None  # fmt: skip
    return _context_of(config)


def load_tokenizer(path: str | os.PathLike[str] | None = None) -> Any:
    """The tokenizer of a model directory (default: the embedded policy), without the weights."""
    from transformers import AutoTokenizer

    directory = resolve_model_dir(path)
    _check_model_dir(directory)
    files = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
    if not any((directory / f).is_file() for f in files):
        raise ModelLoadError(f"{directory} has no tokenizer file ({', '.join(files[:3])}, ...); save the tokenizer there with tokenizer.save_pretrained(dir)")
    try:
        return AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError) as e:
        raise ModelLoadError(f"{directory}: cannot load the tokenizer ({_reason(e)}); the directory needs tokenizer.json and "
                             "tokenizer_config.json: save them with tokenizer.save_pretrained(dir)") from None  # fmt: skip


def _load_model(directory: Path, dtype: str) -> Any:
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    torch_dtype: Any = dtype if dtype == "auto" else getattr(torch, dtype)
    weights = sorted(p.name for p in directory.glob("*.safetensors")) or sorted(p.name for p in directory.glob("*.bin"))
    try:
        model, info = AutoModelForCausalLM.from_pretrained(directory, dtype=torch_dtype, output_loading_info=True)
    except SafetensorError as e:
        where = directory / weights[0] if len(weights) == 1 else f"a weights file in {directory} ({', '.join(weights)})"
        raise ModelLoadError(f"{where} is corrupt or truncated ({_reason(e)}); download or save the model again") from None
    except OSError as e:
        if not weights:
            raise ModelLoadError(f"{directory} has no weights (model.safetensors); save the model with model.save_pretrained(dir)") from None
        raise ModelLoadError(f"{directory}: cannot load the weights ({_reason(e)}); download or save the model again") from None
    except (ValueError, KeyError, TypeError, RuntimeError, AttributeError) as e:
        raise ModelLoadError(f"{directory / 'config.json'} names a model transformers cannot load as a causal LM ({_reason(e)}); "
                             "use a causal-LM checkpoint (Llama, Qwen2, Mistral, GPT-2, ...)") from None  # fmt: skip
    missing = sorted(info.get("missing_keys") or ())
    if missing or info.get("mismatched_keys"):
        what = f"{len(missing)} weights are missing (e.g. {missing[0]})" if missing else "weights have the wrong shapes"
        raise ModelLoadError(f"the weights in {directory} do not fit its config.json ({type(model).__name__}): {what}; "
                             "the directory must hold a causal-LM checkpoint of the architecture config.json names") from None  # fmt: skip
    return model


def load_policy(
    path: str | os.PathLike[str] | None = None,
    *,
    device: str | None = "cpu",
    dtype: str = "float32",
    settings: PolicySettings | None = None,
    tokenizer: Any = None,
    prompt_format: PromptFormat | None = None,
    gguf_cache: str | os.PathLike[str] | None = None,
) -> LoadedPolicy:
    """Loads a causal LM, its tokenizer and settings from a directory (default: the embedded one)
    or a model id in the local Hugging Face cache (see :func:`resolve_model_dir`).

    ``dtype``: one of :data:`DTYPES`. ``settings``: used instead of the directory's
    ``qstar.json``. ``tokenizer``: one already loaded (:func:`load_tokenizer`).
    ``prompt_format``: chat template, system instruction, few-shot (:class:`PromptFormat`).
    ``path`` may be a GGUF file: converted once into ``gguf_cache`` (default
    ``~/.cache/qstar_native/gguf``), then loaded from there. A directory that cannot be loaded (missing files, corrupt or truncated weights, an
    architecture that is not a causal LM) raises :class:`ModelLoadError` naming the file and fix.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; pick one of {', '.join(DTYPES)}")
    directory = resolve_model_dir(path, gguf_cache=gguf_cache)
    _check_model_dir(directory)
    settings = PolicySettings.read(directory) if settings is None else settings
    dev = resolve_device(device)
    tokenizer = load_tokenizer(directory) if tokenizer is None else tokenizer
    if prompt_format is not None:
        prompt_format.check(tokenizer, f"the tokenizer in {directory}")
    model = _load_model(directory, dtype)
    model = model.to(dev).eval()  # type: ignore[arg-type]
    return LoadedPolicy(model, tokenizer, settings, directory, prompt_format)


def load_qvm(path: str | os.PathLike[str] | None, policy: LoadedPolicy) -> QValueModel:
    """Loads a QVM for ``policy`` (default path: the embedded default's QVM). A head without a
    backbone must read hidden states of the policy's width."""
    from safetensors import SafetensorError

    directory = Path(path) if path is not None else DEFAULT_QVM_DIR
    if not directory.is_dir():
        raise FileNotFoundError(f"QVM directory {str(directory)!r} does not exist; pass a directory written by QValueModel.save_pretrained (qstar train-qvm --out DIR)")
    try:
        qvm = QValueModel.from_pretrained(directory)
    except SafetensorError as e:
        raise ModelLoadError(f"{directory / 'model.safetensors'} is corrupt or truncated ({_reason(e)}); train the QVM again (qstar train-qvm --out DIR)") from None
    except (KeyError, TypeError, OSError) as e:
        raise ModelLoadError(f"{directory}: not a QVM written by QValueModel.save_pretrained ({_reason(e)}); train one with qstar train-qvm --out DIR") from None
    from transformers import AutoConfig

    config = policy.model.config if policy.model is not None else AutoConfig.from_pretrained(policy.path)  # a served policy: no weights here
    width = int(config.hidden_size)
    if qvm.backbone is None and qvm.hidden_size != width:
        raise ValueError(f"the QVM in {directory} reads hidden states of width {qvm.hidden_size} but the policy in {policy.path} has width {width}: train a QVM for this policy (qstar train-qvm)")
    dev = next(policy.model.parameters()).device if policy.model is not None else torch.device("cpu")
    return qvm.to(dev).eval()


def prompt_token_limit(context_length: int | None, settings: PolicySettings) -> int | None:
    """Tokens a prompt may take: the context minus the room kept for the solution,
    ``min(max_steps * max_step_tokens, context_length // 4)`` (None: no limit).

    >>> prompt_token_limit(384, PolicySettings(max_steps=12, max_step_tokens=96)), prompt_token_limit(None, PolicySettings())
    (288, None)
    """
    if context_length is None:
        return None
    return context_length - min(settings.max_steps * settings.max_step_tokens, context_length // 4)


def check_prompt_lengths(
    policy: LoadedPolicy,
    prompts: Sequence[str],
    ids: Sequence[Any] | None = None,
    *,
    context_length: int | None = None,
    max_bytes: int | None = DEFAULT_MAX_PROMPT_BYTES,
) -> list[list[int]]:
    """Tokenizes every prompt and returns the token ids; raises :class:`PromptTooLongError`
    naming the first prompt (``ids[i]``, default ``prompt i``) longer than ``max_bytes`` UTF-8
    bytes (checked before tokenizing) or than :func:`prompt_token_limit` tokens.

    ``policy`` needs ``encode`` and ``settings``; ``context_length`` (default: the policy's
    model's) lets a caller check before the weights load. Empty prompts are refused too.
    """
    names = [f"prompt {i}" for i in range(len(prompts))] if ids is None else [str(x) for x in ids]
    if len(names) != len(prompts):
        raise ValueError(f"got {len(names)} ids for {len(prompts)} prompts; give one id per prompt")
    context = policy.context_length if context_length is None else context_length
    limit = prompt_token_limit(context, policy.settings)
    out: list[list[int]] = []
    for name, prompt in zip(names, prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptTooLongError(f"{name}: the prompt is empty; give a non-empty question")
        if max_bytes is not None:
            size = len(prompt.encode("utf-8", "surrogatepass"))
            if size > max_bytes:
                raise PromptTooLongError(f"{name}: the prompt is {size} bytes, over the limit of {max_bytes}; shorten the question")
        tokens = policy.encode(prompt)
        if limit is not None and len(tokens) > limit:
            raise PromptTooLongError(
                f"{name}: the prompt is {len(tokens)} tokens but the model takes {context} positions and keeps "
                f"{context - limit} for the solution (min(max_steps x max_step_tokens, context/4)), so a prompt may take "
                f"at most {limit}; shorten the question or use a model with a longer context"
            )
        out.append(list(tokens))
    return out


PROCESS_REWARDS = ("annotations", "grounded", "syntax", None)


def process_reward_scorer(policy: LoadedPolicy, kind: str | None) -> annotation_step_reward | code_syntax_reward | None:
    """The step scorer for g: ``"annotations"``, ``"grounded"`` (math), ``"syntax"`` (code: -0.5
    when the code so far does not tokenize; aggregate it with ``last``) or None (see
    :class:`~qstar_native.solver.Solver`)."""
    if kind not in PROCESS_REWARDS:
        raise ValueError(f"process_reward={kind!r}; pick one of {PROCESS_REWARDS}")
    if kind == "syntax":
        return code_syntax_reward(policy.decode)
    return None if kind is None else annotation_step_reward(policy.decode, grounded=kind == "grounded")


def qvm_scorer(qvm: QValueModel | None, policy: LoadedPolicy | None = None, *, served: bool = False,
               value_server: str | None = None) -> QVMScorer | EmbeddingQVMScorer | None:  # fmt: skip
    """The step scorer of ``qvm``: a QVM with its own backbone reads each child state with it;
    a head alone reads the policy's hidden states: in-process those HFPolicy computed, for a
    served policy (``served``) the ``value_server``'s embeddings, or else the policy's weights
    loaded here as the head's backbone (a second forward of each child state)."""
    if qvm is None:
        return None
    if qvm.backbone is not None:
        return QVMScorer(qvm, "sequence")
    if not served:
        return QVMScorer(qvm, "hidden")
    if value_server is not None:
        return EmbeddingQVMScorer(qvm, value_server)
    if policy is None or policy.model is None:
        raise ValueError("a served policy returns no hidden states: give the head an embeddings server (value_server=URL), or load the policy's weights here as its backbone")
    qvm.backbone = policy.model
    return QVMScorer(qvm, "sequence")


@dataclass(frozen=True)
class SearchSetup:
    """One search setting, resolved against the policy's ``qstar.json``: the HF policy (with the
    calculator or not), the scorer giving each step its reward (g) and q (h), and the proposal
    temperature. ``expand`` is what the scheduler calls."""

    policy: HFPolicy | ServerPolicy
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
    policy: LoadedPolicy,
    qvm: QValueModel | None = None,
    *,
    seed: int = 0,
    temperature: float | None = None,
    process_reward: str | None = "default",
    calculator: bool | None = None,
    servers: Sequence[str] = (),
    server_api: str = "auto",
    value_server: str | None = None,
    **policy_options: Any,
) -> SearchSetup:
    """The parts every method shares (see :class:`~qstar_native.solver.Solver` for the arguments); ``None``
    (``"default"`` for ``process_reward``) takes the policy's setting. With ``servers`` the policy
    is a :class:`ServerPolicy` on those URLs (``server_api``: see it) and h comes as
    :func:`qvm_scorer` says (``value_server``: an embeddings endpoint)."""
    settings = policy.settings
    temperature = settings.temperature if temperature is None else temperature
    process_reward = settings.process_reward if process_reward == "default" else process_reward
    if servers and calculator:
        raise ValueError("the calculator writes results into the decode, which runs on the server: turn it off (--calculator off)")
    calculator = (settings.calculator and not servers) if calculator is None else calculator
    scorer = compose(reward=process_reward_scorer(policy, process_reward), q=qvm_scorer(qvm, policy, served=bool(servers), value_server=value_server))
    if servers:
        proposer: HFPolicy | ServerPolicy = policy.server_policy(list(servers), api=server_api, seed=seed, **policy_options)
    else:
        proposer = policy.hf_policy(calculator=calculator, seed=seed, **policy_options)
    return SearchSetup(proposer, scorer, temperature, process_reward, calculator, qvm is not None)
