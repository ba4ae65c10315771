"""Vector quantization with a straight-through gradient and a commitment loss
(van den Oord et al. 2017, "Neural Discrete Representation Learning").

Inputs are continuous vectors z_e of shape (..., G, D) and a codebook of shape
(G, K, D) (one per group) or (K, D) (shared). Each vector goes to its nearest code
by L2 distance; the forward value is that code e, the backward copies the gradient
straight through to z_e. Per row, averaged over the G x D elements:

    codebook loss   ||sg[z_e] - e||^2           (moves the codes; dropped with ema=true)
    commitment loss beta * ||z_e - sg[e]||^2    (beta = 0.25 as in the paper)

With ``ema=true`` the codebook is not trained by gradient but updated in place
after every training call by exponential moving averages of code counts N_k and
of the sums of vectors assigned to each code M_k (decay ``decay``), e_k = M_k / N_k
(the paper's appendix). The averages start at N_k = 1 and M_k = e_k, so for a code
that is never chosen both decay by the same factor and it keeps its value; once its
count falls below ``eps`` (long dead, near underflow) it is no longer rewritten, so no
zero count is ever divided by.

VQ estimators take vectors, not logits, so the enumeration-based gradient
statistics do not apply to them; they are measured in the training tasks.
"""

from __future__ import annotations

import torch

from gumbench.errors import GumbenchError, check_positive
from gumbench.estimators.base import Estimator, EstimatorOutput, call_loss, one_hot, register


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code per group: z (..., G, D), codebook (G, K, D) -> (..., G)."""
    # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 does not change the argmin.
    cross = torch.einsum("...gd,gkd->...gk", z, codebook)
    return ((codebook * codebook).sum(-1) - 2 * cross).argmin(dim=-1)


@register
class VQCommitment(Estimator):
    name = "vq-commitment"
    family = "vq"
    description = "VQ-VAE: nearest code by L2, straight-through to the encoder, codebook + beta * commitment loss; ema=true updates codes by EMA."
    parameters = {"beta": 0.25, "ema": False, "decay": 0.99, "eps": 1e-5}

    def validate(self) -> None:
        p = self.params
        check_positive(f"{self.name}: beta", p["beta"], inclusive=True)
        check_positive(f"{self.name}: eps", p["eps"])
        if not 0 < p["decay"] < 1:
            raise GumbenchError(f"{self.name}: decay must be in (0, 1), got {p['decay']}")
        self.register_buffer("ema_counts", None)
        self.register_buffer("ema_sums", None)

    def forward(self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None, generator=None) -> EstimatorOutput:
        z, codes = self._check(inputs, codebook)
        indices = nearest_codes(z.detach(), codes.detach())
        assign = one_hot(indices, codes.shape[1], z.dtype)  # (..., G, K)
        z_q = torch.einsum("...gk,gkd->...gd", assign, codes)
        value = z + (z_q - z).detach()
        loss = call_loss(loss_fn, value, z.shape[:-2], self.spec)
        commitment = self.params["beta"] * (z - z_q.detach()).pow(2).mean(dim=(-2, -1))
        aux = {"commitment": commitment}
        if self.params["ema"]:
            if self.training:
                self._ema_update(z.detach(), assign, codebook)
        else:
            aux["codebook"] = (z.detach() - z_q).pow(2).mean(dim=(-2, -1))
        surrogate = loss + sum(aux.values())
        return EstimatorOutput(surrogate=surrogate, value=value, indices=indices, loss=loss, aux=aux)

    def _check(self, inputs, codebook):
        if codebook is None:
            raise GumbenchError(f"{self.spec} needs codebook=tensor of shape (G, K, D) or (K, D)")
        if not (isinstance(inputs, torch.Tensor) and inputs.is_floating_point() and inputs.dim() >= 2):
            raise GumbenchError(f"{self.spec}: inputs must be a float tensor of shape (..., G, D)")
        if not torch.isfinite(inputs).all():
            raise GumbenchError(f"{self.spec}: inputs contain NaN or inf")
        codes = codebook.unsqueeze(0).expand(inputs.shape[-2], *codebook.shape) if codebook.dim() == 2 else codebook
        if codes.dim() != 3 or codes.shape[0] != inputs.shape[-2] or codes.shape[-1] != inputs.shape[-1]:
            raise GumbenchError(
                f"{self.spec}: codebook shape {tuple(codebook.shape)} does not fit inputs {tuple(inputs.shape)}; "
                f"expected (G, K, D) = ({inputs.shape[-2]}, K, {inputs.shape[-1]}) or (K, {inputs.shape[-1]})"
            )
        return inputs, codes

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, assign: torch.Tensor, codebook: torch.Tensor) -> None:
        if codebook.dim() != 3:
            raise GumbenchError(f"{self.spec}: ema=true updates per-group codebooks; pass shape (G, K, D)")
        if self.ema_counts is None or self.ema_counts.shape != codebook.shape[:2]:
            self.ema_counts = torch.ones(codebook.shape[:2], dtype=codebook.dtype, device=codebook.device)
            self.ema_sums = codebook.detach().clone()
        decay, eps = self.params["decay"], self.params["eps"]
        flat_assign = assign.reshape(-1, *assign.shape[-2:])  # (N, G, K)
        counts = flat_assign.sum(0)
        sums = torch.einsum("ngk,ngd->gkd", flat_assign, z.reshape(-1, *z.shape[-2:]))
        self.ema_counts.mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_sums.mul_(decay).add_(sums, alpha=1 - decay)
        counts = self.ema_counts.unsqueeze(-1)
        codebook.data.copy_(torch.where(counts > eps, self.ema_sums / counts.clamp_min(eps), codebook.detach()))
