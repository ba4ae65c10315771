"""What the implicit-codebook quantizers (FSQ, LFQ, BSQ) share: input checks and the index layout.

Their codes are fixed points of a grid (FSQ) or the corners of a cube or of a sphere (LFQ, BSQ),
so the codebook the training bottleneck passes is never read: only its shape must agree with the
implicit one, K = the number of codes and D = the code dimension, so that code indices,
utilization and the decoder's input mean the same thing as with a learned codebook. The codebook
gets no gradient (it must still be finite, as for vq-commitment).

Every code is a tuple of per-dimension level indices ("digits", 0..L_i - 1 in dimension i);
``index_digits`` gives them for code indices, consistently with each estimator's index order.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import VQEstimator
from gumbench.estimators.vq import check_vector_inputs


class ImplicitCodebookVQ(VQEstimator):
    """A VQ estimator whose codes are implicit: see the module docstring. Subclasses define
    ``code_shape(dim) -> (K, D)`` (the number of codes and the code dimension expected for inputs
    of dimension ``dim``), ``code_space`` (the geometry a training task sizes its bottleneck from),
    ``digit_levels``, ``_indices`` (the deterministic assignment) and ``forward``."""

    implicit_codes = True
    has_code_digits = True

    def code_shape(self, dim: int) -> tuple[int, int]:
        raise NotImplementedError  # abstract

    def task_hint(self, dim: int) -> str:
        """What a codebook must be so that it fits."""
        codes, code_dim = self.code_shape(dim)
        return (f"the codebook needs codes={codes} and code dimension {code_dim} (a training task sizes its bottleneck "
                "so unless its spec sets the codes or the code dimension)")

    def dimension_problem(self, dim: int) -> str | None:
        """Why inputs of dimension ``dim`` cannot be quantized, or None."""
        return None

    # whether the first dimension is the least significant digit of a code index (FSQ) or the most (LFQ, BSQ)
    first_digit_least: ClassVar[bool] = True

    def digit_levels(self, dim: int | None = None) -> tuple[int, ...]:
        """Levels per dimension, (L_1, ..., L_D), for codes of dimension ``dim`` (FSQ: fixed by its levels;
        LFQ, BSQ: 2 per dimension, so ``dim`` is needed)."""
        raise NotImplementedError  # abstract

    def index_digits(self, indices: torch.Tensor, dim: int | None = None) -> torch.Tensor:
        """Per-dimension level indices (..., G, D), 0..L_i - 1, of code indices (..., G) in this
        estimator's index order; ``dim`` is the code dimension D (needed where the levels do not fix it)."""
        levels = torch.tensor(self.digit_levels(dim), dtype=torch.int64)
        return mixed_radix_digits(indices, levels, first_is_least=self.first_digit_least)

    def check(self, inputs, codebook) -> None:
        """Refuse, before any work, inputs and codebooks this estimator does not take."""
        who = self.label
        check_vector_inputs(who, inputs)
        groups, dim = inputs.shape[-2:]
        if not isinstance(codebook, torch.Tensor):
            raise GumbenchError(f"{who} needs codebook=tensor of shape (G, K, D) or (K, D) (only its shape is "
                                "read), or a codebook of its own (own_codebook(codes, dim, groups)), "
                                f"got {type(codebook).__name__}")
        if codebook.dtype != inputs.dtype or codebook.device != inputs.device:
            raise GumbenchError(
                f"{who}: codebook must have the inputs' dtype and device ({inputs.dtype} on {inputs.device}), "
                f"got {codebook.dtype} on {codebook.device}"
            )
        if codebook.dim() not in (2, 3) or codebook.shape[-1] != dim or codebook.shape[:-2] not in ((), (groups,)):
            raise GumbenchError(
                f"{who}: codebook shape {tuple(codebook.shape)} does not fit inputs {tuple(inputs.shape)}; "
                f"expected (G, K, D) = ({groups}, K, {dim}) or (K, {dim})"
            )
        problem = self.dimension_problem(dim)
        if problem is not None:
            raise GumbenchError(f"{who}: {problem}")
        codes, code_dim = self.code_shape(dim)
        if codebook.shape[-2] != codes or dim != code_dim:
            raise GumbenchError(f"{who} has {codes} implicit codes of dimension {code_dim}; the codebook has shape "
                                f"{tuple(codebook.shape)} for inputs {tuple(inputs.shape)}: {self.task_hint(dim)}")
        # the values are never read, but a codebook holding NaN or inf is refused as vq-commitment refuses it
        if codebook.numel() and not bool(torch.isfinite(codebook.detach()).all()):
            raise GumbenchError(
                f"{who}: NaN or inf in the codebook; allowed are finite values (only its shape is read)"
            )
        if inputs.numel():
            with torch.no_grad():
                size = float(inputs.detach().abs().amax())
            if not math.isfinite(size):
                raise GumbenchError(f"{who}: NaN or inf in the inputs; allowed are finite values")
            limit = self.magnitude_limit(inputs.dtype, groups, dim)
            if size > limit:
                dtype = str(inputs.dtype).removeprefix("torch.")
                raise GumbenchError(
                    f"{who}: max |input| must be at most {limit:.3g} for {dtype} with G * D = {groups * dim} "
                    f"(losses and gradients must stay finite), got {size:.3g}"
                )

    def magnitude_limit(self, dtype: torch.dtype, groups: int, dim: int) -> float:
        """The largest max |input| accepted; any finite value unless a subclass needs less."""
        return math.inf

    def assign_codes(self, vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The code index (..., G) of each vector (..., G, D): the forward's indices, deterministic."""
        self.check(vectors, codebook)
        with torch.no_grad():
            return self._indices(vectors.detach())

    def _indices(self, vectors: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract


def mixed_radix_digits(indices: torch.Tensor, radices: torch.Tensor, *, first_is_least: bool) -> torch.Tensor:
    """Digits (..., D) of ``indices`` (...) in the mixed radix ``radices`` (D,); the first digit is
    the least significant one (``first_is_least``) or the most significant one."""
    if (
        not isinstance(indices, torch.Tensor)
        or indices.is_floating_point()
        or indices.is_complex()
        or indices.dtype == torch.bool
    ):
        got = f"{indices.dtype} tensor" if isinstance(indices, torch.Tensor) else type(indices).__name__
        raise GumbenchError(f"index_digits: indices must be an integer tensor, got {got}")
    radices = radices.to(torch.int64)
    total = int(radices.prod())
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= total):
        raise GumbenchError(f"index_digits: indices must be in [0, {total}), got values in "
                            f"[{int(indices.min())}, {int(indices.max())}]")
    order = radices if first_is_least else radices.flip(0)
    basis = torch.cumprod(torch.cat([radices.new_ones(1), order[:-1]]), 0)
    if not first_is_least:
        basis = basis.flip(0)
    return (indices.to(torch.int64).unsqueeze(-1) // basis.to(indices.device)) % radices.to(indices.device)
