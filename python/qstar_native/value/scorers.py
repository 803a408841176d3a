"""Step scorers: give each proposed step its process reward R (aggregated into g by the engine)
and its Q (the child's h). Arrays in, arrays out.

A *scorer* is what ``HFPolicy.as_expand(scorer)`` takes::

    scorer(batch, steps) -> (reward, q)      # float64 arrays, one entry per step

It is built by :func:`compose` from two parts of the same shape, ``(batch, steps) -> array``:

- a reward function: :func:`logprob_reward`, :class:`annotation_step_reward`,
  :class:`code_syntax_reward`, :class:`PRMScorer`, or any callable;
- a q function: :class:`QVMScorer`, or any callable.

:func:`compose` checks each part's output once per batch (one finite float per step) and raises
:class:`ScorerOutputError` naming the part. Text rules read ``steps.texts`` and decode a node's
state once per batch; :class:`QVMScorer` reads ``steps.hidden``, the policy's own hidden states,
so scoring costs no forward pass.

Example:
    >>> import numpy as np
    >>> from qstar_native.batch import Batch, Steps
    >>> steps = Steps([2], np.array([5, 6], np.int32), [1, 1], logprob=[-0.5, -2.0])
    >>> compose(reward=logprob_reward)(Batch.of_states([[1]]), steps)
    (array([-0.5, -2. ]), array([0., 0.]))
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch

from ..batch import Batch, Steps, step_states
from .qvm import QValueModel

__all__ = [
    "PRMScorer", "QVMScorer", "RewardFn", "Scorer", "ScorerOutputError", "ValueFn", "annotation_step_reward",
    "code_syntax_reward", "compose", "logprob_reward", "step_states",
]  # fmt: skip

RewardFn = Callable[[Batch, Steps], Any]
"""``(batch, steps) -> rewards``: one step reward per step."""
ValueFn = Callable[[Batch, Steps], Any]
"""``(batch, steps) -> q``: one Q value per step."""
Scorer = Callable[[Batch, Steps], tuple[np.ndarray, np.ndarray]]
"""``(batch, steps) -> (rewards, q)``, as ``HFPolicy.as_expand`` takes."""
Decode = Callable[[Any], str]


class ScorerOutputError(ValueError):
    """A scorer returned the wrong number of values, or a value that is not a finite float."""


def _name(fn: object) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def check_output(fn: object, out: object, n: int, what: str) -> np.ndarray:
    """``out`` as a float64 array of ``n`` finite values, or ScorerOutputError naming ``fn``."""
    try:
        arr = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ScorerOutputError(f"scorer {_name(fn)} returned {type(out).__name__} ({e}); return one float of {what} per step") from None
    if arr.shape != (n,):
        raise ScorerOutputError(f"scorer {_name(fn)} returned {what} of shape {arr.shape} for {n} steps; return one float per step")
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise ScorerOutputError(f"scorer {_name(fn)} returned {arr[bad[0]]} for step {int(bad[0])}; {what} must be finite")
    return arr


class compose:  # noqa: N801 - used like a function: compose(reward=..., q=...)
    """A :data:`Scorer` from a reward function and a q function (each checked; an omitted one
    gives 0.0 for every step).

    >>> import numpy as np
    >>> from qstar_native.batch import Batch, Steps
    >>> bad = compose(q=lambda batch, steps: [1.0])
    >>> bad(Batch.of_states([[1]]), Steps([2], np.array([5, 6], np.int32), [1, 1]))
    Traceback (most recent call last):
    ...
    qstar_native.value.scorers.ScorerOutputError: scorer <lambda> returned q of shape (1,) for 2 steps; return one float per step
    """

    def __init__(self, reward: RewardFn | None = None, q: ValueFn | None = None) -> None:
        for arg, fn in (("reward", reward), ("q", q)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{arg} must be callable (batch, steps) -> one float per step, got {type(fn).__name__}")
        self.reward, self.q = reward, q

    def __call__(self, batch: Batch, steps: Steps) -> tuple[np.ndarray, np.ndarray]:
        n = len(steps)
        reward = np.zeros(n) if self.reward is None or n == 0 else check_output(self.reward, self.reward(batch, steps), n, "rewards")
        q = np.zeros(n) if self.q is None or n == 0 else check_output(self.q, self.q(batch, steps), n, "q")
        return reward, q

    def __repr__(self) -> str:
        return f"compose(reward={_name(self.reward)}, q={_name(self.q)})"


# ---- process rewards ------------------------------------------------------------------------


def logprob_reward(batch: Batch, steps: Steps) -> np.ndarray:
    """Reward = the step's log-probability under the policy."""
    return steps.logprob


