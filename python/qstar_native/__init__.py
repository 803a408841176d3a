"""qstar_native: Q* deliberative planning for LLM reasoning on a native A* engine.

The engine, Searcher and prefix cache import only numpy. The model-facing parts (``HFPolicy``,
``QValueModel``, ``evaluate``, ``load_default``) import torch and transformers, so they load on
first use. ``qstar_native.load_default().solve(question)`` runs Q* with the embedded policy and QVM.

>>> import qstar_native
>>> searcher = qstar_native.Searcher(lambda batch: [[] for _ in batch])
>>> searcher.search([1, 2, 3]).stop_reason
'exhausted'

The data path: ``Scheduler`` runs many searches in flight, each an ``Engine`` (A* or beam, owning
its nodes' KV pins); every round their selected nodes go to the policy as one columnar ``Batch``
and come back as columnar ``Steps``. ``methods`` (greedy, best-of-N, beam, Q*) are jobs on it.
Subpackages: ``tasks`` (problems, answer checking, sandbox, rules), ``policy`` (HF policy with KV
prefix sharing), ``value`` (Q-value models and scorers), ``labels`` (Q-value labelling).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .batch import Batch, Node, Steps
from .config import SearchConfig
from .engine import Engine
from .prefix_cache import CacheFullError, CacheStats, PrefixCache, PrefixMatch
from .scheduler import Expand, Scheduler, Search
from .searcher import Searcher
from .types import SearchResult, Solution, Stats, Step, as_tokens

# name -> module that defines it; imported on first attribute access (PEP 562).
_LAZY = {
    "HFPolicy": ".policy",
    "ServerPolicy": ".policy",
    "QValueModel": ".value",
    "compose": ".value",
    "evaluate": ".evaluation",
    "compare": ".evaluation",
    "EvalReport": ".evaluation",
    "Solver": ".solver",
    "load_default": ".solver",
    "load_policy": ".pretrained",
}

if TYPE_CHECKING:
    from .evaluation import EvalReport, compare, evaluate
    from .policy import HFPolicy, ServerPolicy
    from .pretrained import load_policy
    from .solver import Solver, load_default
    from .value import QValueModel, compose


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qstar_native' has no attribute {name!r}")


__all__ = [
    "Batch",
    "CacheFullError",
    "CacheStats",
    "Engine",
    "EvalReport",
    "Expand",
    "HFPolicy",
    "Node",
    "PrefixCache",
    "PrefixMatch",
    "QValueModel",
    "Scheduler",
    "Search",
    "SearchConfig",
    "SearchResult",
    "Searcher",
    "ServerPolicy",
    "Solution",
    "Solver",
    "Stats",
    "Step",
    "Steps",
    "as_tokens",
    "compare",
    "compose",
    "evaluate",
    "load_default",
    "load_policy",
]
__version__ = "0.1.0"
