"""The unordered set estimator against Storchastic 0.3.7's (``storch.method.UnorderedSetEstimator``, the test-only
oracle pinned in the ``test`` extra) on identical inputs and samples: Storchastic draws the set, gumbench is handed
the same set.

Relations (documented in docs/estimators.md), each asserted here:
- Storchastic samples a set per batch element (its "groups" are batch dimensions); gumbench samples sets of whole
  configurations of the G groups. They coincide for G = 1, which is what is compared.
- Storchastic computes the ratios by trapezoid integration (999 interior points, shift a = 5) of
  p(S) = int_0^1 prod_{s in S} (1 - v^{p(s)/p(D minus S)}) dv; gumbench sums the k! orderings exactly. Its
  first-order weights p(s) R(S, s) match gumbench's to 1e-4.
- Its built-in baseline differs from Kool et al.'s eq. 18: (a) the second-order integrand subtracts the log-term
  of s twice where eq. 18 removes s and s' (its ``terms[..., None, :]`` broadcasts over the plate dimension, which
  is s), and (b) the sum over the plate runs over the first index. So Storchastic's baseline for sample t is
  p(t) f(t) + sum_{s != t} p(s) Q_s f(s), Q_s = I(S minus s, minus s again) / I(S minus s), I the integral above.
  ``storch_formula`` writes both out in float64 from that integral: Storchastic's gradients equal its
  ``storch`` form, and gumbench's equal the ``eq18`` form (the same integral, the baseline of eq. 18) within the
  integration error. By enumeration over every set (``test_storchastic_baseline_is_biased``), Storchastic's form
  is biased (about 7% of the gradient's norm on this toy at k = 3) and eq. 18's is not.
Storchastic's ``use_baseline=False`` does not run in 0.3.7 (its estimator returns one tensor where a pair is unpacked:
"Cannot currently iterate over storch Tensors"), so only the built-in baseline is compared. Storchastic patches
torch functions process-wide when imported, so it runs in a subprocess.
"""

import itertools
import json
import subprocess
import sys

import pytest
import torch

import gumbench.estimators.without_replacement as without_replacement
from gumbench.benchmarks import exact_gradient
from gumbench.estimators import make_estimator
from tests.conftest import require

LOGITS = [[0.5, -0.3, 1.0, 0.2, -1.0, 0.0]]
WEIGHTS = [[1.0, 2.0, -1.0, 0.5, 3.0, -2.0]]
DRAWS = 40

STORCH_SCRIPT = """
import json, sys, torch, storch
from torch.distributions import OneHotCategorical
from storch.method import UnorderedSetEstimator
logits, weights, k, draws, baseline = json.loads(sys.argv[1])
weights = torch.tensor(weights)
torch.manual_seed(0)
out = []
for _ in range(draws):
    leaf = torch.tensor(logits).requires_grad_(True)
    y = UnorderedSetEstimator("z", k=k, use_baseline=baseline)(OneHotCategorical(logits=leaf))
    storch.add_cost(((y * weights).sum(-1).sum(-1)) ** 2, "loss")
    storch.backward()
    plate_weights = [p for p in y.plates if p.name == "z"][0].weight._tensor
    out.append({"indices": y._tensor.argmax(-1).reshape(-1).tolist(), "grad": leaf.grad.reshape(-1).tolist(),
                "weights": plate_weights.reshape(-1).tolist()})
print(json.dumps(out))
"""


