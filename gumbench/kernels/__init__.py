"""Gumbel-softmax kernels: the PyTorch reference path and the fused Triton kernel.

Importing this package never touches a GPU driver; without Triton installed the fused
API still imports and every call takes the reference path.

Note: ``gumbench.kernels.gumbel_softmax`` and ``gumbench.kernels.gumbel_rao`` are the
functions once this package is imported (the modules of the same names are shadowed); reach
a module with ``importlib.import_module("gumbench.kernels.gumbel_softmax")``.
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
from gumbench.kernels.gumbel_rao import gumbel_rao  # noqa: E402  (after gumbel_softmax, whose helpers it uses)
from gumbench.kernels.reference import (
    conditional_gumbel,
    gumbel_noise,
    gumbel_rao_reference,
    gumbel_softmax_reference,
    sample_categorical,
    uniform_open,
)

__all__ = [
    "BACKENDS",
    "GumbelSoftmaxFunction",
    "conditional_gumbel",
    "get_backend",
    "gumbel_argmax",
    "gumbel_noise",
    "gumbel_rao",
    "gumbel_rao_reference",
    "gumbel_softmax",
    "gumbel_softmax_reference",
    "gumbel_uniforms",
    "sample_categorical",
    "set_backend",
    "uniform_open",
]
