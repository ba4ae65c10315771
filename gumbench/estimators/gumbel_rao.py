"""Gumbel-Rao: the straight-through Gumbel-softmax estimator, Rao-Blackwellized over its noise
(Paulus, Maddison and Krause 2021, "Rao-Blackwellizing the Straight-Through Gumbel-Softmax
Gradient Estimator", ICLR).

Forward: one hard sample D = one-hot(k), k ~ Cat(softmax(logits)). Backward: the Jacobian of
softmax((logits + g)/tau) averaged over M Gumbel draws g_1..g_M from the law of g given
argmax(logits + g) = k, applied to the upstream gradient at D. The average estimates
E[J(g) | D], so the mean is that of ``st-gumbel`` and the variance is lower (law of total
variance); with M = 1 the pair (k, g_1) has the law of (argmax(logits + g), g), so the
estimator equals ``st-gumbel`` in distribution. No gradient flows through the conditional
noise itself (it is a constant of the backward, as in st-gumbel).

The conditional sampler (``conditional_gumbel``, the exact "exponential race") and the
estimator itself live in ``gumbench.kernels``: on CUDA tensors the fused Triton kernel
regenerates the M draws in registers in the backward (memory independent of M), on the CPU the
PyTorch reference materialises them.
"""

from __future__ import annotations

from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, register

# The fused Triton kernel on CUDA tensors, the PyTorch reference on the CPU
# (force either with gumbench.kernels.set_backend or $GUMBENCH_KERNEL_BACKEND).
from gumbench.kernels import gumbel_rao
from gumbench.plugin import TEMPERATURE, Range


@register
class GumbelRao(CategoricalEstimator):
    name = "gumbel-rao"
    family = "relaxation"
    description = ("Gumbel-Rao (Paulus 2021): one hard sample forward, softmax((logits + g)/tau) Jacobian averaged "
                   "over M draws of g given the sample.")
    defaults = {"tau": 1.0, "samples": 10}
    ranges = {"tau": TEMPERATURE, "samples": Range(1, 1000, meaning="M, the conditional Gumbel draws")}

    def estimate(self, logits, loss_fn, generator):
        if not self.training:  # as st-gumbel: the noiseless argmax, no gradient
            return self.noiseless(logits, loss_fn)
        # logits were validated by CategoricalEstimator.forward
        value, indices = gumbel_rao(
            logits, self.params["tau"], self.params["samples"], generator=generator, check=False
        )
        loss = call_loss(loss_fn, value, logits.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})
