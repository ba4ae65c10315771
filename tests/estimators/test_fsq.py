"""Finite scalar quantization: agreement with vector-quantize-pytorch's FSQ, the formulas by hand,
the index layout, the checks, and a short training run."""

import math

import pytest
import torch

from gumbench.benchmarks.training import train
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.conftest import require_package


def gen(seed):
    return torch.Generator().manual_seed(seed)


def weighted_sum(weights):
    return lambda v: (v * weights).sum((-2, -1))


def ours(spec, x, weights, dtype=torch.float32):
    """Value, indices, input gradient of surrogate.mean() and the output, for inputs x (N, G, D)."""
    est = make_estimator(spec)
    codes, dim = est.code_shape(x.shape[-1])
    z = x.detach().to(dtype, copy=True).requires_grad_(True)
    out = est(z, weighted_sum(weights.to(dtype)), codebook=torch.zeros(codes, dim, dtype=dtype))
    out.surrogate.mean().backward()
    return out.value, out.indices, z.grad, out


def oracle(levels, x, weights, dtype=torch.float32):
    """vector-quantize-pytorch's FSQ with one codebook per group and no projection (dim = G x D)."""
    vqp = require_package("vector_quantize_pytorch")
    n, groups, dim = x.shape
    module = vqp.FSQ(levels=list(levels), num_codebooks=groups, keep_num_codebooks_dim=True)
    assert not module.has_projections
    z = x.detach().to(dtype, copy=True).reshape(1, n, groups * dim).requires_grad_(True)
    value, indices = module(z)
    value = value.reshape(n, groups, dim)
    (value * weights.to(dtype)).sum((-2, -1)).mean().backward()
    return value, indices.reshape(n, groups), z.grad.reshape(n, groups, dim)


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (7, 6, 3), (4, 4, 4, 4, 3), (16,)])
def test_values_indices_and_gradients_agree_with_vector_quantize_pytorch(levels):
    x = 2 * torch.randn(512, 2, len(levels), generator=gen(0))
    weights = torch.randn(2, len(levels), generator=gen(1))
    value, indices, grad, out = ours(f"fsq[levels={'-'.join(map(str, levels))}]", x, weights)
    ref_value, ref_indices, ref_grad = oracle(levels, x, weights)
    torch.testing.assert_close(value, ref_value, rtol=0, atol=1e-6)
    assert torch.equal(indices, ref_indices.long()) and indices.dtype == torch.int64
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-8)
    assert out.aux == {} and torch.equal(out.surrogate, out.loss)  # FSQ needs no auxiliary loss


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_fp32_like_vector_quantize_pytorch(dtype):
    x = 2 * torch.randn(256, 1, 4, generator=gen(2))
    weights = torch.randn(1, 4, generator=gen(3))
    value, indices, _, _ = ours("fsq", x, weights, dtype)
    ref_value, ref_indices, _ = oracle((8, 5, 5, 5), x, weights, dtype)
    assert value.dtype == dtype
    assert torch.equal(value, ref_value) and torch.equal(indices, ref_indices.long())
    # the same codes as the fp32 computation on the same (rounded) inputs
    _, fp32_indices, _, _ = ours("fsq", x.to(dtype).float(), weights)
    assert torch.equal(indices, fp32_indices)


def hand_fsq(levels, z):
    """The bound, rounding and normalization written out in float64 (value, digits, derivative)."""
    levels = torch.tensor(levels, dtype=torch.float64)
    half_range = (levels - 1) * (1 + 1e-3) / 2
    offset = (levels % 2 == 0).double() * 0.5
    shift = torch.atanh(offset / half_range)
    half_width = torch.floor(levels / 2)
    bounded = half_range * torch.tanh(z + shift) - offset
    rounded = torch.round(bounded)
    derivative = half_range * (1 - torch.tanh(z + shift) ** 2) / half_width
    return rounded / half_width, rounded + half_width, derivative


