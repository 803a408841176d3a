"""qstar_native: Q* deliberative planning for LLM reasoning on a native A* engine.

The engine, Searcher and prefix cache import only numpy. The model-facing parts (``HFPolicy``,
``QValueModel``, ``evaluate``, ``load_default``) import torch and transformers, so they load on
first use. ``qstar_native.load_default().solve(question)`` runs Q* with the embedded policy and QVM.

>>> import qstar_native
>>> searcher = qstar_native.Searcher(lambda nodes: [[] for _ in nodes])
>>> searcher.search([1, 2, 3]).stop_reason
'exhausted'

Subpackages: ``tasks`` (problems, answer checking, sandbox, rules), ``policy`` (HF policy with KV
prefix sharing), ``value`` (Q-value models and scorers), ``labels`` (Q-value labelling),
``baselines`` (greedy, best-of-N, beam, Q*).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .engine import Engine, as_tokens
from .prefix_cache import CacheFullError, CacheStats, PrefixCache, PrefixMatch
from .searcher import ExpandFn, Searcher
from .types import Child, Node, NodeRecord, SearchResult, Solution, Stats

# name -> module that defines it; imported on first attribute access (PEP 562).
_LAZY = {
    "HFPolicy": ".policy",
    "Candidate": ".policy",
    "QValueModel": ".value",
    "compose": ".value",
    "evaluate": ".evaluation",
    "compare": ".evaluation",
    "EvalReport": ".evaluation",
    "Solver": ".pretrained",
    "load_default": ".pretrained",
    "load_policy": ".pretrained",
}

if TYPE_CHECKING:
    from .evaluation import EvalReport, compare, evaluate
    from .policy import Candidate, HFPolicy
    from .pretrained import Solver, load_default, load_policy
    from .value import QValueModel, compose


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qstar_native' has no attribute {name!r}")


__all__ = [
    "CacheFullError",
    "CacheStats",
    "Candidate",
    "Child",
    "Engine",
    "EvalReport",
    "ExpandFn",
    "HFPolicy",
    "Node",
    "NodeRecord",
    "PrefixCache",
    "PrefixMatch",
    "QValueModel",
    "SearchResult",
    "Searcher",
    "Solution",
    "Solver",
    "Stats",
    "as_tokens",
    "compare",
    "compose",
    "evaluate",
    "load_default",
    "load_policy",
]
__version__ = "0.1.0"
