"""qstar_native: Q* deliberative planning for LLM reasoning on a native A* engine.

>>> import qstar_native
>>> searcher = qstar_native.Searcher(lambda nodes: [[] for _ in nodes])
>>> searcher.search([1, 2, 3]).stop_reason
'exhausted'
"""

from .engine import Engine, as_tokens
from .searcher import ExpandFn, Searcher
from .types import Child, Node, NodeRecord, SearchResult, Solution, Stats

__all__ = [
    "Child",
    "Engine",
    "ExpandFn",
    "Node",
    "NodeRecord",
    "SearchResult",
    "Searcher",
    "Solution",
    "Stats",
    "as_tokens",
]
__version__ = "0.1.0"