def test_value_and_straight_through_gradient_match_the_formulas():
    levels = (8, 5, 5, 5)
    z = (3 * torch.randn(300, 3, 4, generator=gen(4))).double().requires_grad_(True)
    upstream = torch.randn(3, 4, generator=gen(5), dtype=torch.float64)
    out = make_estimator("fsq")(z, weighted_sum(upstream), codebook=torch.zeros(3, 1000, 4, dtype=torch.float64))
    out.surrogate.sum().backward()
    value, digits, derivative = hand_fsq(levels, z.detach())
    torch.testing.assert_close(out.value, value, rtol=0, atol=1e-12)
    torch.testing.assert_close(z.grad, upstream * derivative, rtol=1e-12, atol=1e-15)
    basis = torch.tensor([1, 8, 40, 200])
    assert torch.equal(out.indices, (digits.long() * basis).sum(-1))


def test_values_lie_on_the_grid_in_the_unit_interval_and_every_code_is_reachable():
    est = make_estimator("fsq[levels=8-5-3]")
    z = (
        torch.linspace(-12, 12, 20001).unsqueeze(-1).expand(-1, 3).unsqueeze(1)
    )  # (N, 1, 3), tanh saturates at both ends
    out = est(z, lambda v: v.sum((-2, -1)), codebook=torch.zeros(120, 3))
    assert out.value.abs().max() <= 1
    half = torch.tensor([4.0, 2.0, 1.0])
    scaled = out.value * half
    assert torch.equal(scaled, scaled.round())
    # per dimension every level is reached: L_i distinct values, -1 (and +1 for odd L) included
    for i, level in enumerate((8, 5, 3)):
        assert out.value[..., i].unique().numel() == level
    # every one of the 120 codes: the input that the bound maps to each level's centre lands on it
    codes = torch.arange(120)
    centres = est.codes_of(codes).double()  # (120, 3)
    levels = torch.tensor([8.0, 5.0, 3.0], dtype=torch.float64)
    half_range, offset = (levels - 1) * 1.001 / 2, (levels % 2 == 0).double() / 2
    z = torch.atanh((centres * half.double() + offset) / half_range) - torch.atanh(offset / half_range)
    assert torch.equal(est.assign_codes(z.float().unsqueeze(1), torch.zeros(120, 3)).squeeze(1), codes)


def test_index_digits_round_trip_and_match_the_values():
    est = make_estimator("fsq[levels=7-6-3]")
    z = 3 * torch.randn(1000, 2, 3, generator=gen(6))
    out = est(z, lambda v: v.sum((-2, -1)), codebook=torch.zeros(126, 3))
    digits = est.index_digits(out.indices)
    assert digits.shape == (1000, 2, 3) and digits.dtype == torch.int64
    half = torch.tensor([3, 3, 1])
    assert torch.equal(out.value, (digits - half) / half)
    assert (digits >= 0).all() and (digits < torch.tensor([7, 6, 3])).all()
    assert torch.equal(est.index_digits(torch.arange(126)) @ torch.tensor([1, 7, 42]), torch.arange(126))
    assert torch.equal(est.codes_of(out.indices), out.value)
    assert est.digit_levels() == (7, 6, 3)
    assert torch.equal(est.assign_codes(z, torch.zeros(2, 126, 3)), out.indices)
    with pytest.raises(GumbenchError, match="indices must be in"):
        est.index_digits(torch.tensor([126]))
    with pytest.raises(GumbenchError, match="dimension 3"):
        est.index_digits(torch.tensor([1]), dim=4)


