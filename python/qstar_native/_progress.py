"""A tqdm progress bar when tqdm is installed and wanted, else a no-op with the same calls."""

from __future__ import annotations

from typing import Any


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0) -> Any:
    """``tqdm(total=..., desc=..., initial=...)``, or a silent stand-in when disabled or missing."""
    if not enabled:
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm ships with the [hf] extra; labelling works without it
        return _Silent()
    return tqdm(total=total, desc=desc, initial=initial, dynamic_ncols=True)
