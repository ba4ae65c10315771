"""What a user writes without gumbench: one draw, one loss, one backward per gradient estimate.

Each ``loop_*`` function returns the estimates as an (S, G*V) float64 array. The draws use the
global torch RNG (``F.gumbel_softmax``, ``torch.multinomial`` in the ``reinmax`` package and
Storchastic take no generator), so the caller seeds it with ``torch.manual_seed``.

``storch_*`` are Storchastic's equivalents (``storchastic``, benchmark-only; see pyproject's
``bench`` extra). Where gumbench's definition differs from Storchastic's, the docstring says so.

:func:`total_variance` gives tr(Sigma_hat) with a delete-a-group jackknife standard error, written
here (not taken from gumbench) so that the comparison does not check gumbench against itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

EMA_DECAY = 0.9  # gumbench's reinforce[baseline=ema] default
RLOO_SAMPLES = 4  # gumbench's reinforce[baseline=loo] default
RAO_SAMPLES = 10  # gumbench's gumbel-rao default M
EMA_WARMUP = 256  # estimates drawn and discarded before measuring, so the EMA is at its running state


def _one_hot(index: torch.Tensor, categories: int) -> torch.Tensor:
    return F.one_hot(index, categories).to(torch.float32)


def _sample(logits: torch.Tensor) -> torch.Tensor:
    """k ~ Cat(softmax(logits)) per group, (G,)."""
    return torch.multinomial(torch.softmax(logits.detach(), -1), 1).squeeze(-1)


def _grads(logits: torch.Tensor, samples: int, step) -> np.ndarray:
    """``samples`` estimates: ``step(leaf)`` returns the scalar whose gradient is one estimate."""
    leaf = logits.detach().clone().requires_grad_(True)
    out = np.empty((samples, leaf.numel()))
    for s in range(samples):
        leaf.grad = None
        step(leaf).backward()
        out[s] = leaf.grad.reshape(-1).numpy()
    return out


# --- relaxations and straight-through ------------------------------------------------------------

def loop_st_gumbel(logits, loss, samples, tau=1.0):
    return _grads(logits, samples, lambda x: loss(F.gumbel_softmax(x, tau=tau, hard=True)))


def loop_soft_gumbel(logits, loss, samples, tau=1.0):
    return _grads(logits, samples, lambda x: loss(F.gumbel_softmax(x, tau=tau, hard=False)))


def loop_straight_through(logits, loss, samples, tau=1.0):
    def step(x):
        soft = torch.softmax(x / tau, -1)
        return loss(_one_hot(_sample(x), x.shape[-1]) + soft - soft.detach())
    return _grads(logits, samples, step)


def loop_reinmax(logits, loss, samples, tau=1.0):
    """The ``reinmax`` package (Liu et al.'s own implementation): its first output is the one-hot sample."""
    from reinmax import reinmax

    return _grads(logits, samples, lambda x: loss(reinmax(x, tau)[0]))


def loop_gumbel_rao(logits, loss, samples, tau=1.0, m=RAO_SAMPLES):
    """One sample k forward; backward the softmax((logits + g)/tau) Jacobian averaged over m draws of g
    given argmax(logits + g) = k (Paulus et al. 2021): the top perturbed value is Gumbel(logsumexp),
    the others Gumbels truncated below it."""
    def step(x):
        theta = x.detach()
        k = _sample(theta)
        hard = _one_hot(k, theta.shape[-1])
        with torch.no_grad():
            top = torch.logsumexp(theta, -1) - torch.log(torch.empty(m, *theta.shape[:-1]).exponential_())  # (m, G)
            others = theta - torch.log(torch.empty(m, *theta.shape).exponential_())  # Gumbel(theta_i), (m, G, V)
            perturbed = -torch.logaddexp(-top.unsqueeze(-1), -others)  # truncated at top
            perturbed = torch.where(hard.bool(), top.unsqueeze(-1), perturbed)
            noise = perturbed - theta
        soft = torch.softmax((x + noise) / tau, -1).mean(0)
        return loss(hard + soft - soft.detach())
    return _grads(logits, samples, step)


def loop_gst(logits, loss, samples, tau=1.0, gap=1.0):
    """GST-1.0 (Fan et al. 2022): the sampled category raised to the top logit, the others lowered to at
    most top - gap; the shift is a constant of the backward."""
    def step(x):
        theta = x.detach()
        k = _sample(theta)
        hard = _one_hot(k, theta.shape[-1])
        top = theta.max(-1, keepdim=True).values
        perturbed = torch.where(hard.bool(), top, torch.minimum(theta, top - gap))
        soft = torch.softmax((x + (perturbed - theta)) / tau, -1)
        return loss(hard + soft - soft.detach())
    return _grads(logits, samples, step)


# --- score function ------------------------------------------------------------------------------

def loop_reinforce(logits, loss, samples):
    def step(x):
        k = _sample(x)
        log_p = torch.log_softmax(x, -1).gather(-1, k.unsqueeze(-1)).sum()
        return loss(_one_hot(k, x.shape[-1])).detach() * log_p
    return _grads(logits, samples, step)


def loop_reinforce_ema(logits, loss, samples, decay=EMA_DECAY, warmup=EMA_WARMUP):
    """b = the moving average of past losses, taken before this estimate's update (so independent of
    its sample); updated after every estimate, as a per-sample training loop does."""
    state = {"b": None}

    def step(x):
        k = _sample(x)
        f = loss(_one_hot(k, x.shape[-1])).detach()
        b = 0.0 if state["b"] is None else state["b"]
        state["b"] = float(f) if state["b"] is None else decay * state["b"] + (1 - decay) * float(f)
        return (f - b) * torch.log_softmax(x, -1).gather(-1, k.unsqueeze(-1)).sum()

    _grads(logits, warmup, step)
    return _grads(logits, samples, step)


def loop_reinforce_loo(logits, loss, samples, n=RLOO_SAMPLES):
    """RLOO (Kool et al. 2019): n samples per estimate, b_i = the mean of the other n - 1 losses."""
    def step(x):
        k = torch.multinomial(torch.softmax(x.detach(), -1), n, replacement=True).T  # (n, G)
        f = loss(_one_hot(k, x.shape[-1])).detach()  # (n,)
        b = (f.sum() - f) / (n - 1)
        log_p = (
            torch.log_softmax(x, -1).unsqueeze(0).expand(n, *x.shape).gather(-1, k.unsqueeze(-1)).squeeze(-1).sum(-1)
        )
        return ((f - b) * log_p).mean()
    return _grads(logits, samples, step)


def loop_disarm(logits, loss, samples):
    """DisARM (Dong et al. 2020) on binary variables, logits (G, 2), a = l1 - l0: the antithetic pair
    b = 1[u < sigmoid(a)], b~ = 1[1 - u < sigmoid(a)]; per variable i the estimate w.r.t. a_i is
    1/2 (f(b) - f(b~)) (-1)^{b~_i} 1[b_i != b~_i] sigmoid(|a_i|)."""
    def step(x):
        a = x[..., 1] - x[..., 0]
        p = torch.sigmoid(a.detach())
        u = torch.rand(p.shape)
        b, b_anti = (u < p).long(), (1 - u < p).long()
        f, f_anti = loss(_one_hot(b, 2)).detach(), loss(_one_hot(b_anti, 2)).detach()
        weight = 0.5 * (f - f_anti) * (b - b_anti) * torch.sigmoid(a.detach().abs())
        return (weight * a).sum()
    return _grads(logits, samples, step)


LOOPS = {
    "st-gumbel": loop_st_gumbel,
    "soft-gumbel": loop_soft_gumbel,
    "straight-through": loop_straight_through,
    "reinforce": loop_reinforce,
    "reinforce[baseline=ema]": loop_reinforce_ema,
    "reinforce[baseline=loo]": loop_reinforce_loo,
    "reinmax": loop_reinmax,
    "gumbel-rao": loop_gumbel_rao,
    "gst": loop_gst,
    "disarm": loop_disarm,
}


# --- Storchastic ---------------------------------------------------------------------------------

def _storch_grads(logits, loss, samples, method, binary=False) -> np.ndarray:
    import storch
    from torch.distributions import Bernoulli, OneHotCategorical

    leaf = logits.detach().clone().requires_grad_(True)
    out = np.empty((samples, leaf.numel()))
    for s in range(samples):
        leaf.grad = None
        if binary:
            z = method(Bernoulli(logits=leaf[..., 1] - leaf[..., 0]))
            y = torch.stack((1 - z.float(), z.float()), -1)
        else:
            y = method(OneHotCategorical(logits=leaf))
        storch.add_cost(loss(y), "loss")
        storch.backward()
        out[s] = leaf.grad.reshape(-1).numpy()
    return out


def storch_methods() -> dict:
    """Storchastic's equivalent of each estimator it has: name -> (factory of a fresh method, note).
    It has no plain straight-through (only straight-through Gumbel), no ReinMax, Gumbel-Rao or GST."""
    from storch.method import DisARM, GumbelSoftmax, ScoreFunction

    return {
        "st-gumbel": (lambda: GumbelSoftmax("z", straight_through=True), ""),
        "soft-gumbel": (lambda: GumbelSoftmax("z"), ""),
        "reinforce": (lambda: ScoreFunction("z"), ""),
        "reinforce[baseline=ema]": (
            lambda: ScoreFunction("z", baseline_factory="moving_average", exponential_decay=EMA_DECAY),
            "Storchastic's moving average includes the current loss before it is used (b depends on the sample)",
        ),
        "reinforce[baseline=loo]": (
            lambda: ScoreFunction("z", n_samples=RLOO_SAMPLES, baseline_factory="batch_average"),
            "",
        ),
        "disarm": (
            lambda: DisARM("z"),
            "Storchastic's DisARM does not estimate this gradient: the mean of its estimates stays far from the exact "
            "gradient (relative error below), where gumbench's and the loop's converge to it",
        ),
    }


def storch_loss(toy):
    """The toy's loss written so that Storchastic's tensor wrapper can broadcast it: the categorical toy's
    ``target.to(y)`` turns the target into a Storchastic tensor whose plates do not match."""
    if toy.name == "categorical" and toy.params["loss"] == "quadratic":
        return lambda y: ((y - toy.target) ** 2).sum(dim=(-2, -1))
    return toy.loss


def storch_estimates(name: str, toy, samples: int) -> np.ndarray:
    logits, loss = toy.logits, storch_loss(toy)
    factory, _ = storch_methods()[name]
    method = factory()
    if name == "reinforce[baseline=ema]":
        _storch_grads(logits, loss, EMA_WARMUP, method)
    return _storch_grads(logits, loss, samples, method, binary=name == "disarm")


# --- statistics ----------------------------------------------------------------------------------

def total_variance(estimates: np.ndarray, groups: int = 50) -> tuple[float, float]:
    """tr(Sigma_hat) (per-coordinate variances with S - 1, summed) and its delete-a-group jackknife
    standard error over ``groups`` contiguous groups."""
    def trace(x):
        return float(x.var(axis=0, ddof=1).sum())

    n = len(estimates)
    bounds = np.linspace(0, n, groups + 1).astype(int)
    replicates = np.array([trace(np.delete(estimates, slice(bounds[k], bounds[k + 1]), axis=0)) for k in range(groups)])
    se = math.sqrt((groups - 1) / groups * ((replicates - replicates.mean()) ** 2).sum())
    return trace(estimates), se