class annotation_step_reward:  # noqa: N801 - a reward function with settings
    """GSM8K-style process reward of a step: ``penalty`` per wrong ``<<expr=value>>`` annotation
    (see :func:`qstar_native.tasks.annotation_reward`); with ``grounded=True`` also ``penalty`` per
    operand the question and the steps so far never state (see
    :func:`qstar_native.tasks.grounding.grounding_reward`; each node's state is decoded once).

    >>> import numpy as np
    >>> from qstar_native.batch import Batch, Steps
    >>> decode = lambda ids: "".join(map(chr, ids))
    >>> enc = lambda s: [ord(c) for c in s]
    >>> batch = Batch.of_states([enc("Ann has 17 cats and 25 dogs.\\n")])
    >>> texts = ["<<17+25=42>>42\\n", "<<17+26=43>>43\\n", "<<17+25=43>>43\\n"]
    >>> steps = Steps([3], np.array(sum(map(enc, texts), []), np.int32), [len(t) for t in texts], texts=texts)
    >>> annotation_step_reward(decode)(batch, steps).tolist(), annotation_step_reward(decode, grounded=True)(batch, steps).tolist()
    ([0.0, 0.0, -1.0], [0.0, -1.0, -1.0])
    """

    def __init__(self, decode: Decode, *, penalty: float = -1.0, grounded: bool = False) -> None:
        if not callable(decode):
            raise TypeError("decode must be callable: token ids -> text (e.g. tokenizer.decode)")
        self.decode, self.penalty, self.grounded = decode, float(penalty), bool(grounded)
        self.__name__ = "annotation_step_reward" + ("_grounded" if grounded else "")

    def __call__(self, batch: Batch, steps: Steps) -> np.ndarray:
        from ..tasks.annotations import annotation_reward
        from ..tasks.grounding import grounding_reward

        texts = _texts(steps, self.decode)
        node = steps.node_index
        contexts: dict[int, str] = {}
        out = np.zeros(len(steps))
        for i, text in enumerate(texts):
            r = annotation_reward(text, penalty=self.penalty)
            if self.grounded:
                j = int(node[i])
                if j not in contexts:
                    contexts[j] = self.decode(batch.state(j).tolist())
                r += grounding_reward(contexts[j], text, penalty=self.penalty)
            out[i] = r
        return out


class code_syntax_reward:  # noqa: N801 - a reward function with settings
    """The paper's MBPP process reward: -0.5 when Python's tokenizer fails on the code so far
    (``prefix`` + the node's steps + the step, decoded; the root's tokens are the prompt and are
    left out), else 0. Aggregate it with ``"last"``.

    >>> import numpy as np
    >>> from qstar_native.batch import Batch, Steps
    >>> enc = lambda s: [ord(c) for c in s]
    >>> batch = Batch.of_states([enc("x = (1,\\n")])   # bare states: all of it is code
    >>> steps = Steps([2], np.array(enc(" 2)\\n") + enc("\\n"), np.int32), [4, 1])
    >>> code_syntax_reward(lambda ids: "".join(map(chr, ids)))(batch, steps).tolist()
    [0.0, -0.5]
    """

    def __init__(self, decode: Decode, *, prefix: str = "") -> None:
        if not callable(decode):
            raise TypeError("decode must be callable: token ids -> text (e.g. tokenizer.decode)")
        self.decode, self.prefix = decode, prefix
        self.__name__ = "code_syntax_reward"

    def __call__(self, batch: Batch, steps: Steps) -> np.ndarray:
        from ..tasks.code import syntax_reward

        roots = batch.root_lengths()
        off, node = steps.offsets, steps.node_index
        out = np.zeros(len(steps))
        for i in range(len(steps)):
            j = int(node[i])
            code = np.concatenate([batch.state(j)[roots[j] :], steps.tokens[off[i] : off[i + 1]]])
            out[i] = syntax_reward(self.prefix + self.decode(code.tolist()))
        return out


def _texts(steps: Steps, decode: Decode) -> list[str]:
    if steps.texts is not None:
        return steps.texts
    off = steps.offsets
    return [decode(steps.tokens[off[i] : off[i + 1]].tolist()) for i in range(len(steps))]


