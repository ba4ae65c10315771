"""LFQ and BSQ: agreement with vector-quantize-pytorch's LFQ (and LFQ(spherical=True) where it
matches BSQ), the paper formulas written out in float64, the index layout, the checks, and short
training runs."""

import itertools
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


def ours(spec, x, weights):
    est = make_estimator(spec)
    z = x.detach().clone().requires_grad_(True)
    out = est(z, weighted_sum(weights.to(x.dtype)), codebook=torch.zeros(2 ** x.shape[-1], x.shape[-1], dtype=x.dtype))
    out.surrogate.mean().backward()
    return out, z.grad


def oracle(x, weights, *, entropy_weight, commitment, gamma, inv_temperature, spherical=False):
    """vector-quantize-pytorch's LFQ, one codebook per group, no projection (dim = G x D): quantized,
    indices, input gradient of mean(loss) + aux_loss, and the loss breakdown."""
    vqp = require_package("vector_quantize_pytorch")
    n, groups, dim = x.shape
    module = vqp.LFQ(
        codebook_size=2**dim,
        num_codebooks=groups,
        keep_num_codebooks_dim=True,
        entropy_loss_weight=entropy_weight,
        commitment_loss_weight=commitment,
        diversity_gamma=gamma,
        spherical=spherical,
    )
    assert not module.has_projections
    z = x.detach().clone().reshape(1, n, groups * dim).requires_grad_(True)
    (value, indices, aux_loss), breakdown = module(z, inv_temperature=inv_temperature, return_loss_breakdown=True)
    value = value.reshape(n, groups, dim)
    ((value * weights).sum((-2, -1)).mean() + aux_loss).backward()
    return value, indices.reshape(n, groups), z.grad.reshape(n, groups, dim), aux_loss, breakdown


LFQ_SETTINGS = [
    dict(entropy_weight=0.1, commitment=0.25, gamma=1.0, inv_temperature=100.0),  # the defaults
    dict(entropy_weight=0.3, commitment=0.5, gamma=0.7, inv_temperature=2.0),  # soft: entropy gradients everywhere
]


@pytest.mark.parametrize("setting", LFQ_SETTINGS)
@pytest.mark.parametrize("groups, dim", [(2, 4), (1, 6), (3, 1)])
def test_lfq_agrees_with_vector_quantize_pytorch(setting, groups, dim):
    x = torch.randn(256, groups, dim, generator=gen(0))
    weights = torch.randn(groups, dim, generator=gen(1))
    spec = (f"lfq[entropy_weight={setting['entropy_weight']},commitment={setting['commitment']},"
            f"diversity_gamma={setting['gamma']},inv_temperature={setting['inv_temperature']}]")
    out, grad = ours(spec, x, weights)
    value, indices, ref_grad, aux_loss, breakdown = oracle(x, weights, **setting)
    torch.testing.assert_close(out.value, value, rtol=0, atol=1e-6)
    assert torch.equal(out.indices, indices.long())
    # per-row aux terms average to vector-quantize-pytorch's batch losses
    torch.testing.assert_close(
        out.aux["commitment"].mean(), setting["commitment"] * breakdown.commitment, rtol=1e-5, atol=1e-7
    )
    expected_entropy = setting["entropy_weight"] * (
        breakdown.per_sample_entropy - setting["gamma"] * breakdown.batch_entropy
    )
    torch.testing.assert_close(out.aux["entropy"].mean(), expected_entropy, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sum(a.mean() for a in out.aux.values()), aux_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7)


def hand_lfq(z, upstream, *, entropy_weight, commitment, gamma, inv_temperature):
    """MAGVIT-v2's LFQ written out in float64 over the enumerated codes: per-row surrogate and aux."""
    n, groups, dim = z.shape
    codes = torch.tensor(
        list(itertools.product([-1.0, 1.0], repeat=dim)), dtype=torch.float64
    )  # row k = code k, MSB first
    q = torch.where(z > 0, 1.0, -1.0).double()
    value = z + (q - z).detach()
    p = torch.softmax(2 * inv_temperature * z @ codes.T, dim=-1)  # (N, G, K)

    def entropy(probs):
        return -(probs * torch.log(torch.clamp(probs, min=1e-5))).sum(-1)

    per_row = entropy(p).mean(-1)
    batch = entropy(p.mean(0)).mean()
    aux = {
        "entropy": entropy_weight * (per_row - gamma * batch),
        "commitment": commitment * ((z - q) ** 2).mean((-2, -1)),
    }
    return value, (value * upstream).sum((-2, -1)) + aux["entropy"] + aux["commitment"], aux


