"""IndeCateR / CatLog: the backward is sum_g J(p_g) f_g by explicit substitution, unbiased with the enumerated
variance matching the sampled one on losses that couple the groups, never above REINFORCE's per coordinate, exact
(zero variance) on the separable toys; parameters inside loss_fn get the Rao-Blackwellized pathwise gradient,
unbiased."""

import pytest
import torch

import gumbench.estimators.indecater as indecater
from gumbench.benchmarks import exact_gradient, gradient_statistics, make_task
from gumbench.benchmarks.problems.enumeration import enumerate_configurations
from gumbench.estimators import make_estimator
from gumbench.kernels.reference import sample_categorical
from tests.estimators.enumeration import LEVEL, SAMPLES, check_against_enumeration, reinforce_variance_closed_form


def gen(seed):
    return torch.Generator().manual_seed(seed)


def coupled_quadratic(groups, categories, seed=0):
    """f(y) = (c . y)^2: quadratic with cross terms between every pair of groups."""
    c = torch.randn(groups, categories, generator=gen(seed))
    return lambda y: (y * c.to(y.dtype)).sum((-2, -1)).pow(2)


def coupled_cubic(y):
    """(sum_i z_i - 1.3)^3 on binary groups, z_i = y[..., i, 1]: no group's effect is separable from the others'."""
    return (y[..., 1].sum(-1) - 1.3).pow(3)


def substituted(index, loss, categories):
    """f(x with group g set to k) for every row of ``index`` (N, G): shape (N, G, V), one substitution at a time."""
    f = []
    for g in range(index.shape[-1]):
        row = []
        for k in range(categories):
            sub = index.clone()
            sub[..., g] = k
            row.append(loss(torch.nn.functional.one_hot(sub, categories).double()))
        f.append(torch.stack(row, -1))
    return torch.stack(f, -2)


def indecater_formula(p, index, loss):
    """sum_k grad p_g(k) f(x_{-g}, k) = J(p_g) f_g per group."""
    f = substituted(index, loss, p.shape[-1])
    return p * f - p * (p * f).sum(-1, keepdim=True)


def enumerate_indecater(logits, loss):
    """Exact mean and per-coordinate variance of the one-draw estimator, over every configuration."""
    logits = logits.double()
    groups, categories = logits.shape
    index = enumerate_configurations(groups, categories)
    p = torch.softmax(logits, -1)
    weight = p.gather(-1, index.T).prod(0)[:, None, None]
    est = indecater_formula(p.expand(len(index), groups, categories), index, loss)
    mean = (weight * est).sum(0)
    return mean, (weight * (est - mean).pow(2)).sum(0)


def test_backward_is_the_substitution_formula():
    logits = torch.randn(48, 3, 4, generator=gen(0), dtype=torch.float64)
    logits[:6, 1, 2] = -float("inf")
    loss = coupled_quadratic(3, 4)
    leaf = logits.clone().requires_grad_(True)
    out = make_estimator("indecater")(leaf, loss, generator=gen(1))
    out.surrogate.sum().backward()
    assert torch.equal(out.indices, sample_categorical(logits, gen(1)))
    torch.testing.assert_close(out.loss, loss(out.value))  # the loss at the draw itself
    torch.testing.assert_close(leaf.grad, indecater_formula(torch.softmax(logits, -1), out.indices, loss))
    assert (leaf.grad[:6, 1, 2] == 0).all()


def test_several_draws_average_their_estimates_and_blocks_change_nothing(monkeypatch):
    logits = torch.randn(16, 2, 5, generator=gen(2), dtype=torch.float64)
    loss = coupled_quadratic(2, 5, seed=1)
    shapes = []

    def counted(y):
        shapes.append(tuple(y.shape))
        return loss(y)

    def run():
        leaf = logits.clone().requires_grad_(True)
        out = make_estimator("indecater[samples=3]")(leaf, counted, generator=gen(3))
        out.surrogate.sum().backward()
        return out, leaf.grad

    out, grad = run()
    assert shapes == [(2 * 5 * 3, 16, 2, 5)], "one call: every substitution of every draw, one extra leading dimension"
    assert out.indices.shape == (3, 16, 2) and out.value.shape == (3, 16, 2, 5)
    p = torch.softmax(logits, -1)
    expected = torch.stack([indecater_formula(p, out.indices[s], loss) for s in range(3)]).mean(0)
    torch.testing.assert_close(grad, expected)
    shapes.clear()
    monkeypatch.setattr(indecater, "SUBSTITUTION_ELEMENTS", 3 * 16 * 2 * 5 * 4)  # four substitutions a call
    blocked, blocked_grad = run()
    assert [s[0] for s in shapes] == [12, 12, 6] and torch.equal(blocked.indices, out.indices)
    torch.testing.assert_close(blocked_grad, grad, rtol=0, atol=0)