def test_codebook_shape_must_match_the_implicit_codebook_and_says_what_to_set():
    est = make_estimator("fsq")
    z = torch.randn(5, 2, 4)
    with pytest.raises(GumbenchError, match=r"codes=1000 and code dimension 4"):
        est(z, lambda v: v.sum((-2, -1)), codebook=torch.zeros(2, 128, 4))
    with pytest.raises(GumbenchError, match=r"codes=1000 and code dimension 4"):
        est(torch.randn(5, 2, 3), lambda v: v.sum((-2, -1)), codebook=torch.zeros(2, 1000, 3))
    with pytest.raises(GumbenchError, match="does not fit"):
        est(z, lambda v: v.sum((-2, -1)), codebook=torch.zeros(3, 1000, 4))  # 3 groups for 2
    with pytest.raises(GumbenchError, match="needs codebook"):
        est(z, lambda v: v.sum((-2, -1)))
    with pytest.raises(GumbenchError, match="dtype and device"):
        est(z, lambda v: v.sum((-2, -1)), codebook=torch.zeros(1000, 4, dtype=torch.float64))
    with pytest.raises(GumbenchError, match="NaN or inf in the codebook"):
        est(z, lambda v: v.sum((-2, -1)), codebook=torch.full((1000, 4), math.nan))
    # the codebook's values are never read, and it gets no gradient
    book = torch.randn(1000, 4, generator=gen(7), requires_grad=True)
    out = est(z.requires_grad_(True), lambda v: v.sum((-2, -1)), codebook=book)
    out.surrogate.sum().backward()
    assert book.grad is None and torch.isfinite(z.grad).all()
    assert torch.equal(est(z, lambda v: v.sum((-2, -1)), codebook=torch.zeros(1000, 4)).value, out.value)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(4), r"\(\.\.\., G, D\)"),
    (torch.zeros(4, 0, 4), r"G, D >= 1"),
    (torch.zeros(3, 2, 4, dtype=torch.long), "float tensor"),
    (torch.tensor([[[0.0, math.nan, 0.0, 0.0]]]), "NaN or inf"),
    (torch.tensor([[[0.0, math.inf, 0.0, 0.0]]]), "NaN or inf"),
])
def test_bad_inputs_are_refused_with_one_line(bad, match):
    with pytest.raises(GumbenchError, match=match) as info:
        make_estimator("fsq")(bad, lambda v: v.sum((-2, -1)), codebook=torch.zeros(1000, 4))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec, match", [
    ("fsq[levels=8-5-2]", r"in \[3, 1000\].*got 2"),
    ("fsq[levels=1002]", r"in \[3, 1000\].*got 1002"),
    ("fsq[levels=8.5-5]", "integers joined by '-'"),
    ("fsq[levels=]", "integers joined by '-'"),
    ("fsq[levels=x]", "integers joined by '-'"),
    ("fsq[levels=64-64-64]", "at most 65,536, got 262,144"),
    ("fsq[levels=" + "-".join(["3"] * 17) + "]", "at most 16 dimensions, got 17"),
])
def test_invalid_levels_are_refused(spec, match):
    with pytest.raises(GumbenchError, match=match):
        make_estimator(spec)


def test_level_strings_are_parsed_and_a_single_level_works():
    assert make_estimator("fsq[levels=8-5-5-5]").levels == (8, 5, 5, 5)
    one = make_estimator("fsq[levels=8]")  # the registry reads 8 as an integer; it is taken as one dimension
    assert one.levels == (8,) and one.code_shape(1) == (8, 1)
    assert make_estimator("fsq[levels=1000]").codes == 1000
    assert make_estimator("fsq").spec == "fsq[levels=8-5-5-5]"


def test_empty_batch_gives_empty_outputs():
    out = make_estimator("fsq")(torch.zeros(0, 2, 4), lambda v: v.sum((-2, -1)), codebook=torch.zeros(1000, 4))
    assert out.value.shape == (0, 2, 4) and out.indices.shape == (0, 2) and out.surrogate.shape == (0,)


def test_trains_through_the_bottleneck_with_its_implicit_codebook():
    rows = train("logmel-vqvae[codes=1000,code_dim=4,batch=8,hidden=32,frames=16]", "fsq", steps=4, eval_every=4)
    assert len(rows) == 4
    assert rows["loss"].map(math.isfinite).all()
    assert (rows["grad_norm_model"] > 0).all()
    assert (rows["grad_norm_bottleneck_codebook"] == 0).all()  # the codebook is never read
    assert rows["used_fraction"].iloc[-1] > 0