def storch_draws(k: int, baseline: bool) -> list[dict]:
    probe = subprocess.run([sys.executable, "-c", "import storch"], capture_output=True, text=True)
    last = (probe.stderr.strip().splitlines() or [""])[-1]
    require(probe.returncode == 0, f"needs storchastic 0.3.7 (the test extra): {last}")
    args = json.dumps([LOGITS, WEIGHTS, k, DRAWS, baseline])
    done = subprocess.run([sys.executable, "-c", STORCH_SCRIPT, args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def gumbench_estimate(indices: list[int], k: int, baseline: bool, monkeypatch) -> torch.Tensor:
    """gumbench's unordered-set estimate when its sample is the set ``indices`` (G = 1, one row)."""
    fixed = torch.tensor(indices).reshape(k, 1, 1)
    monkeypatch.setattr(without_replacement, "stochastic_beam_search",
                        lambda log_probs, beams, generator=None: (fixed, torch.zeros(k, 1, dtype=torch.float64)))
    weights = torch.tensor(WEIGHTS)
    leaf = torch.tensor(LOGITS).unsqueeze(0).requires_grad_(True)  # (1 row, 1 group, 6)
    spec = f"unordered-set[samples={k},baseline={'builtin' if baseline else 'none'}]"
    out = make_estimator(spec)(leaf, lambda y: (y * weights).sum((-2, -1)) ** 2)
    out.surrogate.sum().backward()
    return leaf.grad.reshape(-1).double()


def storch_formula(members, form: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights p(s) R(S, s), gradient) of the unordered set estimator with the built-in baseline on the set ``members``
    (G = 1, LOGITS and the loss (w . y)^2), with the ratios from Storchastic's trapezoid integral, in float64;
    ``form`` 'storch' is Storchastic's baseline, 'eq18' Kool et al.'s."""
    pi = torch.softmax(torch.tensor(LOGITS[0], dtype=torch.float64), 0)
    f = torch.tensor(WEIGHTS[0], dtype=torch.float64)[list(members)] ** 2
    log_p, k, shift = pi[list(members)].log(), len(members), 5.0
    log_v = (torch.arange(1, 1000, dtype=torch.float64) / 1000).log()
    bound = log_p[:, None] + shift + torch.log(-log_v)[None, :]  # log(1 - v^{exp(log p + a)}) per member
    terms = torch.log(-torch.expm1(-bound.exp()))
    outside = torch.log(-torch.expm1(torch.logsumexp(log_p, 0)))
    integrand = terms.sum(0) + torch.expm1(shift + outside) * log_v
    without = integrand[None] - terms  # (k, N): member s left out
    weights = (without.logsumexp(-1) - integrand.logsumexp(-1) + log_p).exp()
    others = (1 - torch.eye(k, dtype=torch.float64))[:, :, None]
    if form == "storch":  # s removed twice; the plate sum over the first index
        ratio = (without[:, None, :] - terms[:, None, :] * others).logsumexp(-1) - without.logsumexp(-1)[:, None]
        baseline = (torch.exp(log_p[:, None] + ratio) * f[:, None]).sum(0)
    else:  # eq. 18: s and s' removed, summed over s'
        ratio = (without[:, None, :] - terms[None, :, :] * others).logsumexp(-1) - without.logsumexp(-1)[:, None]
        baseline = (torch.exp(log_p[None, :] + ratio) * f[None, :]).sum(1)
    scores = torch.eye(6, dtype=torch.float64)[list(members)] - pi
    return weights, (weights[:, None] * (f - baseline)[:, None] * scores).sum(0)


@pytest.mark.parametrize("k", [3, 4])
def test_unordered_set_matches_storchastic_on_the_same_sets(k, monkeypatch):
    draws = storch_draws(k, True)
    assert len({tuple(sorted(d["indices"])) for d in draws}) > 3  # several different sets compared
    for draw in draws:
        members = draw["indices"]
        assert len(set(members)) == k  # without replacement
        storch_grad = torch.tensor(draw["grad"], dtype=torch.float64)
        weights, storch_form = storch_formula(members, "storch")
        _, eq18 = storch_formula(members, "eq18")
        torch.testing.assert_close(torch.tensor(draw["weights"], dtype=torch.float64), weights, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(storch_grad, storch_form, rtol=1e-5, atol=1e-5)  # the relation, pinned
        got = gumbench_estimate(members, k, True, monkeypatch)
        torch.testing.assert_close(got, eq18, rtol=0, atol=2e-3 * float(eq18.abs().max()))  # integration error
        exact_weights = got.new_tensor(gumbench_weights(members))
        torch.testing.assert_close(exact_weights, weights, rtol=0, atol=1e-4)


def gumbench_weights(members) -> list[float]:
    """gumbench's exact p(s) R(S, s) for the set ``members`` of the G = 1 toy."""
    log_p = torch.log_softmax(torch.tensor(LOGITS[0], dtype=torch.float64), 0)[list(members)]
    rest = without_replacement.log1mexp(torch.logsumexp(log_p, 0))
    k = len(members)
    log_set = without_replacement.set_log_probability(log_p, rest)
    log_without = without_replacement.set_log_probability(log_p[without_replacement.others(k, 1)], rest.expand(k))
    return (log_p + log_without - log_set).exp().tolist()


def test_storchastic_baseline_is_biased():
    """Every 3-set S of the 6 categories with its exact probability p(S): Storchastic's form of the estimate has a
    mean off the exact gradient by more than 5% of its norm; eq. 18's, from the same integral, within 0.1%."""
    pi = torch.softmax(torch.tensor(LOGITS[0], dtype=torch.float64), 0)
    weights = torch.tensor(WEIGHTS)
    exact, _ = exact_gradient(torch.tensor(LOGITS), lambda y: (y * weights.to(y.dtype)).sum((-2, -1)) ** 2)
    means = {"storch": 0.0, "eq18": 0.0}
    for members in itertools.combinations(range(6), 3):
        log_p = pi[list(members)].log()
        rest = without_replacement.log1mexp(torch.logsumexp(log_p, 0))
        p_set = without_replacement.set_log_probability(log_p, rest).exp()
        for form in means:
            means[form] = means[form] + p_set * storch_formula(members, form)[1]
    relative = {form: float((mean - exact[0]).norm() / exact.norm()) for form, mean in means.items()}
    assert relative["storch"] > 0.05 and relative["eq18"] < 1e-3, relative
