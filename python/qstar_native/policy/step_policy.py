"""HFStepPolicy: an :class:`~qstar_native.policy.HFPolicy` seen as a :class:`~qstar_native.protocols.StepPolicy`.

HFPolicy keeps K, the temperature and the seed as settings; the StepPolicy protocol passes them
per call. The adapter sets them for the call (one HFPolicy batch per distinct k, so rollouts that
carry different numbers of samples still share batches) and restores them afterwards. HFPolicy's
candidates already have the Step fields (tokens, text, logprob, terminal, count) and go through
unchanged, hidden states included. Its per-node random streams depend only on (seed, state), as
the protocol requires.

Example:
    >>> policy = HFStepPolicy(HFPolicy(model, tokenizer, max_step_tokens=64))  # doctest: +SKIP
    >>> evaluate(task, greedy(), policy, problems)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Sequence

from ..protocols import per_state
from ..types import TokenArray

__all__ = ["HFStepPolicy", "PolicyWrapper"]


class PolicyWrapper:
    """Base of policies that wrap another (``self.policy``): the token counters are the wrapped
    policy's, so budgets are measured where the tokens are spent, and ``reset_cache`` reaches it."""

    policy: Any

    @property
    def tokens_generated(self) -> int:
        return int(self.policy.tokens_generated)

    @property
    def tokens_forwarded(self) -> int:
        return int(self.policy.tokens_forwarded)

    def reset_cache(self) -> None:
        """Forgets the wrapped policy's cached prefixes (evaluate calls it before each problem)."""
        reset = getattr(self.policy, "reset_cache", None)
        if callable(reset):
            reset()


class HFStepPolicy(PolicyWrapper):
    """Adapts an HFPolicy (or anything with ``propose(token_arrays)``, ``num_candidates``,
    ``temperature``, ``seed`` and the two token counters) to the StepPolicy protocol."""

    def __init__(self, policy: Any) -> None:
        missing = [a for a in ("propose", "num_candidates", "temperature", "seed", "tokens_generated", "tokens_forwarded") if not hasattr(policy, a)]
        if missing:
            raise TypeError(f"{type(policy).__name__} lacks {missing}; pass a qstar_native.policy.HFPolicy")
        self.policy = policy

    def propose(self, states: Sequence[TokenArray], k: int | Sequence[int], *, temperature: float, seed: int) -> list[list[Any]]:
        ks = per_state(k, len(states))
        groups: dict[int, list[int]] = {}
        for i, kv in enumerate(ks):
            groups.setdefault(kv, []).append(i)
        p = self.policy
        saved = (p.num_candidates, p.temperature, p.seed)
        out: list[list[Any]] = [[] for _ in states]
        try:
            p.temperature, p.seed = float(temperature), int(seed)
            for kv, idx in groups.items():
                p.num_candidates = kv
                for i, cands in zip(idx, p.propose([states[i] for i in idx])):
                    out[i] = list(cands)
        finally:
            p.num_candidates, p.temperature, p.seed = saved
        return out
