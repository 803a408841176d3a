"""Step scorers: give each proposed child its process reward R (aggregated into g) and its Q (its h).

A *scorer* is what ``HFPolicy.as_expand(scorer)`` takes::

    scorer(nodes, candidates) -> (rewards, qs)      # rewards[i][j], qs[i][j]: candidate j of node i

It is built by :func:`compose` from two simpler parts, each returning one float per candidate:

- a reward function (:data:`RewardFn`): :func:`logprob_reward`, :class:`PRMScorer`,
  :func:`code_syntax_reward`, :func:`annotation_step_reward`, or any callable;
- a value function (:data:`ValueFn`): :class:`QVMScorer`, or any callable.

:func:`compose` checks every part's output (one list per node, one finite float per candidate) and
raises :class:`ScorerOutputError` naming the part and the counts, because ``zip`` downstream would
otherwise drop or misalign children silently. :func:`scored_expand` makes a Searcher expand
callback from any ``propose(nodes) -> candidates`` and a scorer, with the same checks.

Example (candidates only need the attributes a part reads):

    >>> from types import SimpleNamespace as C
    >>> score = compose(reward=logprob_reward)
    >>> score([None], [[C(logprob=-0.5), C(logprob=-2.0)]])
    ([[-0.5, -2.0]], [[0.0, 0.0]])
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch

from ..searcher import ExpandFn
from ..types import Child, Node
from .qvm import QValueModel

Candidates = Sequence[Sequence[Any]]
"""Per node, its proposed candidates (``qstar_native.policy.Candidate`` or any object with the
attributes a scorer reads: ``tokens``, ``text``, ``logprob``, ``hidden``, ``terminal``)."""
RewardFn = Callable[[list[Node], Candidates], Sequence[Sequence[float]]]
"""``(nodes, candidates) -> rewards``: one step reward per candidate of each node."""
ValueFn = Callable[[list[Node], Candidates], Sequence[Sequence[float]]]
"""``(nodes, candidates) -> qs``: one Q value per candidate of each node."""
Scorer = Callable[[list[Node], Candidates], tuple[list[list[float]], list[list[float]]]]
"""``(nodes, candidates) -> (rewards, qs)``, as ``HFPolicy.as_expand`` takes."""
Decode = Callable[[list[int]], str]


class ScorerOutputError(ValueError):
    """A scorer returned the wrong number of values, or a value that is not a finite float."""


def _name(fn: object) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def check_output(fn: object, out: object, candidates: Candidates, what: str = "values") -> list[list[float]]:
    """``out`` as lists of floats, one per candidate of each node, or ScorerOutputError naming
    ``fn`` and the counts."""
    name = _name(fn)
    if out is None or not hasattr(out, "__len__"):
        raise ScorerOutputError(f"scorer {name} returned {type(out).__name__}; return one list of {what} per node")
    if len(out) != len(candidates):
        raise ScorerOutputError(f"scorer {name} returned {len(out)} lists of {what} for {len(candidates)} nodes; return one list per node")
    result = []
    for i, (vals, cands) in enumerate(zip(out, candidates)):
        if not hasattr(vals, "__len__") or len(vals) != len(cands):
            got = len(vals) if hasattr(vals, "__len__") else type(vals).__name__
            raise ScorerOutputError(f"scorer {name} returned {got} {what} for node {i}, which has {len(cands)} candidates; return one per candidate")
        row = [float(v) for v in vals]
        for j, v in enumerate(row):
            if not math.isfinite(v):
                raise ScorerOutputError(f"scorer {name} returned {v} for candidate {j} of node {i}; {what} must be finite")
        result.append(row)
    return result


def _zeros(nodes: list[Node], candidates: Candidates) -> list[list[float]]:
    return [[0.0] * len(cs) for cs in candidates]


class compose:  # noqa: N801 - used like a function: compose(reward=..., value=...)
    """A :data:`Scorer` from a reward function and a value function (each checked; either
    omitted gives 0.0 for every candidate).

    >>> from types import SimpleNamespace as C
    >>> bad = compose(value=lambda nodes, cands: [[1.0]])
    >>> bad([None], [[C(), C()]])
    Traceback (most recent call last):
    ...
    qstar_native.value.scorers.ScorerOutputError: scorer <lambda> returned 1 q values for node 0, which has 2 candidates; return one per candidate
    """

    def __init__(self, reward: RewardFn | None = None, value: ValueFn | None = None) -> None:
        for arg, fn in (("reward", reward), ("value", value)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{arg} must be callable (nodes, candidates) -> one float per candidate, got {type(fn).__name__}")
        self.reward, self.value = reward, value

    def __call__(self, nodes: list[Node], candidates: Candidates) -> tuple[list[list[float]], list[list[float]]]:
        if len(nodes) != len(candidates):
            raise ValueError(f"got {len(candidates)} candidate lists for {len(nodes)} nodes; pass one list per node")
        rewards = _zeros(nodes, candidates) if self.reward is None else check_output(self.reward, self.reward(nodes, candidates), candidates, "rewards")
        qs = _zeros(nodes, candidates) if self.value is None else check_output(self.value, self.value(nodes, candidates), candidates, "q values")
        return rewards, qs

    def __repr__(self) -> str:
        return f"compose(reward={_name(self.reward)}, value={_name(self.value)})"


def scored_expand(propose: Callable[[list[Node]], Candidates], scorer: Scorer) -> ExpandFn:
    """A Searcher expand callback: ``propose`` the candidates of a batch, ``scorer`` them, build
    Children (tokens, reward, q, terminal). Both outputs are count-checked.

    ``HFPolicy.as_expand(scorer)`` does the same for HFPolicy; this works with any proposer.
    """

    def expand(nodes: list[Node]) -> list[list[Child]]:
        cands = propose(nodes)
        if cands is None or len(cands) != len(nodes):
            got = "None" if cands is None else f"{len(cands)} candidate lists"
            raise ScorerOutputError(f"propose {_name(propose)} returned {got} for {len(nodes)} nodes")
        rewards, qs = scorer(nodes, cands)
        rewards = check_output(scorer, rewards, cands, "rewards")
        qs = check_output(scorer, qs, cands, "q values")
        return [
            [Child(c.tokens, reward=r, q=q, terminal=bool(c.terminal)) for c, r, q in zip(cs, rs, qq)]
            for cs, rs, qq in zip(cands, rewards, qs)
        ]

    return expand


# ---- process rewards ------------------------------------------------------------------------


def logprob_reward(nodes: list[Node], candidates: Candidates) -> list[list[float]]:
    """Reward = the step's log-probability under the policy (``Candidate.logprob``)."""
    return [[float(c.logprob) for c in cs] for cs in candidates]


