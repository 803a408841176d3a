"""qstar_native: Q* deliberative planning for LLM reasoning on a native A* engine.

>>> import qstar_native
>>> searcher = qstar_native.Searcher(lambda nodes: [[] for _ in nodes])
>>> searcher.search([1, 2, 3]).stop_reason
'exhausted'
"""

from .engine import Engine, as_tokens
from .prefix_cache import CacheFullError, CacheStats, PrefixCache, PrefixMatch
from .searcher import ExpandFn, Searcher
from .types import Child, Node, NodeRecord, SearchResult, Solution, Stats

__all__ = [
    "CacheFullError",
    "CacheStats",
    "Child",
    "Engine",
    "ExpandFn",
    "Node",
    "NodeRecord",
    "PrefixCache",
    "PrefixMatch",
    "SearchResult",
    "Searcher",
    "Solution",
    "Stats",
    "as_tokens",
]
__version__ = "0.1.0"
