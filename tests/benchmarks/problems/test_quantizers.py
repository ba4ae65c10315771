"""The VQ gradient-statistics problems: their references are right, and the properties that must hold do.

vq-distance: the enumerated gradient of J_T (autograd of the enumerated sum) equals the closed form
(score part through the distance logits plus pathwise part through the decoded codes); as T -> 0, J_T is
the hard quantizer's loss; REINFORCE on the distance logits is unbiased for every T, in z and in the
codebook; straight-through VQ's gradient in z is the loss's gradient at the unquantized vector when the loss
is linear in the quantized vector. quantizer-smoothed: the Monte Carlo reference agrees, within its stated
error, with the exact smoothed gradient where that has a closed form (LFQ: independent signs; FSQ:
independent levels with Gaussian interval probabilities).
"""

import math

import pytest
import torch
from scipy.stats import chi2

from gumbench.benchmarks import make_task, problem_statistics
from gumbench.benchmarks.problems.enumeration import enumerate_configurations
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator


def closed_form(problem):
    """(grad z, grad E) of J_T for one stage: score part sum_j S_gj d(logit_gj), pathwise part at each code."""
    z, book, T = problem.z64, problem.codebook64, problem.params["T"]
    groups, codes = book.shape[:2]
    q = torch.softmax(-(z.unsqueeze(1) - book).pow(2).sum(-1) / T, -1)  # (G, K)
    index = enumerate_configurations(groups, codes)  # (N, G)
    rows = torch.arange(groups)
    p = q[rows, index].prod(-1)  # (N,)
    decoded = book[rows, index].clone().requires_grad_(True)  # (N, G, D)
    losses = problem.decoded_loss(decoded)
    (dl,) = torch.autograd.grad(losses.sum(), decoded)
    losses = losses.detach()
    onehot = torch.nn.functional.one_hot(index, codes).double()  # (N, G, K)
    score = torch.einsum("n,ngk->gk", p * losses, onehot - q)  # dJ / d logit_gk
    diff = z.unsqueeze(1) - book  # (G, K, D)
    grad_z = (score.unsqueeze(-1) * (-2 * diff / T)).sum(1)
    pathwise = torch.einsum("n,ngk,ngd->gkd", p, onehot, dl)
    grad_book = score.unsqueeze(-1) * (2 * diff / T) + pathwise
    return grad_z, grad_book, float((p * losses).sum())


@pytest.mark.parametrize("spec", ["vq-distance", "vq-distance[T=0.1,encoder=mlp,loss=cross-entropy]",
                                  "vq-distance[T=10,decoder=linear,loss=linear,groups=3,codes=8,dim=2,seed=3]"])
def test_enumerated_gradient_equals_the_closed_form(spec):
    grad_z, grad_book, value = closed_form(make_task(spec))
    for wrt, expected in (("z", grad_z), ("codebook", grad_book)):
        problem = make_task(spec).with_params(wrt=wrt)
        reference, expectation, error = problem.reference()
        assert error is None and expectation == pytest.approx(value, rel=1e-12)
        torch.testing.assert_close(reference, expected, rtol=1e-9, atol=1e-12)


def test_two_stage_probabilities_sum_to_one_and_follow_the_residual():
    problem = make_task("vq-distance[stages=2,codes=8]")
    log_p, decoded = problem.code_tables(problem.z64, problem.codebook64)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(problem.params["groups"], dtype=torch.float64))
    # choice (k1, k2) with k1 major decodes to e1_k1 + e2_k2 (rows k1 of the first half, k2 of the second)
    book = problem.codebook64
    torch.testing.assert_close(decoded[:, 1 * 4 + 3], book[:, 1] + book[:, 4 + 3])