def _steps_tokens(node: Node, cand: Any) -> list[int]:
    """The token ids of all steps so far plus the candidate (the root's tokens excluded)."""
    parts = [np.asarray(s) for s in node.steps] + [np.asarray(cand.tokens)]
    return np.concatenate(parts).astype(np.int64).tolist()


class code_syntax_reward:  # noqa: N801 - a reward function with settings
    """The paper's MBPP process reward: -0.5 when Python's tokenizer fails on the code so far
    (``prefix`` + every step + the candidate, decoded), else 0. Aggregate it with ``"last"``.

    >>> import numpy as np
    >>> from types import SimpleNamespace as C
    >>> decode = lambda ids: "".join(map(chr, ids))
    >>> node = C(steps=[np.array([ord(c) for c in "x = (1,\\n"])])
    >>> code_syntax_reward(decode)([node], [[C(tokens=[ord(c) for c in " 2)\\n"]), C(tokens=[ord("\\n")])]])
    [[0.0, -0.5]]
    """

    def __init__(self, decode: Decode, *, prefix: str = "") -> None:
        if not callable(decode):
            raise TypeError("decode must be callable: token ids -> text (e.g. tokenizer.decode)")
        self.decode, self.prefix = decode, prefix
        self.__name__ = "code_syntax_reward"

    def __call__(self, nodes: list[Node], candidates: Candidates) -> list[list[float]]:
        from ..tasks.code import syntax_reward

        return [[syntax_reward(self.prefix + self.decode(_steps_tokens(n, c))) for c in cs] for n, cs in zip(nodes, candidates)]