@pytest.mark.parametrize("task, loss", [("categorical[groups=3,categories=4]", coupled_quadratic(3, 4)),
                                        ("polynomial[L=4,p=2]", coupled_cubic)])
def test_unbiased_with_the_enumerated_variance_on_coupled_losses(task, loss):
    toy = make_task(task)
    mean, variance = enumerate_indecater(toy.logits, loss)
    exact, _ = exact_gradient(toy.logits.double(), loss)  # losses in float64 too
    torch.testing.assert_close(mean, exact, rtol=0, atol=1e-9 * float(exact.abs().max()))  # an identity
    assert float(variance.sum()) > 1e-3 * float(exact.norm()) ** 2  # a loss that couples groups leaves variance
    # the Rao-Blackwellization of REINFORCE (group g's coordinates conditioned on x_{-g}): never more variance
    assert (variance <= reinforce_variance_closed_form(toy.logits, loss) + 1e-12).all()
    s = gradient_statistics("indecater", toy.logits, loss, SAMPLES, seed=4, confidence=LEVEL)
    assert s.bias.low == 0.0, s.bias
    check_against_enumeration(s, mean, variance)


@pytest.mark.parametrize("task", ["categorical", "categorical[loss=linear]", "bernoulli", "polynomial[p=3]"])
def test_exact_on_separable_losses(task):
    """Every toy's loss is a sum over groups, f = sum_g f_g(x_g): f(x_{-g}, k) = const + f_g(k) and J(p_g) const = 0, so
    the estimate is J(p_g) f_g, the exact gradient, whatever the draw (up to float32 rounding of the losses)."""
    toy = make_task(task)
    s = gradient_statistics("indecater", toy.logits, toy.loss, 2000, seed=5)
    assert s.total_variance.value <= (1e-5 * s.exact_norm) ** 2, s.total_variance
    assert s.bias.value <= 1e-5 * s.exact_norm, s.bias


def codebook_loss(codebook, target):
    """||sum_g y_g E_g - target||^2: the one-hot of each group selects a row of its codebook E_g (G, V, D)."""
    return lambda y: (torch.einsum("...gv,gvd->...d", y, codebook) - target).pow(2).sum(-1)


def test_parameters_inside_loss_fn_get_the_rao_blackwellized_pathwise_gradient():
    groups, categories, dim = 3, 4, 2
    logits = torch.randn(40, groups, categories, generator=gen(6), dtype=torch.float64)
    codebook = torch.randn(groups, categories, dim, generator=gen(7), dtype=torch.float64, requires_grad=True)
    target = torch.randn(dim, generator=gen(8), dtype=torch.float64)
    loss = codebook_loss(codebook, target)
    leaf = logits.clone().requires_grad_(True)
    out = make_estimator("indecater")(leaf, loss, generator=gen(9))
    out.surrogate.sum().backward()
    p = torch.softmax(logits, -1)
    # (1/G) sum_g sum_k p_g(k) grad_E f(x_{-g}, k), summed over the rows
    expected = torch.autograd.grad((p * substituted(out.indices, loss, categories)).sum() / groups, codebook)[0]
    torch.testing.assert_close(codebook.grad, expected)
    detached = codebook_loss(codebook.detach(), target)  # the logits' gradient is IndeCateR's, whatever loss_fn holds
    torch.testing.assert_close(leaf.grad, indecater_formula(p, out.indices, detached))


def test_the_pathwise_gradient_is_unbiased():
    """By enumeration (an identity) and by sampling: the mean of 20 batches of 1,000 rows within 4 standard errors."""
    groups, categories, dim = 2, 3, 2
    logits = torch.randn(groups, categories, generator=gen(10), dtype=torch.float64)
    codebook = torch.randn(groups, categories, dim, generator=gen(11), dtype=torch.float64, requires_grad=True)
    target = torch.randn(dim, generator=gen(12), dtype=torch.float64)
    loss = codebook_loss(codebook, target)
    index = enumerate_configurations(groups, categories)
    p = torch.softmax(logits, -1)
    weight = p.gather(-1, index.T).prod(0)
    onehot = torch.nn.functional.one_hot(index, categories).double()
    exact = torch.autograd.grad((weight * loss(onehot)).sum(), codebook)[0]  # grad_E E[f]
    per_config = (p * substituted(index, loss, categories)).sum((-2, -1)) / groups
    torch.testing.assert_close(torch.autograd.grad((weight * per_config).sum(), codebook)[0], exact)
    batches = []
    for seed in range(20):
        codebook.grad = None
        out = make_estimator("indecater")(logits.expand(1000, groups, categories).clone().requires_grad_(True), loss,
                                          generator=gen(100 + seed))
        out.surrogate.mean().backward()
        batches.append(codebook.grad.clone())
    batches = torch.stack(batches)
    se = batches.std(0) / len(batches) ** 0.5
    assert ((batches.mean(0) - exact).abs() <= 4 * se + 1e-12).all(), (batches.mean(0), exact, se)
    assert (se > 0).any()
