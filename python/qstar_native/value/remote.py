"""h over a server: a QVM head on hidden states that an embeddings endpoint computes.

A policy behind a server returns no hidden states, so a head trained on the policy's final hidden
state needs them from elsewhere. :class:`EmbeddingQVMScorer` sends each child state's token ids
to an embeddings endpoint that pools the *last* token without normalizing (llama.cpp:
``llama-server --embeddings --pooling last -fa off`` on the policy's GGUF, ``POST /embeddings``
with ``embd_normalize: -1``) and applies the head client-side. It reads the final-norm hidden
state HFPolicy hands the head, up to the server's arithmetic (SmolLM2 in F32: 5e-4 relative
error, tests/test_server_real.py), and costs one
forward of each child state on that server (its prompt cache shares the prefix of siblings); the
alternative without a second server, :class:`~.scorers.QVMScorer` in ``"sequence"`` mode with the
policy's weights as backbone, costs the same forward client-side.

Example:
    >>> scorer = EmbeddingQVMScorer(qvm, "http://127.0.0.1:8081")  # doctest: +SKIP
    >>> policy.as_expand(compose(q=scorer))  # doctest: +SKIP
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from ..batch import Batch, Steps
from ..policy.transport import ServerError, Transport
from .qvm import QValueModel
from .scorers import step_states

__all__ = ["EmbeddingQVMScorer"]


class EmbeddingQVMScorer:
    """q of each step = ``qvm``'s head on the embeddings endpoint's last-token hidden state of its
    child state. ``batch_size`` states go in one request, ``max_in_flight`` requests at once."""

    def __init__(self, qvm: QValueModel, url: str, *, batch_size: int = 16, max_in_flight: int = 8, transport: Transport | None = None) -> None:
        if not isinstance(qvm, QValueModel):
            raise TypeError(f"qvm must be a QValueModel, got {type(qvm).__name__}")
        self.qvm, self.url, self.batch_size = qvm, url.rstrip("/"), int(batch_size)
        self.transport = transport or Transport()
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="qstar-embeddings")
        self.__name__ = f"EmbeddingQVMScorer({self.url})"

    def hidden_states(self, states: list[np.ndarray]) -> torch.Tensor:
        """``[N, H]`` float32: the endpoint's pooled hidden state of each state."""
        chunks = [states[i : i + self.batch_size] for i in range(0, len(states), self.batch_size)]
        rows = [r for part in self._pool.map(self._embed, chunks) for r in part]
        out = torch.tensor(np.array(rows, np.float32))
        if out.ndim != 2 or out.shape[1] != self.qvm.hidden_size:
            raise ServerError(f"{self.url}/embeddings answered vectors of shape {tuple(out.shape)}; the QVM reads width {self.qvm.hidden_size} "
                              "(serve the policy's own model with --embeddings --pooling last)")  # fmt: skip
        return out

    def _embed(self, states: list[np.ndarray]) -> list[Any]:
        doc = self.transport.post(self.url, "/embeddings", {"content": [[int(t) for t in s] for s in states], "embd_normalize": -1})
        items = doc if isinstance(doc, list) else doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(items, list) or len(items) != len(states):
            raise ServerError(f"{self.url}/embeddings answered {type(doc).__name__}, not {len(states)} embeddings; start it with --embeddings --pooling last")
        out = []
        for item in sorted(items, key=lambda d: d.get("index", 0)):
            e = item.get("embedding") if isinstance(item, dict) else None
            if isinstance(e, list) and e and isinstance(e[0], list):
                if len(e) != 1:  # one vector per token: the server pools nothing
                    raise ServerError(f"{self.url}/embeddings returns one vector per token; start it with --pooling last")
                e = e[0]
            out.append(e)
        return out

    @torch.no_grad()
    def __call__(self, batch: Batch, steps: Steps) -> np.ndarray:
        if len(steps) == 0:
            return np.zeros(0)
        hidden = self.hidden_states(step_states(batch, steps)).to(self.qvm.w1.device)
        return self.qvm.score_hidden(hidden).double().cpu().numpy()
