"""REBAR and RELAX: the estimate against the papers' equations written here in float64 on the same noise, unbiased
against the exact gradient, and the control variate trained online on the squared estimate."""

import copy

import pytest
import torch
from scipy import stats
from torch.nn.parameter import is_lazy

from gumbench.benchmarks import gradient_statistics, make_task
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from gumbench.kernels.reference import gumbel_noise, uniform_open


def gen(seed):
    return torch.Generator().manual_seed(seed)


def rebar_reference(logits, loss, seed, eta, temperature):
    """g_hat = (f(b) - eta f(sigma(z~))) grad log p(b) + eta grad f(sigma(z)) - eta grad f(sigma(z~)) in float64, with
    the estimator's noise (Gumbel g, then uniforms v for E = -log v, drawn in that order from one generator) and
    Tucker et al.'s conditional sample written from the paper: z~_b = -log(-log v_b),
    z~_i = -log(-log v_i / pi_i - log v_b)."""
    generator = gen(seed)
    g = gumbel_noise(logits.shape, generator=generator, dtype=torch.float32).double()
    v = uniform_open(logits.shape, generator=generator, dtype=torch.float32).double()
    theta = logits.detach().double().requires_grad_(True)
    pi = torch.softmax(theta, -1)
    b = (torch.log(pi) + g).argmax(-1)
    z = torch.log(pi) + g
    vb = v.gather(-1, b.unsqueeze(-1))
    z_tilde = -torch.log(-torch.log(v) / pi - torch.log(vb))
    z_tilde = z_tilde.scatter(-1, b.unsqueeze(-1), -torch.log(-torch.log(vb)))
    relaxed = lambda x: torch.softmax(x / temperature, -1)  # noqa: E731
    f_b = loss(torch.nn.functional.one_hot(b, logits.shape[-1]).double())
    c_z, c_tilde = eta * loss(relaxed(z)), eta * loss(relaxed(z_tilde))
    log_p = torch.log(pi).gather(-1, b.unsqueeze(-1)).squeeze(-1).sum(-1)
    (grad,) = torch.autograd.grad(((f_b - c_tilde).detach() * log_p + c_z - c_tilde).sum(), theta)
    return grad, b


def quadratic(targets):
    return lambda y: (y - targets.to(y.dtype)).pow(2).sum((-2, -1))


