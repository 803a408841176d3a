"""The loop every labeller shares: skip what the file already holds, label the rest in batches,
write each batch (fsynced) before starting the next, show progress."""

from __future__ import annotations

from typing import Callable, Sequence

from .._progress import progress_bar
from .items import StateAction
from .rows import LabelRow, LabelWriter

LabelBatch = Callable[[list[StateAction]], Sequence[float]]
"""Labels one batch of items (one float per item)."""


def check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (items labelled per policy batch), got {batch_size!r}")


def label_items(
    items: Sequence[StateAction],
    label_batch: LabelBatch,
    *,
    method: str,
    writer: LabelWriter | None,
    batch_size: int,
    progress: bool,
    meta: dict | None = None,
) -> list[LabelRow]:
    """Rows for all ``items`` in their order: read from ``writer`` where already labelled, else
    made by ``label_batch`` and written batch by batch."""
    check_batch_size(batch_size)
    writer = writer if writer is not None else LabelWriter(None)
    todo, seen = [], set()
    for it in items:  # items equal by text are labelled once, wherever they appear
        key = it.key(method)
        if not writer.has(key) and key not in seen:
            seen.add(key)
            todo.append(it)
    bar = progress_bar(len(items), method, progress, initial=len(items) - len(todo))
    try:
        for lo in range(0, len(todo), batch_size):
            batch = todo[lo : lo + batch_size]
            labels = list(label_batch(batch))
            if len(labels) != len(batch):
                raise RuntimeError(f"{method}: got {len(labels)} labels for {len(batch)} items")  # a bug here, not the caller's
            writer.write([it.row(y, method, meta) for it, y in zip(batch, labels)])
            bar.update(len(batch))
    finally:
        bar.close()
    by_key = {r.key: r for r in writer.rows(method)}
    return [by_key[it.key(method)] for it in items]

