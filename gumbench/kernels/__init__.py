"""Gumbel-softmax kernels: the PyTorch reference path and the fused Triton kernel.

Importing this package never touches a GPU driver.
"""

from gumbench.kernels.reference import gumbel_softmax_reference, gumbel_noise, uniform_open

__all__ = ["gumbel_softmax_reference", "gumbel_noise", "uniform_open"]