class PRMScorer:
    """A process reward model: a Hugging Face sequence-classification model (a trunk plus a
    ``score`` head, e.g. ``LlamaForSequenceClassification``) read at the last token of the child
    state (question + steps + the step).

    The trunk's hidden state at that token goes through ``model.score`` here rather than through
    the model's own pooling, which finds the last token by ``pad_token_id`` and so misreads a
    sequence that ends in that id (often EOS).

    Args:
        model: the PRM; ``model.base_model`` and ``model.score`` are used.
        tokenizer: the PRM's tokenizer, when it differs from the policy's: the state is decoded
            with ``decode`` (the policy's) and re-encoded with ``tokenizer.encode``. Without it the
            policy's token ids go in as they are (same vocabulary).
        decode: the policy tokenizer's decode; needed with ``tokenizer``.
        output: ``"logit"`` (1 label: the raw score), ``"sigmoid"`` (1 label) or ``"softmax"``
            (the probability of label ``label``, default the last).
        batch_size: sequences per forward pass (right-padded, masked).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        tokenizer: Any = None,
        decode: Decode | None = None,
        output: Literal["logit", "sigmoid", "softmax"] = "sigmoid",
        label: int = -1,
        batch_size: int = 16,
    ) -> None:
        head = getattr(model, "score", None)
        base = getattr(model, "base_model", None)
        if not isinstance(head, torch.nn.Module) or base is None or base is model:
            raise TypeError(
                f"{type(model).__name__} has no trunk + score head; pass an AutoModelForSequenceClassification "
                "of a decoder family (Llama, Qwen2, Mistral, GPT-2, ...), or write a RewardFn"
            )
        if tokenizer is not None and (decode is None or not hasattr(tokenizer, "encode")):
            raise ValueError("with tokenizer= (the PRM's own), pass decode= (the policy tokenizer's decode) too")
        num_labels = int(getattr(model.config, "num_labels", 1))
        if output not in ("logit", "sigmoid", "softmax"):
            raise ValueError(f"output={output!r}; pick 'logit', 'sigmoid' or 'softmax'")
        if output != "softmax" and num_labels != 1:
            raise ValueError(f"output={output!r} needs a 1-label score head, this one has {num_labels}; use output='softmax'")
        if output == "softmax" and not -num_labels <= label < num_labels:
            raise ValueError(f"label={label} is out of range for {num_labels} labels")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.model, self.tokenizer, self.decode = model.eval(), tokenizer, decode
        self.output, self.label, self.batch_size = output, label, batch_size
        self.__name__ = f"PRMScorer({type(model).__name__})"

    def _encode(self, ids: list[int]) -> list[int]:
        if self.tokenizer is None:
            return ids
        return list(self.tokenizer.encode(self.decode(ids)))

    @torch.no_grad()
    def score_sequences(self, seqs: Sequence[Sequence[int]]) -> list[float]:
        """The PRM's reward for each full state (policy token ids)."""
        encoded = [self._encode([int(t) for t in s]) for s in seqs]
        dev = next(self.model.parameters()).device
        out: list[float] = []
        for lo in range(0, len(encoded), self.batch_size):
            chunk = encoded[lo : lo + self.batch_size]
            lens = torch.tensor([len(s) for s in chunk])
            if (lens == 0).any():
                raise ValueError("a state encodes to no tokens; the PRM needs at least one")
            ids = torch.zeros(len(chunk), int(lens.max()), dtype=torch.long)
            for r, s in enumerate(chunk):
                ids[r, : len(s)] = torch.tensor(s)
            mask = (torch.arange(ids.shape[1])[None] < lens[:, None]).long()
            hidden = self.model.base_model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state
            logits = self.model.score(hidden[torch.arange(len(chunk)), lens.to(dev) - 1]).float()
            if self.output == "softmax":
                vals = torch.softmax(logits, dim=-1)[:, self.label]
            else:
                vals = logits[:, 0]
                vals = torch.sigmoid(vals) if self.output == "sigmoid" else vals
            out.extend(vals.tolist())
        return out

    def __call__(self, batch: Batch, steps: Steps) -> np.ndarray:
        return np.asarray(self.score_sequences(step_states(batch, steps)) if len(steps) else [], dtype=np.float64)


# ---- values ---------------------------------------------------------------------------------


class QVMScorer:
    """Q of each step from a :class:`QValueModel`, all steps of a batch in one call.

    ``mode="hidden"``: from ``steps.hidden``, the policy's own final hidden state at each step's
    last token (no forward pass). ``mode="sequence"``: the QVM's own backbone reads each child
    state (question + steps + the step).
    """

    def __init__(self, qvm: QValueModel, mode: Literal["hidden", "sequence"] = "hidden", *, batch_size: int = 16) -> None:
        if not isinstance(qvm, QValueModel):
            raise TypeError(f"qvm must be a QValueModel, got {type(qvm).__name__}")
        if mode not in ("hidden", "sequence"):
            raise ValueError(f"mode={mode!r}; pick 'hidden' (policy hidden states) or 'sequence' (the QVM's backbone)")
        if mode == "sequence" and qvm.backbone is None:
            raise ValueError("mode='sequence' needs a QValueModel with a backbone; use mode='hidden' or pass backbone=")
        self.qvm, self.mode, self.batch_size = qvm, mode, batch_size
        self.__name__ = f"QVMScorer({mode})"

    @torch.no_grad()
    def __call__(self, batch: Batch, steps: Steps) -> np.ndarray:
        if len(steps) == 0:
            return np.zeros(0)
        if self.mode == "hidden":
            if steps.hidden is None:
                raise ValueError("the steps carry no hidden states: score HFPolicy proposals, or use QVMScorer(mode='sequence')")
            q = self.qvm.score_hidden(steps.hidden)
        else:
            q = self.qvm.score_sequences(step_states(batch, steps), batch_size=self.batch_size)
        return q.double().cpu().numpy()