def test_lfq_per_row_terms_and_gradients_match_the_formulas_in_float64():
    setting = LFQ_SETTINGS[1]
    z = torch.randn(64, 2, 3, generator=gen(2), dtype=torch.float64)
    upstream = torch.randn(2, 3, generator=gen(3), dtype=torch.float64)
    spec = (f"lfq[entropy_weight={setting['entropy_weight']},commitment={setting['commitment']},"
            f"diversity_gamma={setting['gamma']},inv_temperature={setting['inv_temperature']}]")
    out, grad = ours(spec, z, upstream)
    hand_z = z.clone().requires_grad_(True)
    value, surrogate, aux = hand_lfq(hand_z, upstream, **setting)
    surrogate.mean().backward()
    torch.testing.assert_close(out.value, value.detach(), rtol=0, atol=0)
    for key in ("entropy", "commitment"):
        torch.testing.assert_close(out.aux[key], aux[key].detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, hand_z.grad, rtol=1e-10, atol=1e-13)


def test_lfq_straight_through_gradient_is_the_identity_and_values_are_signs():
    z = torch.randn(100, 2, 5, generator=gen(4)).requires_grad_(True)
    upstream = torch.randn(2, 5, generator=gen(5))
    out = make_estimator("lfq[entropy_weight=0,commitment=0]")(
        z, weighted_sum(upstream), codebook=torch.zeros(2, 32, 5)
    )
    out.surrogate.sum().backward()
    assert torch.equal(z.grad, upstream.expand_as(z))
    assert torch.equal(out.value, torch.where(z > 0, 1.0, -1.0))


def paper_bsq(z, upstream, *, entropy_weight, commitment, gamma, inv_temperature):
    """BSQ (Zhao et al. 2024) written out in float64: u = z/|z|, q = sign(u)/sqrt(D), straight through at
    u; bit probabilities sigmoid(4 tau u_d / sqrt(D)); per-sample entropy sum_d H_b(p_d); the batch
    entropy factorized, sum_d H_b(mean p_d); commitment mean (u - q)^2. Per-row surrogate and aux."""
    dim = z.shape[-1]
    u = z / z.norm(dim=-1, keepdim=True)
    q = torch.where(u > 0, 1.0, -1.0).double() / math.sqrt(dim)
    value = u + (q - u).detach()
    p = torch.sigmoid(4 * inv_temperature * u / math.sqrt(dim))

    def binary_entropy(probs):
        return -(probs * torch.log(probs) + (1 - probs) * torch.log(1 - probs))

    per_row = binary_entropy(p).sum(-1).mean(-1)
    batch = binary_entropy(p.mean(0)).sum(-1).mean()
    aux = {
        "entropy": entropy_weight * (per_row - gamma * batch),
        "commitment": commitment * ((u - q) ** 2).mean((-2, -1)),
    }
    return value, (value * upstream).sum((-2, -1)) + aux["entropy"] + aux["commitment"], aux


@pytest.mark.parametrize("spec, setting", [
    ("bsq", dict(entropy_weight=0.1, commitment=0.0, gamma=1.0, inv_temperature=1.0)),  # the defaults
    ("bsq[entropy_weight=0.5,commitment=0.25,diversity_gamma=0.8,inv_temperature=3]",
     dict(entropy_weight=0.5, commitment=0.25, gamma=0.8, inv_temperature=3.0)),
])
def test_bsq_matches_the_paper_formulas_in_float64(spec, setting):
    z = torch.randn(128, 2, 4, generator=gen(6), dtype=torch.float64)
    upstream = torch.randn(2, 4, generator=gen(7), dtype=torch.float64)
    out, grad = ours(spec, z, upstream)
    hand_z = z.clone().requires_grad_(True)
    value, surrogate, aux = paper_bsq(hand_z, upstream, **setting)
    surrogate.mean().backward()
    torch.testing.assert_close(out.value, value.detach(), rtol=0, atol=1e-15)
    for key in ("entropy", "commitment"):
        torch.testing.assert_close(out.aux[key], aux[key].detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, hand_z.grad, rtol=1e-10, atol=1e-13)