@pytest.mark.parametrize("stages, quantizer", [(1, "vq-commitment"), (2, "residual-vq[stages=2]")])
def test_as_T_goes_to_zero_J_is_the_hard_quantizers_loss(stages, quantizer):
    problem = make_task(f"vq-distance[stages={stages},T=0.001]")
    _, value = make_estimator(quantizer).quantize(problem.z64.unsqueeze(0), problem.codebook64)
    hard = float(problem.decoded_loss(value)[0])
    assert problem.expectation(problem.z64, problem.codebook64).item() == pytest.approx(hard, rel=1e-9)
    # the gradient in z vanishes (the nearest code does not move with z); in E it is dL/de at the chosen codes
    assert float(problem.with_params(wrt="z").reference()[0].norm()) < 1e-12 * hard
    codes = (
        make_estimator(quantizer).quantize(problem.z64.unsqueeze(0), problem.codebook64)[0][0] if stages == 1 else None
    )
    if codes is not None:
        decoded = problem.codebook64[torch.arange(2), codes].clone().requires_grad_(True)
        (dl,) = torch.autograd.grad(problem.decoded_loss(decoded), decoded)
        expected = torch.zeros_like(problem.codebook64)
        expected[torch.arange(2), codes] = dl
        torch.testing.assert_close(problem.with_params(wrt="codebook").reference()[0], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("T", [10.0, 1.0, 0.1])
@pytest.mark.parametrize("wrt", ["z", "codebook"])
def test_reinforce_on_distance_logits_is_unbiased_for_every_T(T, wrt):
    problem = make_task(f"vq-distance[T={T},wrt={wrt}]")
    stats = problem_statistics("reinforce[baseline=loo]", problem, samples=20_000, seed=1, confidence=0.999)
    assert stats.bias.low == 0.0, f"REINFORCE's bias interval {stats.bias} excludes 0"
    # per coordinate with a variance: the squared standardized errors of the mean sum to a chi-square
    variance, deviation = stats.coordinate_variance.flatten(), (stats.mean_gradient - stats.exact_gradient).flatten()
    live = variance > 1e-8 * float(variance.max())
    statistic = float((deviation[live].pow(2) / (variance[live] / stats.samples)).sum())
    assert statistic < chi2.ppf(0.999, int(live.sum())), statistic


def test_the_unbiasedness_check_has_power_a_relaxation_fails_it():
    stats = problem_statistics("st-gumbel", make_task("vq-distance"), samples=20_000, seed=1, confidence=0.999)
    assert stats.bias.low > 0.1 * stats.exact_norm


def test_straight_through_is_the_gradient_at_the_unquantized_vector_when_the_loss_is_linear_in_it():
    problem = make_task("vq-distance[decoder=linear,loss=linear]")
    estimates = problem.draw(make_estimator("vq-commitment"), 5, torch.Generator().manual_seed(0))
    z = problem.z.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(problem.decoded_loss(z), z)
    torch.testing.assert_close(estimates, expected.double().flatten().expand(5, -1))
    # with a nonlinear decoder it is the gradient at the chosen code instead, which differs
    curved = make_task("vq-distance")
    z = curved.z.clone().requires_grad_(True)
    (at_z,) = torch.autograd.grad(curved.decoded_loss(z), z)
    assert not torch.allclose(
        curved.draw(make_estimator("vq-commitment"), 1, None)[0], at_z.double().flatten(), rtol=1e-3
    )


@pytest.mark.parametrize("name", ["vq-commitment[rotation=true]", "ibq", "simvq"])
@pytest.mark.parametrize("wrt", ["z", "codebook"])
def test_batched_rows_equal_one_row_at_a_time(name, wrt):
    problem = make_task(f"vq-distance[wrt={wrt}]")
    batched = problem.draw(make_estimator(name), 4, torch.Generator().manual_seed(0))
    single = problem.draw(make_estimator(name), 1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(batched, single.expand(4, -1), rtol=1e-5, atol=1e-6)  # float32 sums in another order


def test_nsvq_rows_are_independent_draws():
    problem = make_task("vq-distance")
    rows = problem.draw(make_estimator("nsvq"), 64, torch.Generator().manual_seed(0))
    assert torch.unique(rows, dim=0).shape[0] == 64


def exact_smoothed_lfq(problem):
    """J_sigma for LFQ: each coordinate's sign is +1 with probability Phi(z / sigma), independently."""
    z = problem.z64.clone().requires_grad_(True)
    sigma = problem.params["sigma"]
    groups, dim = z.shape
    plus = torch.special.ndtr(z / sigma).flatten()  # (G D,)
    signs = enumerate_configurations(groups * dim, 2).double()  # (2^(G D), G D) of 0/1
    p = (signs * plus + (1 - signs) * (1 - plus)).prod(-1)
    values = (2 * signs - 1).reshape(-1, groups, dim)
    (grad,) = torch.autograd.grad((p * problem.decoded_loss(values)).sum(), z)
    return grad


def exact_smoothed_fsq(problem):
    """J_sigma for FSQ (one group): each coordinate lands on level r with the Gaussian mass of the interval of
    z-values that its bound rounds to r (the bound is increasing, so the interval ends are its inverse at r +- 1/2)."""
    fsq = problem.quantizer
    z = problem.z64.clone().requires_grad_(True)
    sigma = problem.params["sigma"]
    half_width, half_range, offset, shift = fsq._constants(torch.float64, z.device)
    per_dim = []
    for i, level_count in enumerate(fsq.levels):
        r = torch.arange(level_count, dtype=torch.float64) - half_width[i]
        lo = torch.atanh(((r - 0.5 + offset[i]) / half_range[i]).clamp(-1, 1)) - shift[i]
        hi = torch.atanh(((r + 0.5 + offset[i]) / half_range[i]).clamp(-1, 1)) - shift[i]
        lo[0], hi[-1] = -math.inf, math.inf
        mass = torch.special.ndtr((hi - z[0, i]) / sigma) - torch.special.ndtr((lo - z[0, i]) / sigma)
        per_dim.append((mass, r / half_width[i]))
    digits = enumerate_configurations(len(fsq.levels), max(fsq.levels))
    digits = digits[(digits < torch.tensor(fsq.levels)).all(-1)]
    p = torch.stack([per_dim[i][0][digits[:, i]] for i in range(len(fsq.levels))], -1).prod(-1)
    values = torch.stack([per_dim[i][1][digits[:, i]] for i in range(len(fsq.levels))], -1).unsqueeze(1)
    (grad,) = torch.autograd.grad((p * problem.decoded_loss(values)).sum(), z)
    return grad


@pytest.mark.parametrize(
    "spec, exact",
    [
        ("quantizer-smoothed[quantizer=lfq,sigma=0.3,reference_samples=262144]", exact_smoothed_lfq),
        ("quantizer-smoothed[quantizer=lfq,sigma=1,reference_samples=262144,loss=cross-entropy]", exact_smoothed_lfq),
        ("quantizer-smoothed[quantizer=fsq,groups=1,sigma=0.2,reference_samples=262144]", exact_smoothed_fsq),
        (
            "quantizer-smoothed[quantizer=fsq,groups=1,levels=3-4-5-6,sigma=0.5,reference_samples=262144]",
            exact_smoothed_fsq,
        ),
    ],
)
def test_the_monte_carlo_reference_agrees_with_the_exact_smoothed_gradient_within_its_error(spec, exact):
    problem = make_task(spec)
    reference, _, error = problem.reference()
    truth = exact(problem)
    # the reference's error is a mean of many independent terms: about Gaussian, with E||err||^2 = error^2;
    # its norm exceeds 3 x error with tiny probability for these 4-8 coordinates
    assert 0 < error < 0.05 * float(truth.norm())
    assert float((reference - truth).norm()) < 3 * error, (float((reference - truth).norm()), error)


def test_incompatible_estimators_are_refused_with_the_reason():
    with pytest.raises(GumbenchError, match="implicit"):
        problem_statistics("fsq", "vq-distance", samples=100)
    with pytest.raises(GumbenchError, match="stages=2"):
        problem_statistics("st-gumbel", "vq-distance[stages=2]", samples=100)
    with pytest.raises(GumbenchError, match=r"two books of codes/2 \(residual-vq's split=sum\)"):
        problem_statistics("residual-vq[stages=2,split=product]", "vq-distance[stages=2]", samples=100)
    with pytest.raises(GumbenchError, match="own straight-through"):
        problem_statistics("st-gumbel", "quantizer-smoothed", samples=100)
    with pytest.raises(GumbenchError, match="levels"):
        problem_statistics("fsq[levels=8-5-5-5]", "quantizer-smoothed[quantizer=fsq]", samples=100)
    with pytest.raises(GumbenchError, match="65,536"):
        make_task("vq-distance[codes=300]")
    with pytest.raises(GumbenchError, match="dim=2"):
        make_task("quantizer-smoothed[quantizer=fsq,levels=5-5]")


def test_default_estimators_run_and_deterministic_ones_have_no_variance():
    problem = make_task("vq-distance[T=0.1,stages=1]")
    names = problem.default_estimators()
    assert {
        "vq-commitment",
        "vq-commitment[rotation=true]",
        "nsvq",
        "ibq",
        "simvq",
        "st-gumbel",
        "reinforce[baseline=loo]",
    } <= set(names)
    assert "disarm" not in names  # it needs two categories
    for name in ("vq-commitment", "ibq"):
        stats = problem_statistics(name, problem, samples=200)
        assert stats.total_variance.value == 0.0 and stats.snr is None
    # straight-through VQ passes no downstream gradient to the codes: a zero estimate, relative bias exactly 1
    stats = problem_statistics("vq-commitment", problem.with_params(wrt="codebook"), samples=200)
    assert stats.relative_bias.value == 1.0 and float(stats.mean_gradient.abs().max()) == 0.0
    assert (
        stats.total_variance.value == 0.0 and stats.cosine is None and stats.snr is None
    )  # a zero mean has no direction
    assert stats.mse.value == pytest.approx(stats.exact_norm**2, rel=1e-12)


def test_a_reference_gradient_at_rounding_level_is_refused():
    with pytest.raises(GumbenchError, match="zero to rounding"):
        problem_statistics("straight-through", "vq-distance[T=0.01]", samples=100)
    problem_statistics("straight-through", "vq-distance[T=0.01,wrt=codebook]", samples=100)  # the codebook's is not


@pytest.mark.parametrize(
    "spec",
    [
        "vq-commitment[ema=true]",
        "vq-commitment[init=kmeans]",
        "vq-commitment[restart=true]",
        "vq-commitment[cosine=true]",
        "residual-vq[stages=2,quantizer=vq-commitment[ema=true]]",
    ],
)
def test_codebook_care_that_rewrites_or_renormalizes_the_codebook_is_refused(spec):
    problem = "vq-distance[stages=2]" if spec.startswith("residual") else "vq-distance"
    with pytest.raises(GumbenchError, match="codebook|angle"):
        problem_statistics(spec, problem, samples=100)
