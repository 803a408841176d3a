"""Baselines and Q* on one engine, with one budget accounting (see :mod:`.record`).

Each method is a small configured object, called as ``method(task, policy, problem, seed=...)``
and returning a :class:`ProblemRecord`; :func:`qstar_native.evaluation.evaluate` runs one over a
problem set.

- :func:`greedy`: greedy chain of thought.
- :func:`best_of_n`: N samples ranked by QVM, PRM or majority vote.
- :func:`beam_search`: step-level beam search by a step scorer.
- :func:`qstar`: A* with g from a process reward and h from the QVM.

Example:
    >>> from qstar_native.baselines import best_of_n, greedy, qstar
    >>> [m.name for m in (greedy(), best_of_n(16, "majority"), qstar(lam=1.0, k=6))]
    ['greedy', 'best_of_16_majority', 'qstar_lam1_k6_min']
"""

from .beam import BeamSearch, beam_search
from .qstar import QStar, qstar
from .record import Meter, ProblemRecord, StepScorer, make_nodes
from .sampling import BestOfN, Greedy, aggregate, best_of_n, greedy

__all__ = [
    "BeamSearch",
    "BestOfN",
    "Greedy",
    "Meter",
    "ProblemRecord",
    "QStar",
    "StepScorer",
    "aggregate",
    "beam_search",
    "best_of_n",
    "greedy",
    "make_nodes",
    "qstar",
]
