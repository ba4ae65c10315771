"""Residual vector quantization (Zeghidour et al. 2021, "SoundStream: An End-to-End Neural Audio Codec",
Algorithm 1; as in EnCodec and DAC): S stages, each quantizing what the stages before it left.

    r_1 = z,   r_{s+1} = r_s - sg[v_s],   v_s = Q_s(r_s),   s = 1..S

Q_s is the stage quantizer (``quantizer``, any VQ estimator spec, default ``vq-commitment``; one instance
per stage, so each keeps its own state: EMA statistics, k-means flag, restart counters, SimVQ's W). The
forward value is the sum of the stages' codes, with one straight-through copy of the upstream gradient
to z:

    value = sum_s v_s - (n - 1) (z - sg[z])

where n is the number of stages used. Each v_s carries its stage's own gradient path (to r_s and to its
codes); since every r_s = z - sg[...] has the identity Jacobian, the straight-through stages of
``vq-commitment`` give d value / d z = n I - (n - 1) I = I: the upstream gradient reaches z once, and
the codebook gradients of value-path methods (``ibq``, ``nsvq`` as stage quantizers) are kept.
vector-quantize-pytorch's ResidualVQ returns sum_s v_s (the upstream gradient reaches z n times);
everything else (values, indices, losses, the gradients of the losses) is the same.

Codebooks: the bottleneck's one codebook (G, K, D) or (K, D) is split along K into S contiguous books,
stage s (0-based) getting rows [floor(s K / S), floor((s + 1) K / S)): K/S codes each when S divides K
("matched code counts"), sizes differing by at most one otherwise; K >= S is required (``split=sum``, the
default: the S books share the K codes, so the code space per frame is prod_s |book_s| = (K/S)^S codes,
S log2(K/S) bits, 12 bits for K = 128 and S = 2 where one book of K codes has 7). With ``split=product`` the
books are sized so that their code spaces multiply to K: a power of two K = 2^b, b >= S, gives the S stages
2^(b_s) codes with the b bits spread evenly (b_s = floor(b/S) or ceil(b/S), the larger books last: K = 128,
S = 2 gives books of 8 and 16 codes, 3 + 4 = 7 bits, as one book of 128), taken as contiguous rows from row 0
of the codebook, so the rows past sum_s |book_s| are never used (utilization counts them as unused).
:meth:`ResidualVQ.book_sizes` gives the sizes. The estimator holds no codebook of its own, and the stage
books are views, so in-place care (EMA, k-means, restarts) writes into the given codebook.

Auxiliary losses: each stage quantizer's losses, computed on its residual, summed over the stages
under the quantizer's own names (``commitment``, ``codebook``, ...), so training records keep the same
terms as a single quantizer.

Indices: ``stage_indices`` (..., G, S) holds each stage's code as a row of the given codebook (offset by
its book's first row), -1 where a stage was dropped; ``indices`` (..., G) is the first stage's code
(always used), so utilization counts reflect the first book, at most ceil(K/S) of the K codes.
``assign_codes`` gives that first-stage code; ``assign_stage_codes`` all S (eval mode, no dropout).

Quantizer dropout (``dropout=true``, SoundStream section 3.3): in training, each row (every leading
index; the G groups of a row together) draws n ~ U{1..S} from ``generator`` and uses stages 1..n only;
stages past n do not run on that row at all (its codebook care never sees it) and its losses and
``stage_indices`` for them are 0 and -1. vector-quantize-pytorch draws one n per call (per batch). In
eval all S stages run.

Checks: inputs and codebook as for ``vq-commitment`` (shapes, dtype and device, finite), with
max |z| + S x max |code| (the largest any residual plus its code can be) within
``magnitude_limit(dtype, G * D, beta)``, beta the stage quantizer's (0.25 if it has none); each stage
then checks its own residual.
"""

