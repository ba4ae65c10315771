"""Plain straight-through (Bengio et al. 2013, "Estimating or propagating gradients
through stochastic neurons"): the forward value is a sample z ~ Cat(softmax(logits)),
the backward pretends it was softmax(logits / tau). At tau = 1 it is exact for losses
linear in z, and biased otherwise.
"""

from __future__ import annotations

from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.kernels.reference import compute_dtype, sample_categorical, softmax
from gumbench.plugin import TEMPERATURE


@register
class StraightThrough(CategoricalEstimator):
    name = "straight-through"
    family = "relaxation"
    description = "Sample z ~ Cat(softmax(logits)) forward, Jacobian of softmax(logits/tau) backward (Bengio 2013)."
    defaults = {"tau": 1.0}
    ranges = {"tau": TEMPERATURE}

    def estimate(self, logits, loss_fn, generator):
        indices = sample_categorical(logits, generator)
        work = logits.to(compute_dtype(logits.dtype))  # fp16/bf16: logits / tau and the softmax in fp32
        soft = softmax(work / self.params["tau"])
        value = (one_hot(indices, logits.shape[-1], work.dtype) + soft - soft.detach()).to(logits.dtype)
        loss = call_loss(loss_fn, value, logits.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})