def test_bsq_agrees_with_vector_quantize_pytorch_spherical_lfq_where_the_methods_coincide():
    x = torch.randn(256, 2, 4, generator=gen(8))
    weights = torch.randn(2, 4, generator=gen(9))
    # without the entropy penalty: values, indices, commitment and gradients are the same method
    out, grad = ours("bsq[entropy_weight=0,commitment=0.25]", x, weights)
    value, indices, ref_grad, _, breakdown = oracle(x, weights, entropy_weight=0.0, commitment=0.25, gamma=1.0,
                                                    inv_temperature=1.0, spherical=True)
    torch.testing.assert_close(out.value, value, rtol=0, atol=1e-6)
    assert torch.equal(out.indices, indices.long())
    torch.testing.assert_close(out.aux["commitment"].mean(), 0.25 * breakdown.commitment, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-7)
    # the per-sample entropy is the same (the soft distribution factorizes exactly; at tau = 1, D = 4
    # every code's probability is far above vector-quantize-pytorch's 1e-5 clamp)
    with_entropy, _ = ours("bsq[entropy_weight=1,diversity_gamma=0]", x, weights)
    torch.testing.assert_close(with_entropy.aux["entropy"].mean(), breakdown.per_sample_entropy, rtol=1e-5, atol=1e-6)
    # the batch entropy is the paper's factorized sum over bits: an upper bound on the joint entropy
    # that vector-quantize-pytorch computes, strictly above it here (the bits are correlated through |u| = 1)
    both, _ = ours("bsq[entropy_weight=1,diversity_gamma=1]", x, weights)
    factorized = breakdown.per_sample_entropy - both.aux["entropy"].mean()
    assert factorized - breakdown.batch_entropy > 1e-4


