"""Policies that propose next reasoning steps.

:class:`HFPolicy` wraps a Hugging Face causal LM with KV-cache prefix sharing: a node's state is
computed once and reused by all its descendants (see :mod:`.hf`). Importing this package imports
torch and transformers.
"""

from .hf import Candidate, HFPolicy, KVCapacityError, stack_hidden, tree_tokens
from .kv_pool import KVPool

__all__ = ["Candidate", "HFPolicy", "KVCapacityError", "KVPool", "stack_hidden", "tree_tokens"]
