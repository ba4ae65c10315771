"""Gumbel-softmax kernels: the PyTorch reference path and the fused Triton kernel.

Importing this package never touches a GPU driver; without Triton installed the fused
API still imports and every call takes the reference path.

Note: ``gumbench.kernels.gumbel_softmax`` is the function once this package is imported
(the module of the same name is shadowed); reach the module with
``importlib.import_module("gumbench.kernels.gumbel_softmax")``.
"""

from gumbench.kernels.gumbel_softmax import (
    BACKENDS,
    GumbelSoftmaxFunction,
    get_backend,
    gumbel_argmax,
    gumbel_softmax,
    gumbel_uniforms,
    set_backend,
)
from gumbench.kernels.reference import gumbel_noise, gumbel_softmax_reference, uniform_open

__all__ = [
    "BACKENDS",
    "GumbelSoftmaxFunction",
    "get_backend",
    "gumbel_argmax",
    "gumbel_noise",
    "gumbel_softmax",
    "gumbel_softmax_reference",
    "gumbel_uniforms",
    "set_backend",
    "uniform_open",
]