def test_rebar_estimate_is_the_papers_equation():
    logits = torch.randn(64, 3, 5, generator=gen(0))
    loss = quadratic(torch.rand(3, 5, generator=gen(1)))
    est = make_estimator("rebar[eta=0.7,temperature=0.4]").eval()  # eval: no step, the parameters as given
    leaf = logits.clone().requires_grad_(True)
    out = est(leaf, loss, generator=gen(2))
    out.surrogate.sum().backward()
    expected, b = rebar_reference(logits, loss, 2, 0.7, 0.4)
    assert torch.equal(out.indices, b)
    torch.testing.assert_close(leaf.grad.double(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.loss, loss(out.value))


@pytest.mark.parametrize("spec", ["rebar", "relax"])
def test_unbiased_while_the_control_variate_trains(spec):
    toy = make_task("categorical[groups=2,categories=4]")
    s = gradient_statistics(spec, toy.logits, toy.loss, 6000, seed=3, confidence=0.999)
    assert s.bias.low == 0.0, s.bias


def test_conditional_sample_has_the_gumbel_law():
    """With b ~ Cat(pi) and z~ | b from the conditional sampler, z~ - log pi is iid Gumbel(0, 1) (the defining
    property of a correct conditional sample): Kolmogorov-Smirnov per coordinate."""
    from gumbench.estimators.relax import conditional_relaxation_noise

    log_pi = torch.log_softmax(torch.tensor([1.0, -0.5, 0.3, 2.0]), -1).double()
    n = 20_000
    b = torch.multinomial(log_pi.exp(), n, replacement=True, generator=gen(4))
    z_tilde = conditional_relaxation_noise(log_pi.expand(n, 4), b, gen(5))
    assert torch.equal(z_tilde.argmax(-1), b)
    for i in range(4):
        assert stats.kstest((z_tilde[:, i] - log_pi[i]).numpy(), stats.gumbel_r.cdf).pvalue > 1e-3


def variance_at(est, logits, loss, seed):
    frozen = copy.deepcopy(est).eval()
    leaf = logits.clone().requires_grad_(True)
    frozen(leaf, loss, generator=gen(seed)).surrogate.sum().backward()
    return leaf.grad.double().pow(2).sum((-2, -1))  # per row: ||g_hat||^2, whose mean is E||g_hat||^2


@pytest.mark.parametrize("spec", ["rebar[eta=0.1]", "relax[lr=0.03]"])
def test_training_mode_calls_lower_the_variance(spec):
    """Training-mode calls take Adam steps down the mean ||g_hat||^2; after 150 of them E||g_hat||^2 (hence the
    variance: the mean does not move) is lower, by more than 4 standard errors of the difference."""
    toy = make_task("categorical[groups=2,categories=4]")
    logits = toy.logits.expand(4000, *toy.logits.shape)
    est = make_estimator(spec)
    before = variance_at(est, logits, toy.loss, 10)
    start = {name: p.detach().clone() for name, p in est.named_parameters() if not is_lazy(p)}
    generator = gen(11)
    for _ in range(150):
        out = est(toy.logits.expand(256, *toy.logits.shape).clone().requires_grad_(True), toy.loss, generator=generator)
        out.surrogate.mean().backward()
        assert all(p.grad is None for p in est.parameters())  # nothing for an outer optimizer
    after = variance_at(est, logits, toy.loss, 10)
    assert any(not torch.equal(start[name], p.detach()) for name, p in est.named_parameters() if name in start)
    se = ((before.var() + after.var()) / before.numel()).sqrt()
    assert float(before.mean() - after.mean()) > 4 * float(se), (float(before.mean()), float(after.mean()))


def test_eval_mode_leaves_the_control_variate_alone():
    est = make_estimator("rebar").eval()
    logits = torch.randn(8, 2, 3, generator=gen(0), requires_grad=True)
    est(logits, lambda y: y.pow(2).sum((-2, -1)), generator=gen(1))
    assert float(est.eta.detach()) == 1.0 and float(est.log_temperature.detach().exp()) == pytest.approx(0.5)


def test_loss_parameters_get_the_pathwise_gradient_at_the_sample():
    weight = torch.randn(2, 3, generator=gen(0), requires_grad=True)
    loss = lambda y: (y * weight).sum((-2, -1)).pow(2)  # noqa: E731
    out = make_estimator("rebar")(torch.randn(5, 2, 3, generator=gen(1)), loss, generator=gen(2))
    (grad,) = torch.autograd.grad(out.surrogate.sum(), weight)
    z = out.value
    expected = (2 * (z * weight.detach()).sum((-2, -1))[:, None, None] * z).sum(0)
    torch.testing.assert_close(grad, expected)


def test_relax_refuses_another_shape_and_counts_evaluations():
    est = make_estimator("relax")
    est(torch.randn(4, 2, 3), lambda y: y.sum((-2, -1)), generator=gen(0))
    with pytest.raises(GumbenchError, match="made for 6"):
        est(torch.randn(4, 2, 4), lambda y: y.sum((-2, -1)), generator=gen(0))
    assert est.loss_evaluations == 1 and make_estimator("rebar").loss_evaluations == 3


def test_warmup_steps_on_the_first_training_call_only():
    """warmup = 20: the first training-mode call takes 21 steps (Adam's step count), later calls one each; eval
    calls none."""
    est = make_estimator("rebar[warmup=20]")
    logits = torch.randn(16, 2, 3, generator=gen(0))
    loss = lambda y: y.pow(2).sum((-2, -1))  # noqa: E731
    est.eval()(logits, loss, generator=gen(1))
    assert est.optimizer is None
    est.train()
    for calls in (21, 22):
        est(logits, loss, generator=gen(calls))
        assert int(est.optimizer.state[est.eta]["step"]) == calls
