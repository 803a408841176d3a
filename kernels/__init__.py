"""Triton kernels of qstar_native, each file with its kernel, a validating launcher and a torch
reference (``qhead``: fused Q-value head scoring, f = g + lambda * q).

Nothing is imported here, so importing the package never triggers ``@triton.jit``: import the
kernel module you need, e.g. ``from qstar_native.kernels import qhead``.
"""
