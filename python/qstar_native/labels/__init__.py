"""Q-value labels for training a QVM, made three ways (the paper's section 4.2), one format.

- :func:`best_of_rollouts`: best outcome of N policy rollouts from (s, a).
- :func:`fitted_q_iteration`: r + gamma * max over the top-K next steps of the previous QVM.
- :func:`stronger_model_completion`: the outcome of a stronger policy's completion from (s, a).

Items to label come from trajectories (:func:`sample_trajectories`, :func:`state_actions`); rows
(:class:`LabelRow`) go through a :class:`LabelWriter` (JSONL, fsynced per batch, resumable).

Example:
    >>> from qstar_native.labels import LabelWriter, best_of_rollouts   # doctest: +SKIP
    >>> items = state_actions(sample_trajectories(task, policy, problems, n=4, temperature=0.9,
    ...                                           seed=0, max_steps=12))  # doctest: +SKIP
    >>> rows = best_of_rollouts(items, policy, task.outcome, n=8, temperature=0.9, max_steps=12,
    ...                         writer=LabelWriter("labels.jsonl"))  # doctest: +SKIP
"""

from .fqi import Fit, QFn, fitted_q_iteration, iteration_method
from .items import StateAction, Trajectory, sample_trajectories, sibling_items, state_actions
from .rollout_labels import LabelRun, Outcome, best_of_rollouts, label_problems, stronger_model_completion
from .rows import LabelRow, LabelWriter, RowKey, read_labels

__all__ = [
    "Fit",
    "LabelRun",
    "LabelRow",
    "LabelWriter",
    "Outcome",
    "QFn",
    "RowKey",
    "StateAction",
    "Trajectory",
    "best_of_rollouts",
    "fitted_q_iteration",
    "iteration_method",
    "read_labels",
    "label_problems",
    "sample_trajectories",
    "sibling_items",
    "state_actions",
    "stronger_model_completion",
]