def test_bsq_batch_entropy_equals_vector_quantize_pytorch_for_one_bit():
    x = torch.randn(256, 3, 1, generator=gen(10))
    weights = torch.randn(3, 1, generator=gen(11))
    out, grad = ours("bsq[entropy_weight=0.4,diversity_gamma=0.6,inv_temperature=0.5]", x, weights)
    _, _, ref_grad, aux_loss, _ = oracle(
        x, weights, entropy_weight=0.4, commitment=0.0, gamma=0.6, inv_temperature=0.5, spherical=True
    )
    torch.testing.assert_close(out.aux["entropy"].mean(), aux_loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_bsq_straight_through_gradient_goes_through_the_normalization():
    z = torch.randn(50, 2, 6, generator=gen(12), dtype=torch.float64).requires_grad_(True)
    upstream = torch.randn(2, 6, generator=gen(13), dtype=torch.float64)
    out = make_estimator("bsq[entropy_weight=0]")(
        z, weighted_sum(upstream), codebook=torch.zeros(64, 6, dtype=torch.float64)
    )
    out.surrogate.sum().backward()
    norm = z.detach().norm(dim=-1, keepdim=True)
    u = z.detach() / norm
    expected = (upstream - u * (u * upstream).sum(-1, keepdim=True)) / norm  # (I - u u^T) upstream / |z|
    torch.testing.assert_close(z.grad, expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(out.value.abs(), torch.full_like(out.value, 1 / math.sqrt(6)), rtol=0, atol=1e-15)
    torch.testing.assert_close(out.value.norm(dim=-1), torch.ones(50, 2, dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["lfq", "bsq"])
def test_indices_read_the_bits_first_dimension_most_significant_and_round_trip(name):
    est = make_estimator(name)
    with pytest.raises(GumbenchError, match="pass dim=D"):  # D is not known before any vectors
        est.index_digits(torch.tensor([3]))
    assert est.index_digits(torch.tensor([3]), dim=3).tolist() == [[0, 1, 1]]
    z = torch.randn(500, 2, 5, generator=gen(14))
    z[0, 0] = torch.tensor([0.0, 1.0, 0.0, 0.0, 2.0])  # an entry of exactly 0 counts as negative
    out = est(z, lambda v: v.sum((-2, -1)), codebook=torch.zeros(32, 5))
    assert est.levels == (2,) * 5  # from now on D = 5 is the default
    assert torch.equal(est.index_digits(out.indices), est.index_digits(out.indices, dim=5))
    bits = est.index_digits(out.indices, dim=5)
    assert torch.equal(bits, (z > 0).long())
    assert out.indices[0, 0] == 0b01001
    assert torch.equal(bits @ torch.tensor([16, 8, 4, 2, 1]), out.indices)
    assert torch.equal(est.index_digits(torch.arange(32), dim=5) @ torch.tensor([16, 8, 4, 2, 1]), torch.arange(32))
    assert torch.equal(est.assign_codes(z, torch.zeros(32, 5)), out.indices)
    assert est.digit_levels(5) == (2,) * 5
    with pytest.raises(GumbenchError, match=r"integer in \[1, 16\]"):
        est.index_digits(out.indices, dim=17)


@pytest.mark.parametrize("name", ["lfq", "bsq"])
def test_codebook_shape_checks_say_what_to_set(name):
    est = make_estimator(name)
    z = torch.randn(5, 2, 4)
    with pytest.raises(GumbenchError, match="codes=16 and code dimension 4"):
        est(z, lambda v: v.sum((-2, -1)), codebook=torch.zeros(2, 8, 4))
    with pytest.raises(GumbenchError, match="does not fit"):
        est(z, lambda v: v.sum((-2, -1)), codebook=torch.zeros(16, 3))
    with pytest.raises(GumbenchError, match="at most D = 16"):
        est(torch.randn(1, 1, 17), lambda v: v.sum((-2, -1)), codebook=torch.zeros(2**17, 17))
    with pytest.raises(GumbenchError, match="NaN or inf"):
        est(torch.full((1, 2, 4), math.nan), lambda v: v.sum((-2, -1)), codebook=torch.zeros(16, 4))
    with pytest.raises(GumbenchError, match="float tensor"):
        est(torch.zeros(1, 2, 4, dtype=torch.long), lambda v: v.sum((-2, -1)), codebook=torch.zeros(16, 4))
    with pytest.raises(GumbenchError, match=r"max \|input\| must be at most"):
        est(torch.full((1, 2, 4), 1e20), lambda v: v.sum((-2, -1)), codebook=torch.zeros(16, 4))


def test_lfq_refuses_a_soft_distribution_beyond_the_memory_bound():
    with pytest.raises(GumbenchError, match="probabilities, at most"):
        make_estimator("lfq")(torch.randn(2048, 1, 16), lambda v: v.sum((-2, -1)), codebook=torch.zeros(2**16, 16))


@pytest.mark.parametrize("name", ["lfq", "bsq"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_fp32(name, dtype):
    x = torch.randn(64, 2, 4, generator=gen(15)).to(dtype)
    weights = torch.randn(2, 4, generator=gen(16)).to(dtype).float()  # the same upstream gradient in both dtypes
    out, grad = ours(name, x, weights)
    ref, ref_grad = ours(name, x.float(), weights)
    assert out.value.dtype == dtype and grad.dtype == dtype and out.aux["entropy"].dtype == torch.float32
    assert torch.equal(out.value, ref.value.to(dtype)) and torch.equal(out.indices, ref.indices)
    torch.testing.assert_close(grad, ref_grad.to(dtype))
    torch.testing.assert_close(out.aux["entropy"], ref.aux["entropy"])


def test_bsq_vectors_near_zero_keep_finite_gradients():
    z = torch.full((3, 1, 4), 1e-30, requires_grad=True)
    out = make_estimator("bsq")(z, lambda v: v.sum((-2, -1)), codebook=torch.zeros(16, 4))
    out.surrogate.sum().backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(out.surrogate).all()


@pytest.mark.parametrize("name", ["lfq", "bsq"])
def test_eval_mode_gives_the_same_output_and_the_empty_batch_is_empty(name):
    z = torch.randn(32, 2, 3, generator=gen(17))
    book = torch.zeros(8, 3)
    train_out = make_estimator(name)(z, lambda v: v.sum((-2, -1)), codebook=book)
    eval_out = make_estimator(name).eval()(z, lambda v: v.sum((-2, -1)), codebook=book)
    assert torch.equal(train_out.value, eval_out.value) and torch.equal(train_out.surrogate, eval_out.surrogate)
    empty = make_estimator(name)(torch.zeros(0, 2, 3), lambda v: v.sum((-2, -1)), codebook=book)
    assert (
        empty.surrogate.shape == (0,)
        and empty.indices.shape == (0, 2)
        and all(a.shape == (0,) for a in empty.aux.values())
    )


@pytest.mark.parametrize("name", ["lfq", "bsq[commitment=0.25]"])
def test_trains_through_the_bottleneck(name):
    rows = train("logmel-vqvae[codes=16,code_dim=4,batch=8,hidden=32,frames=16]", name, steps=4, eval_every=4)
    assert len(rows) == 4
    for column in ("loss", "loss_entropy", "loss_commitment"):
        assert rows[column].map(math.isfinite).all(), column
    assert (rows["grad_norm_model"] > 0).all() and (rows["grad_norm_bottleneck_codebook"] == 0).all()
