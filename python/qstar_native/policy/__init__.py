"""Policies that propose next reasoning steps.

:class:`HFPolicy` runs a Hugging Face causal LM on the columnar path (see :mod:`.hf`): each token's
KV is computed once, siblings share their common prefixes, and every step comes with the hidden
state a Q-value head reads. :class:`ServerPolicy` proposes with a model behind a serving engine
(llama.cpp's llama-server, vLLM), token ids in and out (see :mod:`.server`). :class:`Calculator`
writes ``<<expr=value>>`` results during decode.
Importing this package imports torch and transformers.
"""

from .calculator import Calculator
from .hf import HFPolicy, KVCapacityError
from .kv_pool import KVPool
from .server import ServerError, ServerPolicy

__all__ = ["Calculator", "HFPolicy", "KVCapacityError", "KVPool", "ServerError", "ServerPolicy"]
