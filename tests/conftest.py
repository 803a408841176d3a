"""Shared test setup.

TRITON_INTERPRET must be set before any ``@triton.jit`` decorator runs, so it is set here, at
collection time, before test modules import the kernels. On a machine without a GPU this makes the
Triton kernels run in Triton's CPU interpreter.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import settings  # noqa: E402

# Deterministic, CI-sized property tests: no clock-seeded runs, no deadline flakiness on 2 cores.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
