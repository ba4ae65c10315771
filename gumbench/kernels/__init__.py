"""Gumbel-softmax and Gumbel-Rao kernels: the PyTorch reference path and the fused Triton kernels.

Importing this package never imports Triton nor touches a GPU driver; without Triton
installed everything still imports and every call takes the reference path.

    dispatch    the public functions, backend choice and input checks
    reference   the PyTorch reference (ground truth, and the CPU path)
    launch      how a (rows, K) problem is cut into Triton programs (pure Python)
    fused       the Triton kernels and autograd Functions, imported when a kernel first runs
"""

from gumbench.kernels.dispatch import (
    BACKENDS,
    get_backend,
    gumbel_argmax,
    gumbel_rao,
    gumbel_softmax,
    gumbel_uniforms,
    set_backend,
)
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


def __getattr__(name: str):
    # The autograd Function lives with the Triton kernels; resolving it imports triton, so it
    # is looked up on first access instead of at package import (and `import *` leaves it out).
    if name == "GumbelSoftmaxFunction":
        from gumbench.kernels.fused import GumbelSoftmaxFunction

        return GumbelSoftmaxFunction
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
