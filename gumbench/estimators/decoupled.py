"""Decoupled straight-through Gumbel-softmax (Shah, Yan, Mozer and Liu 2024, "Improving Discrete
Optimisation Via Decoupled Straight-Through Gumbel-Softmax", arXiv 2410.13331): one Gumbel draw g,
a forward temperature tau_f and a backward temperature tau_b.

The paper writes the Gumbel-softmax sample as softmax(logits / tau + g) -- the temperature divides the
logits before the noise is added -- rather than Jang et al.'s softmax((logits + g) / tau) that
``st-gumbel`` uses (the paper notes the difference in a footnote and uses its form for the baseline
and the method alike). In that form the forward temperature changes which category is drawn:

    forward   D = one-hot(argmax(logits / tau_f + g)),  a sample of Cat(softmax(logits / tau_f))
    backward  the Jacobian of softmax(logits / tau_b + g) with the same g, i.e.
              grad = J(y_b) u / tau_b,  y_b = softmax(logits / tau_b + g),  J(y) = diag(y) - y y^T

so tau_f sets the forward stochasticity (tau_f = 1 samples the model's own distribution; tau_f > 1
explores more, tau_f < 1 less, and the expected loss being descended is then that of the tempered
distribution: the estimate is biased for E_{Cat(softmax(logits))}[f] whenever tau_f != 1), and tau_b
sets how the gradient is spread over the categories. At tau_f = tau_b = 1 this is ``st-gumbel[tau=1]``
draw for draw (same uniforms, same arithmetic); at other equal temperatures it is the paper's
single-temperature ST-GS, not gumbench's ``st-gumbel[tau]``.

Parameters: ``tau`` is the backward temperature tau_b (so ``gradstats --tau`` and the training tasks'
temperature schedules move the backward one, the one the paper tunes for gradient fidelity) and
``tau_forward`` is tau_f (default 1: forward samples from Cat(softmax(logits))). In ``eval()`` the
forward value is the one-hot of the noiseless argmax (the mode at every tau_f) and no gradient flows,
as for ``st-gumbel``.
"""

from __future__ import annotations

import torch

from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.kernels.reference import compute_dtype, gumbel_from_uniform, softmax, uniform_open
from gumbench.plugin import TEMPERATURE


def scaled(x: torch.Tensor, tau: float) -> torch.Tensor:
    """x / tau, and x itself at tau = 1 (so that tau = 1 repeats st-gumbel's arithmetic bit for bit)."""
    return x if tau == 1 else x / tau


@register
class DecoupledSTGumbel(CategoricalEstimator):
    name = "decoupled-st-gumbel"
    family = "relaxation"
    description = ("Decoupled ST-GS (Shah 2024): one-hot of argmax(logits/tau_forward + g) forward, "
                   "Jacobian of softmax(logits/tau + g) backward (tau: the backward temperature).")
    defaults = {"tau": 1.0, "tau_forward": 1.0}
    ranges = {"tau": TEMPERATURE, "tau_forward": TEMPERATURE}
    # a smoother backward with the model's own forward, and the configuration the paper analyses (8 x 4 VAE)
    variants = ({"tau": 2.0}, {"tau": 1.3, "tau_forward": 1.6})

    def estimate(self, logits, loss_fn, generator):
        if not self.training:  # as st-gumbel: the noiseless argmax, no gradient
            return self.noiseless(logits, loss_fn)
        work = logits.to(compute_dtype(logits.dtype))  # fp16/bf16: logits / tau and the noise in fp32
        noise = gumbel_from_uniform(
            uniform_open(logits.shape, generator=generator, device=logits.device, dtype=work.dtype)
        )
        with torch.no_grad():
            indices = (scaled(work.detach(), self.params["tau_forward"]) + noise).argmax(dim=-1)
        soft = softmax(scaled(work, self.params["tau"]) + noise)
        value = (one_hot(indices, logits.shape[-1], soft.dtype) - soft.detach() + soft).to(logits.dtype)
        loss = call_loss(loss_fn, value, logits.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})