from __future__ import annotations

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import EstimatorOutput, VQEstimator, call_loss, make_estimator, register
from gumbench.estimators.vq import check_shapes, check_sizes
from gumbench.plugin import Range


@register
class ResidualVQ(VQEstimator):
    name = "residual-vq"
    description = (
        "Residual VQ (SoundStream/EnCodec/DAC): S stages quantize what the earlier ones left, each with "
        "K/S of the codebook's codes (split=product: books whose code counts multiply to K, one K-code book's bits); "
        "value = sum of the codes, straight-through once; optional quantizer dropout."
    )
    defaults = {"stages": 4, "quantizer": "vq-commitment", "dropout": False, "split": "sum"}
    ranges = {"stages": Range(1, 64, meaning="residual stages")}
    choices = {"split": ("sum", "product")}
    spec_optional = ("split",)  # added later: stored residual-vq specs, unit ids and seeds stay as they were

    def validate(self) -> None:
        spec = self.params["quantizer"]
        try:
            stages = [make_estimator(spec) for _ in range(self.params["stages"])]
        except GumbenchError as error:
            raise GumbenchError(f"{self.name}: quantizer {spec!r} is not a usable VQ estimator: {error}") from None
        if not isinstance(stages[0], VQEstimator) or isinstance(stages[0], ResidualVQ):
            raise GumbenchError(
                f"{self.name}: quantizer must name a single-stage VQ estimator (family vq, not residual-vq), "
                f"got {spec!r}"
            )
        if self.params["split"] == "product" and stages[0].implicit_codes:
            raise GumbenchError(f"{self.name}: split=product sizes learned stage books; {spec!r} fixes its own "
                                "code space (leave split out)")
        self.stages = torch.nn.ModuleList(stages)
        beta = stages[0].params.get("beta", 0.25)
        self.stage_beta = float(beta) if isinstance(beta, (int, float)) else 0.25

    @property
    def implicit_codes(self) -> bool:
        """Whether the stages' code spaces are implicit (the stage quantizer's capability)."""
        return self.stages[0].implicit_codes

    def code_space(self, codes: int | None = None, code_dim: int | None = None) -> tuple[int, int] | None:
        """S stage books of the stage quantizer's implicit code space: S x its codes, of its dimension."""
        stages = self.params["stages"]
        if codes is not None and codes % stages:
            return None
        space = self.stages[0].code_space(None if codes is None else codes // stages, code_dim)
        return None if space is None else (stages * space[0], space[1])

    def book_sizes(self, count: int) -> tuple[int, ...]:
        """The S stage books' code counts for a codebook of ``count`` codes (see the module docstring: ``split``)."""
        stages = self.params["stages"]
        if self.params["split"] == "sum":
            return tuple((s + 1) * count // stages - s * count // stages for s in range(stages))
        bits = count.bit_length() - 1
        if count != 1 << bits or bits < stages:
            raise GumbenchError(f"{self.label}: split=product needs a codebook of K = 2^b codes with b >= stages = "
                                f"{stages} (each stage at least 1 bit), got K = {count}")
        return tuple(1 << ((s + 1) * bits // stages - s * bits // stages) for s in range(stages))

    def _bounds(self, count: int) -> list[int]:
        bounds = [0]
        for size in self.book_sizes(count):
            bounds.append(bounds[-1] + size)
        return bounds

    def books(self, codebook: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """(first row, view of the codebook) per stage: contiguous rows along K (:meth:`book_sizes`)."""
        bounds = self._bounds(codebook.shape[-2])
        return [(lo, codebook[..., lo:hi, :]) for lo, hi in zip(bounds, bounds[1:])]

    def decode(self, indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        raise GumbenchError(
            f"{self.label}: a residual quantizer's vector is the sum of all its stages' codes, which the first "
            "stage's code does not determine; use quantize(vectors, codebook)"
        )

    def local_stage_codes(self, stage_indices: torch.Tensor, count: int) -> tuple[torch.Tensor, tuple[int, ...]]:
        """``stage_indices`` (..., G, S), rows of a codebook of ``count`` codes, as codes of each stage's own
        book (-1 stays -1: a dropped stage), and the books' sizes: what per-stage utilization counts."""
        bounds = self._bounds(count)
        first = torch.tensor(bounds[:-1], device=stage_indices.device)
        local = torch.where(stage_indices >= 0, stage_indices - first, stage_indices)
        return local, tuple(hi - lo for lo, hi in zip(bounds, bounds[1:]))

    def _check(self, inputs, codebook) -> None:
        who = self.label
        check_shapes(who, inputs, codebook)
        stages, count = self.params["stages"], codebook.shape[-2]
        if count < stages:
            raise GumbenchError(f"{who}: the codebook's K = {count} codes are split into {stages} stage books; "
                                f"K must be at least stages = {stages}")
        self.book_sizes(count)  # split=product: K a power of two with enough bits
        check_sizes(who, inputs, codebook, self.stage_beta, code_weight=stages)

    def assign_codes(self, vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The first stage's code (a row of ``codebook``) for each vector (..., G, D): deterministic."""
        lo, book = self.books(codebook)[0]
        return self.stages[0].assign_codes(vectors, book) + lo

    @torch.no_grad()
    def assign_stage_codes(self, vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Every stage's code (..., G, S), all stages used, as in eval mode; codebooks are left alone."""
        was = self.training
        self.eval()
        try:
            return self(vectors.detach(), lambda v: v.new_zeros(v.shape[:-2]), codebook=codebook.detach()).stage_indices
        finally:
            self.train(was)

    def forward(
        self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None, generator=None
    ) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        self._check(inputs, codebook)
        stages = self.params["stages"]
        batch, (groups, dim) = inputs.shape[:-2], inputs.shape[-2:]
        z = inputs.reshape(-1, groups, dim)
        rows = z.shape[0]
        if self.params["dropout"] and self.training and rows > 0:
            used = torch.randint(1, stages + 1, (rows,), generator=generator, device=z.device)
        else:
            used = torch.full((rows,), stages, dtype=torch.long, device=z.device)

        def no_loss(v):
            return v.new_zeros(v.shape[:-2])

        residual, total = z, z.new_zeros(z.shape)
        stage_indices = torch.full((rows, groups, stages), -1, dtype=torch.long, device=z.device)
        aux: dict[str, torch.Tensor] = {}
        for s, (stage, (lo, book)) in enumerate(zip(self.stages, self.books(codebook))):
            active = used > s
            every = bool(active.all())
            which = None if every else active.nonzero().squeeze(-1)
            out = stage(residual if every else residual[which], no_loss, codebook=book, generator=generator)
            value = out.value if every else z.new_zeros(z.shape).index_copy(0, which, out.value)
            total = total + value
            if every:
                stage_indices[..., s] = out.indices + lo
            else:
                stage_indices[which, :, s] = out.indices + lo
            for key, term in out.aux.items():
                term = term if every else term.new_zeros(rows).index_copy(0, which, term)
                aux[key] = aux[key] + term if key in aux else term
            residual = residual - value.detach()
        # one straight-through copy of the upstream gradient to z (each stage's path adds one: take n - 1 back)
        extra = (used - 1).to(z.dtype).reshape(rows, 1, 1)
        value = (total - extra * (z - z.detach())).reshape(inputs.shape)
        loss = call_loss(loss_fn, value, batch, self.spec)
        aux = {key: term.reshape(batch) for key, term in aux.items()}
        surrogate = loss + sum(aux.values()) if aux else loss
        stage_indices = stage_indices.reshape(*batch, groups, stages)
        return EstimatorOutput(surrogate=surrogate, value=value, indices=stage_indices[..., 0], loss=loss, aux=aux,
                               stage_indices=stage_indices)
