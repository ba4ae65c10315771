"""Gumbel-softmax relaxations (Jang et al. 2017; Maddison et al. 2017).

``soft-gumbel`` hands the relaxed sample softmax((logits + g)/tau) to the loss.
``st-gumbel`` is the straight-through variant as wav2vec 2.0 uses it (fairseq's
``GumbelVectorQuantizer``): in training the forward value is the one-hot of
argmax(logits + g), a sample of Cat(softmax(logits)), and the backward is the
Jacobian of softmax((logits + g)/tau) with the same g; in eval the forward value
is the one-hot of the noiseless argmax and no gradient flows.
"""

from __future__ import annotations

from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, register

# The fused Triton kernel on CUDA tensors, the PyTorch reference on the CPU
# (force either with gumbench.kernels.set_backend or $GUMBENCH_KERNEL_BACKEND).
from gumbench.kernels import gumbel_softmax
from gumbench.plugin import TEMPERATURE


class _GumbelBase(CategoricalEstimator):
    family = "relaxation"
    defaults = {"tau": 1.0}
    ranges = {"tau": TEMPERATURE}

    def _relaxed(self, logits, loss_fn, generator, hard: bool) -> EstimatorOutput:
        # logits were validated by CategoricalEstimator.forward
        y, indices = gumbel_softmax(
            logits, self.params["tau"], hard=hard, generator=generator, check=False, return_index=True
        )
        loss = call_loss(loss_fn, y, logits.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=y, indices=indices, loss=loss, aux={})


@register
class SoftGumbel(_GumbelBase):
    name = "soft-gumbel"
    description = "Relaxed sample softmax((logits + g)/tau), g ~ Gumbel(0,1): differentiable, biased for tau > 0."

    def estimate(self, logits, loss_fn, generator):
        return self._relaxed(logits, loss_fn, generator, hard=False)


@register
class STGumbel(_GumbelBase):
    name = "st-gumbel"
    description = ("Straight-through Gumbel-softmax (wav2vec 2.0): one-hot of argmax(logits + g) forward, "
                   "softmax((logits + g)/tau) Jacobian backward.")

    def estimate(self, logits, loss_fn, generator):
        if self.training:
            return self._relaxed(logits, loss_fn, generator, hard=True)
        return self.noiseless(logits, loss_fn)
