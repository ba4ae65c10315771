"""residual-vq against vector-quantize-pytorch's ResidualVQ on identical inputs and codebooks, quantizer dropout,
the codebook split, parameters and errors, and a short training run."""

import random

import pytest
import torch
from scipy import stats

from gumbench.benchmarks.training import train
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from gumbench.estimators.vq import nearest_codes
from tests.conftest import require_package

B, N, D, K, S, BETA = 3, 5, 4, 12, 4, 0.25


def gen(seed):
    return torch.Generator().manual_seed(seed)


def oracle(codebook, *, stages=S, rotation=False, dropout=False):
    """vqp's ResidualVQ with our codebook split into its layers: learnable codebooks, no EMA, k-means or projections."""
    vqp = require_package("vector_quantize_pytorch")
    rvq = vqp.ResidualVQ(
        dim=D,
        num_quantizers=stages,
        codebook_size=K // stages,
        learnable_codebook=True,
        ema_update=False,
        rotation_trick=rotation,
        commitment_weight=BETA,
        kmeans_init=False,
        quantize_dropout=dropout,
    )
    with torch.no_grad():
        for s, layer in enumerate(rvq.layers):
            layer._codebook.embed.copy_(codebook[:, s * K // stages:(s + 1) * K // stages])
    return rvq.train()


def inputs():
    z = torch.randn(B, N, 1, D, generator=gen(0))
    codebook = torch.randn(1, K, D, generator=gen(1))
    upstream = torch.randn(B, N, 1, D, generator=gen(2))
    return z, codebook, upstream


def ours(spec, z, codebook, upstream, generator=None):
    z, book = z.clone().requires_grad_(True), codebook.clone().requires_grad_(True)
    out = make_estimator(spec)(z, lambda v: (v * upstream).sum((-2, -1)), codebook=book, generator=generator)
    return out, z, book


def grads(outputs, leaves):
    return torch.autograd.grad(outputs, leaves, retain_graph=True, allow_unused=True)


@pytest.mark.parametrize("rotation", [False, True])
def test_values_indices_losses_and_gradients_match_vector_quantize_pytorch(rotation):
    z, codebook, upstream = inputs()
    spec = f"residual-vq[stages={S},quantizer=vq-commitment[beta={BETA},rotation={str(rotation).lower()}]]"
    out, zo, bo = ours(spec, z, codebook, upstream)
    rvq = oracle(codebook, rotation=rotation)
    x = z.squeeze(-2).clone().requires_grad_(True)
    value, indices, losses = rvq(x)
    torch.testing.assert_close(out.value.squeeze(-2), value, atol=1e-6, rtol=1e-5)
    offsets = torch.arange(S) * (K // S)  # our stage indices are rows of the whole codebook
    torch.testing.assert_close(out.stage_indices.squeeze(-2), indices + offsets)
    assert torch.equal(out.indices, out.stage_indices[..., 0])
    # vqp: one beta * mse(residual, code) per stage, gradient to both sides; ours: commitment beta * ||r - sg e||^2
    # and codebook ||sg r - e||^2 per row, summed over the stages
    torch.testing.assert_close(out.aux["commitment"].mean(), losses.sum())
    torch.testing.assert_close(out.aux["codebook"].mean(), losses.sum() / BETA)
    layers = [layer._codebook.embed for layer in rvq.layers]
    # the losses' gradients: at z equal; at the codebook ours (codebook loss) is vqp's / beta
    gz, gb = grads(out.aux["commitment"].mean(), [zo, bo])
    assert gb is None
    vz, *vb = grads(losses.sum(), [x, *layers])
    torch.testing.assert_close(gz.squeeze(-2), vz, atol=1e-7, rtol=1e-5)
    _, gb = grads(out.aux["codebook"].mean(), [zo, bo])
    torch.testing.assert_close(gb, torch.cat(vb, dim=1) / BETA, atol=1e-7, rtol=1e-5)
    # the value's gradient: vqp sums each stage's straight-through (or rotation) path, S copies; ours takes S - 1 back
    gz, gb = grads(out.loss.sum(), [zo, bo])
    vz, = grads((value * upstream.squeeze(-2)).sum(), [x])
    torch.testing.assert_close(gz.squeeze(-2), vz - (S - 1) * upstream.squeeze(-2), atol=1e-5, rtol=1e-5)
    if not rotation:
        torch.testing.assert_close(gz, upstream)  # straight-through once
    assert gb is None  # straight-through stages: the codes get their gradient from the codebook loss only


def test_stages_quantize_residuals_by_hand():
    z, codebook, _ = inputs()
    out = make_estimator("residual-vq[stages=3]")(z, lambda v: v.sum((-2, -1)), codebook=codebook)
    residual, total = z, torch.zeros_like(z)
    for s, (lo, hi) in enumerate([(0, 4), (4, 8), (8, 12)]):
        k = nearest_codes(residual, codebook[:, lo:hi])
        assert torch.equal(out.stage_indices[..., s], k + lo)
        code = codebook[0, lo + k]
        total, residual = total + code, residual - code
    torch.testing.assert_close(out.value, total)


def test_unmatched_sizes_split_contiguously():
    est = make_estimator("residual-vq[stages=4]")
    rows = [(lo, book.shape[-2]) for lo, book in est.books(torch.zeros(2, 6, 3))]
    assert rows == [(0, 1), (1, 2), (3, 1), (4, 2)]  # floor(s K / S): sizes differ by at most one, every code used once
    z = torch.randn(7, 2, 3, generator=gen(0))
    out = est(z, lambda v: v.sum((-2, -1)), codebook=torch.randn(2, 6, 3, generator=gen(1)))
    for s, (lo, size) in enumerate(rows):
        assert ((out.stage_indices[..., s] >= lo) & (out.stage_indices[..., s] < lo + size)).all()


def test_dropout_uses_a_uniform_number_of_stages_per_row():
    z, codebook, _ = inputs()
    rows = 4000
    big = torch.randn(rows, 1, D, generator=gen(3))
    out = make_estimator("residual-vq[dropout=true]")(
        big, lambda v: v.sum((-2, -1)), codebook=codebook, generator=gen(4)
    )
    used = (out.stage_indices[:, 0] >= 0).sum(-1)
    assert ((out.stage_indices[:, 0] >= 0) == (torch.arange(S) < used.unsqueeze(-1))).all()  # a prefix of the stages
    counts = torch.bincount(used, minlength=S + 1)[1:].double()
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3
    # the used stages are those of a full run; the value is their codes' sum; the loss terms are theirs
    again = make_estimator("residual-vq")(big, lambda v: v.sum((-2, -1)), codebook=codebook)
    keep = out.stage_indices >= 0
    assert torch.equal(out.stage_indices[keep], again.stage_indices[keep])
    codes = codebook[0][again.stage_indices.clamp_min(0)] * keep.unsqueeze(-1)
    torch.testing.assert_close(out.value, codes.sum(-2), atol=1e-6, rtol=1e-5)
    # eval: every stage, no draw
    assert (
        make_estimator("residual-vq[dropout=true]")
        .eval()(z, lambda v: v.sum((-2, -1)), codebook=codebook)
        .stage_indices
        >= 0
    ).all()


def test_dropout_rows_match_vector_quantize_pytorch_at_its_drawn_depth():
    _, codebook, _ = inputs()
    rows = 400
    big = torch.randn(rows, 1, 1, D, generator=gen(5))
    out = make_estimator("residual-vq[dropout=true]")(
        big, lambda v: v.sum((-2, -1)), codebook=codebook, generator=gen(6)
    )
    seed = 1234
    depth = random.Random(seed).randrange(0, S) + 1  # vqp: one depth per call, from this seed
    value, indices, _ = oracle(codebook, dropout=True)(big.squeeze(-2), rand_quantize_dropout_fixed_seed=seed)
    same = (out.stage_indices >= 0).sum(-1).squeeze(-1) == depth
    assert same.any()
    torch.testing.assert_close(out.value.squeeze(-2)[same], value[same], atol=1e-6, rtol=1e-5)
    kept = indices[same] >= 0
    assert torch.equal(out.stage_indices.squeeze(-2)[same][kept], (indices[same] + torch.arange(S) * (K // S))[kept])


def test_quantizer_spec_is_parsed_and_each_stage_keeps_its_own_state():
    est = make_estimator("residual-vq[stages=2,quantizer=vq-commitment[ema=true,beta=0.5]]")
    assert est.params["quantizer"] == "vq-commitment[ema=true,beta=0.5]"
    assert len(est.stages) == 2 and est.stages[0] is not est.stages[1] and est.stages[1].params["beta"] == 0.5
    assert make_estimator(est.spec).spec == est.spec  # the canonical name parses back
    codebook = torch.randn(1, 8, 3, generator=gen(0))
    before = codebook.clone()
    est(torch.randn(50, 1, 3, generator=gen(1)), lambda v: v.sum((-2, -1)), codebook=codebook)
    # EMA writes through the stage views into the given codebook, in both halves
    assert not torch.equal(codebook[:, :4], before[:, :4]) and not torch.equal(codebook[:, 4:], before[:, 4:])
    assert est.stages[0].ema_counts.shape == (1, 4) and not torch.equal(
        est.stages[0].ema_counts, est.stages[1].ema_counts
    )


@pytest.mark.parametrize("quantizer", ["simvq", "ibq", "nsvq"])
def test_other_quantizers_as_stages(quantizer):
    z = torch.randn(6, 2, 3, generator=gen(0), requires_grad=True)
    codebook = torch.randn(2, 8, 3, generator=gen(1), requires_grad=True)
    est = make_estimator(f"residual-vq[stages=2,quantizer={quantizer}]")
    out = est(z, lambda v: v.pow(2).sum((-2, -1)), codebook=codebook, generator=gen(2))
    out.surrogate.sum().backward()
    assert torch.isfinite(z.grad).all() and out.stage_indices.shape == (6, 2, 2)
    assert (codebook.grad is None) == (quantizer == "simvq")  # value-path methods keep their codebook gradient
    if quantizer == "simvq":
        assert len(list(torch.nn.ModuleList([est]).parameters())) == 2  # one W per stage


@pytest.mark.parametrize(
    "bad, match",
    [
        ("residual-vq[stages=0]", r"residual-vq: stages \(residual stages\) must be in \[1, 64\], got 0"),
        ("residual-vq[quantizer=st-gumbel]", "quantizer must name a single-stage VQ estimator"),
        ("residual-vq[quantizer=residual-vq]", "quantizer must name a single-stage VQ estimator"),
        (
            "residual-vq[quantizer=vq-commitment[beta=-1]]",
            r"quantizer 'vq-commitment\[beta=-1\]' is not a usable VQ estimator: "
            r"vq-commitment: beta \(commitment weight\) must be a finite number in \[0, 100\], got -1.0",
        ),
        ("residual-vq[quantizer=nope]", "unknown estimator 'nope'"),
    ],
)
def test_parameter_errors_name_what_is_allowed(bad, match):
    with pytest.raises(GumbenchError, match=match):
        make_estimator(bad)


def test_input_errors_name_what_is_allowed():
    est = make_estimator("residual-vq[stages=4]")
    with pytest.raises(
        GumbenchError,
        match=r"residual-vq: the codebook's K = 3 codes are split into 4 stage books; K must be at least stages = 4",
    ):
        est(torch.randn(2, 1, 3), lambda v: v.sum((-2, -1)), codebook=torch.randn(1, 3, 3))
    # fp16, G * D = 3: the limit is 3 x 65504 / 4 = 49128; one code of 2e4 fits, four do not
    make_estimator("vq-commitment")(torch.full((2, 1, 3), 1e3, dtype=torch.float16), lambda v: v.sum((-2, -1)),
                                    codebook=torch.full((1, 4, 3), 2e4, dtype=torch.float16))
    with pytest.raises(
        GumbenchError,
        match=r"max \|input\| \+ 4 x max \|code\| must be at most 4.91e\+04 for float16 with G \* D = 3 .* "
        r"got 1e\+03 \+ 4 x 2e\+04",
    ):
        est(
            torch.full((2, 1, 3), 1e3, dtype=torch.float16),
            lambda v: v.sum((-2, -1)),
            codebook=torch.full((1, 4, 3), 2e4, dtype=torch.float16),
        )


def test_trains_a_few_steps_on_gmm_vq():
    frame = train("gmm-vq[batch=64]", "residual-vq[stages=2]", steps=30, seed=0, eval_every=30)
    assert len(frame) == 30 and frame["loss"].notna().all()
    assert frame["loss_reconstruction"].iloc[-5:].mean() < 0.8 * frame["loss_reconstruction"].iloc[:5].mean()
    assert {"loss_commitment", "loss_codebook"} <= set(
        frame.columns
    )  # summed over the stages under the quantizer's names


def test_local_stage_codes_are_codes_of_each_stages_book():
    est = make_estimator("residual-vq[stages=3]")
    rows = torch.tensor([[[0, 3, 9]], [[2, -1, -1]]])  # K = 10: books [0, 3), [3, 6), [6, 10)
    local, sizes = est.local_stage_codes(rows, 10)
    assert sizes == (3, 3, 4)
    assert local.tolist() == [[[0, 0, 3]], [[2, -1, -1]]]


@pytest.mark.parametrize("stages, count, sizes", [(2, 128, (8, 16)), (2, 8, (2, 4)), (3, 128, (4, 4, 8)),
                                                  (2, 16, (4, 4)), (7, 128, (2,) * 7)])
def test_product_split_books_multiply_to_the_codebook(stages, count, sizes):
    est = make_estimator(f"residual-vq[stages={stages},split=product]")
    assert est.book_sizes(count) == sizes
    # the books are contiguous rows from row 0; each stage's codes stay in its book
    z = torch.randn(50, 1, 3, generator=gen(0))
    out = est(z, lambda v: v.sum((-2, -1)), codebook=torch.randn(1, count, 3, generator=gen(1)))
    lo = 0
    for s, size in enumerate(sizes):
        assert ((out.stage_indices[..., s] >= lo) & (out.stage_indices[..., s] < lo + size)).all()
        lo += size
    local, local_sizes = est.local_stage_codes(out.stage_indices, count)
    assert local_sizes == sizes and (local >= 0).all() and (local < torch.tensor(sizes)).all()


def test_sum_split_keeps_its_sizes():
    assert make_estimator("residual-vq[stages=2]").book_sizes(128) == (64, 64)
    assert make_estimator("residual-vq[stages=4]").book_sizes(6) == (1, 2, 1, 2)


def test_product_split_errors_name_what_is_allowed():
    est = make_estimator("residual-vq[stages=2,split=product]")
    for count in (24, 2):  # not a power of two; one bit for two stages
        with pytest.raises(GumbenchError, match=rf"split=product needs a codebook of K = 2\^b codes with b >= stages "
                                                rf"= 2 \(each stage at least 1 bit\), got K = {count}"):
            est(torch.randn(2, 1, 3), lambda v: v.sum((-2, -1)), codebook=torch.randn(1, count, 3))
    with pytest.raises(GumbenchError, match="split=product sizes learned stage books"):
        make_estimator("residual-vq[stages=2,split=product,quantizer=lfq]")
    with pytest.raises(GumbenchError, match="split"):
        make_estimator("residual-vq[split=even]")