class annotation_step_reward:  # noqa: N801
    """GSM8K-style process reward of a candidate step: ``penalty`` per wrong ``<<expr=value>>``
    annotation (see :func:`qstar_native.tasks.annotation_reward`); with ``grounded=True`` also
    ``penalty`` per operand the question and the steps so far never state (see
    :func:`qstar_native.tasks.grounding.grounding_reward`; the node's tokens are decoded for it).

    >>> import numpy as np
    >>> from types import SimpleNamespace as C
    >>> decode = lambda ids: "".join(map(chr, ids))
    >>> node = C(tokens=np.array([ord(c) for c in "Ann has 17 cats and 25 dogs.\\n"]))
    >>> steps = [C(tokens=[ord(c) for c in s]) for s in ("<<17+25=42>>42\\n", "<<17+26=43>>43\\n", "<<17+25=43>>43\\n")]
    >>> annotation_step_reward(decode)([node], [steps]), annotation_step_reward(decode, grounded=True)([node], [steps])
    ([[0.0, 0.0, -1.0]], [[0.0, -1.0, -1.0]])
    """

    def __init__(self, decode: Decode, *, penalty: float = -1.0, grounded: bool = False) -> None:
        if not callable(decode):
            raise TypeError("decode must be callable: token ids -> text (e.g. tokenizer.decode)")
        self.decode, self.penalty, self.grounded = decode, float(penalty), bool(grounded)
        self.__name__ = "annotation_step_reward" + ("_grounded" if grounded else "")

    def __call__(self, nodes: list[Node], candidates: Candidates) -> list[list[float]]:
        from ..tasks.annotations import annotation_reward
        from ..tasks.grounding import grounding_reward

        dec, out = self.decode, []
        for node, cs in zip(nodes, candidates):
            context = dec(np.asarray(node.tokens).tolist()) if self.grounded else ""
            row = []
            for c in cs:
                text = dec(np.asarray(c.tokens).tolist())
                r = annotation_reward(text, penalty=self.penalty)
                if self.grounded:
                    r += grounding_reward(context, text, penalty=self.penalty)
                row.append(r)
            out.append(row)
        return out


class PRMScorer:
    """A process reward model: a Hugging Face sequence-classification model (a trunk plus a
    ``score`` head, e.g. ``LlamaForSequenceClassification``) read at the last token of question +
    steps + candidate.

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

    def __call__(self, nodes: list[Node], candidates: Candidates) -> list[list[float]]:
        seqs = [np.concatenate([n.tokens, np.asarray(c.tokens, dtype=np.int32)]) for n, cs in zip(nodes, candidates) for c in cs]
        flat = self.score_sequences(seqs) if seqs else []
        return _unflatten(flat, candidates)


# ---- values ---------------------------------------------------------------------------------


class QVMScorer:
    """Q of each candidate from a :class:`QValueModel`, all candidates of a batch in one call.

    ``mode="hidden"``: from ``Candidate.hidden`` (``HFPolicy(return_hidden=True)``), no forward
    pass. ``mode="sequence"``: the QVM's own backbone reads node tokens + candidate tokens.
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
    def __call__(self, nodes: list[Node], candidates: Candidates) -> list[list[float]]:
        flat = [(n, c) for n, cs in zip(nodes, candidates) for c in cs]
        if not flat:
            return _zeros(nodes, candidates)
        if self.mode == "hidden":
            missing = [i for i, (_, c) in enumerate(flat) if getattr(c, "hidden", None) is None]
            if missing:
                raise ValueError(f"{len(missing)} candidates carry no hidden state: create the HFPolicy with return_hidden=True, or use QVMScorer(mode='sequence')")
            q, _ = self.qvm.score_hidden(torch.stack([c.hidden for _, c in flat]))
        else:
            seqs = [np.concatenate([n.tokens, np.asarray(c.tokens, dtype=np.int32)]) for n, c in flat]
            q, _ = self.qvm.score_sequences(seqs, batch_size=self.batch_size)
        return _unflatten(q.tolist(), candidates)


def _unflatten(flat: Sequence[float], candidates: Candidates) -> list[list[float]]:
    out, k = [], 0
    for cs in candidates:
        out.append([float(v) for v in flat[k : k + len(cs)]])
        k += len(cs)
    return out
