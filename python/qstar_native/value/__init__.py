"""Value models and step scorers for Q*: the h and the g of ``f = g + lambda * h``.

:class:`QValueModel` is a Q-value head (on the policy's hidden states, or with its own backbone);
:mod:`.scorers` turns it and process rewards into the ``scorer(batch, steps) -> (reward, q)``
that ``HFPolicy.as_expand`` takes; :mod:`.train` fits a QVM to labels, with a within-state
ranking term and sibling metrics (:mod:`.ranking`). Importing this package imports torch.
"""

from .qvm import QValueModel, backbone_hidden_size
from .ranking import positive_score_by_depth, question_mean_auc, rank_auc, sibling_auc, sibling_auc_ci, state_id
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
)
from .train import QVMFit, TrainConfig, TrainData, TrainReport, fit_fn, split_by_question, train_qvm

__all__ = [
    "PRMScorer",
    "QVMFit",
    "QVMScorer",
    "QValueModel",
    "RewardFn",
    "Scorer",
    "ScorerOutputError",
    "TrainConfig",
    "TrainData",
    "TrainReport",
    "ValueFn",
    "annotation_step_reward",
    "backbone_hidden_size",
    "code_syntax_reward",
    "compose",
    "fit_fn",
    "logprob_reward",
    "positive_score_by_depth",
    "question_mean_auc",
    "rank_auc",
    "sibling_auc",
    "sibling_auc_ci",
    "split_by_question",
    "state_id",
    "train_qvm",
]
