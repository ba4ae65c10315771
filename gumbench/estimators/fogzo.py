"""FOGZO: straight-through mixed with an unbiased zeroth-order (score-function) estimate (issue 26: NeurIPS 2025;
gumbench could not consult the paper's equations, so this is the construction the issue describes, stated
exactly here and in docs/estimators.md; it may differ from the paper's).

S >= 2 samples D_1..D_S ~ Cat(pi) per row, pi = softmax(logits), with losses f_s and upstream gradients u_s at the
samples. The first-order part is straight-through's backward J(pi) u_s (J(p) = diag(p) - p p^T); the
zeroth-order part uses only loss values: REINFORCE with the leave-one-out baseline (RLOO),
(f_s - b_s) (D_s - pi), b_s the mean of the other S - 1 losses. With beta in [0, 1],

    grad = (1/S) sum_s [ (1 - beta) J(pi) u_s + beta (f_s - b_s) (D_s - pi) ].

Its mean is (1 - beta) E[J(pi) u(D)] + beta grad E[f]: beta = 1 is RLOO (unbiased), beta = 0 is straight-through
averaged over S samples; in between the bias is (1 - beta) times straight-through's, exactly, and the zeroth-order
part pays for the reduction in variance. S loss evaluations per estimate.
"""

from __future__ import annotations

import torch

from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, register
from gumbench.estimators.explicit import estimate_surrogate, jacobian_product, leave_one_out_mean, loss_and_upstream
from gumbench.kernels.reference import compute_dtype, sample_categorical, softmax
from gumbench.plugin import Range


@register
class FOGZO(CategoricalEstimator):
    name = "fogzo"
    family = "score-function"
    description = ("FOGZO: (1 - beta) straight-through J(pi) u + beta RLOO score function, averaged over S samples; "
                   "bias (1 - beta) x straight-through's; S loss evaluations.")
    defaults = {"beta": 0.5, "samples": 4}
    ranges = {"beta": Range(0, 1, meaning="weight of the zeroth-order part"),
              "samples": Range(2, 1000, meaning="S, the samples per row")}

    @property
    def loss_evaluations(self) -> int:
        return self.params["samples"]

    def estimate(self, logits, loss_fn, generator):
        n, beta = self.params["samples"], self.params["beta"]
        indices = sample_categorical(logits, generator, samples=n)  # (S, ..., G)
        work = logits.to(compute_dtype(logits.dtype))
        z, f, u = loss_and_upstream(loss_fn, indices, logits.shape[-1], logits.dtype, self.spec, upstream=beta < 1)
        with torch.no_grad():
            pi = softmax(work.detach())
            fd = f.detach().to(work.dtype)
            coefficient = (fd - leave_one_out_mean(fd)).reshape(*fd.shape, *(1,) * 2)
            estimate = beta * coefficient * (z.to(work.dtype) - pi)
            if beta < 1:
                estimate = estimate + (1 - beta) * jacobian_product(pi.expand_as(u), u.to(work.dtype))
            estimate = estimate.mean(0)
        surrogate = f.mean(0) + estimate_surrogate(work, estimate).to(f.dtype)
        return EstimatorOutput(surrogate=surrogate, value=z, indices=indices, loss=f.mean(0), aux={})
