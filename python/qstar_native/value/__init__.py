"""Value models and step scorers for Q*: the h and the g of ``f = g + lambda * h``.

:class:`QValueModel` is a Q-value head (on the policy's hidden states, or with its own backbone);
:mod:`.scorers` turns it and process rewards into the ``scorer(nodes, candidates) -> (rewards, q)``
that ``HFPolicy.as_expand`` takes. Importing this package imports torch.
"""

from .qvm import QValueModel, backbone_hidden_size
from .scorers import (
    PRMScorer,
    QVMScorer,
    RewardFn,
    Scorer,
    ScorerOutputError,
    ValueFn,
    annotation_step_reward,
    code_syntax_reward,
    compose,
    logprob_reward,
    scored_expand,
)
from .train import QVMFit, TrainConfig, TrainData, TrainReport, fit_fn, rank_auc, split_by_question, train_qvm

__all__ = [
    "PRMScorer",
    "QVMScorer",
    "QValueModel",
    "RewardFn",
    "Scorer",
    "ScorerOutputError",
    "ValueFn",
    "annotation_step_reward",
    "backbone_hidden_size",
    "code_syntax_reward",
    "compose",
    "logprob_reward",
    "scored_expand",
    "QVMFit",
    "TrainConfig",
    "TrainData",
    "TrainReport",
    "fit_fn",
    "rank_auc",
    "split_by_question",
    "train_qvm",
]
