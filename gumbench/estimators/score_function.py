"""REINFORCE / score-function estimator (Williams 1992) with baselines.

For z ~ p(z) = prod_g Cat(z_g; softmax(logits_g)) the estimate of the gradient of
E[f(z)] is (f(z) - b) * grad log p(z), unbiased whenever b does not depend on z.

Baselines:
  none: b = 0.
  ema:  b = exponential moving average of past mean losses (decay ``decay``), taken
        before this call's update, so independent of the current samples; 0 on the
        first call.
  loo:  S samples per row, b_i = mean of the other S - 1 losses (RLOO; Kool et al.
        2019, "Buy 4 REINFORCE samples, get a baseline for free!"); the estimate is the
        average over the S samples.

The surrogate is f + (f - b).detach() * (log p - log p.detach()): its value is the
loss itself, its gradient the estimate, and any parameters inside ``loss_fn`` (a
decoder, say) get their ordinary pathwise gradient.
"""

from __future__ import annotations

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.kernels.reference import log_softmax, sample_categorical
from gumbench.plugin import OPEN_UNIT, Range


@register
class Reinforce(CategoricalEstimator):
    name = "reinforce"
    family = "score-function"
    description = "Score function (f - b) grad log p with baseline none, ema or loo (RLOO over S samples)."
    defaults = {"baseline": "none", "samples": 0, "decay": 0.9}
    choices = {"baseline": ("none", "ema", "loo")}
    ranges = {"samples": Range(0, 1000), "decay": OPEN_UNIT}  # samples = 0: the default for the baseline
    variants = ({"baseline": "none"}, {"baseline": "ema"}, {"baseline": "loo"})

    def validate(self) -> None:
        p = self.params
        if p["samples"] == 0:  # default: 1 sample, or 4 for the leave-one-out baseline
            p["samples"] = 4 if p["baseline"] == "loo" else 1
        if p["baseline"] == "loo" and p["samples"] < 2:
            raise GumbenchError(f"{self.name}: baseline=loo needs samples >= 2, got {p['samples']}")
        # the EMA of past mean losses, a float64 buffer (so state_dict() carries it), made on the first training call;
        # the arithmetic stays in Python floats
        self.register_buffer("ema_loss", None)

    @property
    def loss_evaluations(self) -> int:
        return self.params["samples"]  # one loss per sample

    def estimate(self, logits, loss_fn, generator):
        n, baseline = self.params["samples"], self.params["baseline"]
        indices = sample_categorical(logits, generator, samples=n)  # (n, ..., G): one softmax per row for all n
        z = one_hot(indices, logits.shape[-1], logits.dtype)
        f = call_loss(loss_fn, z, (n, *logits.shape[:-2]), self.spec)  # (n, ...)
        log_probs = log_softmax(logits)  # once per row, shared by the n samples
        log_p = log_probs.expand(n, *logits.shape).gather(-1, indices.unsqueeze(-1)).squeeze(-1).sum(-1)
        fd = f.detach()
        if baseline == "loo":
            b = (fd.sum(0, keepdim=True) - fd) / (n - 1)
        elif baseline == "ema":
            b = 0.0 if self.ema_loss is None else float(self.ema_loss)
            if self.training:
                batch_mean = fd.mean().item()
                decay = self.params["decay"]
                ema = batch_mean if self.ema_loss is None else decay * b + (1 - decay) * batch_mean
                self.ema_loss = torch.tensor(ema, dtype=torch.float64, device=logits.device)
        else:
            b = 0.0
        surrogate = (f + (fd - b) * (log_p - log_p.detach())).mean(0)
        if n == 1:
            z, indices = z[0], indices[0]
        return EstimatorOutput(surrogate=surrogate, value=z, indices=indices, loss=f.mean(0), aux={})
