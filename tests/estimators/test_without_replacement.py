"""Samples without replacement (stochastic beam search) and the unordered-set / REINFORCE-without-replacement
estimators, against the papers' equations written here independently in float64 over every set of
configurations (exact means and variances), and against the exact gradient."""

import itertools
import math

import pytest
import torch
from scipy import stats

from gumbench.benchmarks import exact_gradient, gradient_statistics, make_task
from gumbench.benchmarks.problems.enumeration import enumerate_configurations
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from gumbench.estimators.without_replacement import set_log_probability, stochastic_beam_search
from tests.estimators.enumeration import check_against_enumeration


def gen(seed):
    return torch.Generator().manual_seed(seed)


def ordered_set_probability(probs: list[float]) -> float:
    """p of an unordered set of elements with probabilities ``probs`` (a sub-domain's, unnormalised: the rest of the
    mass is 1 - sum(all of S)), as the plain sum over orderings of sequential draws without replacement."""
    return sum(math.prod(p / (1 - sum(q for q in order[:i])) for i, p in enumerate(order))
               for order in itertools.permutations(probs))


def configuration_probabilities(logits):
    index = enumerate_configurations(*logits.shape)
    pi = torch.softmax(logits.double(), -1)
    return index, pi.gather(-1, index.T).prod(0)


def unordered_set_estimates(logits, loss, k, baseline=True):
    """Every k-set S of configurations with p(S) and the estimate of Kool et al. (2020) eq. 17/18 on it, from the
    definitions: R(S, s) = p^{D\\s}(S\\s) / p(S), the sub-domain probabilities renormalised explicitly."""
    index, p = configuration_probabilities(logits)
    categories = logits.shape[-1]
    onehot = torch.nn.functional.one_hot(index, categories).double()
    f = loss(onehot).double()
    pi = torch.softmax(logits.double(), -1)
    grad_p = p[:, None, None] * (onehot - pi)  # grad_logits p(s)

    def prob(members, removed):
        """p^{D \\ removed}(members): probabilities renormalised over the domain without ``removed``."""
        scale = 1 - sum(float(p[r]) for r in removed)
        rest = [float(p[m]) / scale for m in members]
        outside = 1 - sum(float(p[m]) for m in members) / scale - 0.0
        return sum(math.prod(q / (outside + sum(order[i:])) for i, q in enumerate(order))
                   for order in itertools.permutations(rest))

    sets, probabilities, estimates = [], [], []
    for S in itertools.combinations(range(len(p)), k):
        p_set = prob(S, ())
        total = torch.zeros_like(pi)
        for s in S:
            rest = [t for t in S if t != s]
            ratio = prob(rest, (s,)) / p_set
            b = 0.0
            if baseline:
                pair = {t: prob([u for u in rest if u != t], (s, t)) / prob(rest, (s,)) for t in rest}
                b = float(p[s]) * float(f[s]) + sum(float(p[t]) * pair[t] * float(f[t]) for t in rest)
            total += grad_p[s] * ratio * (float(f[s]) - b)
        sets.append(S)
        probabilities.append(p_set)
        estimates.append(total)
    return sets, torch.tensor(probabilities, dtype=torch.float64), torch.stack(estimates)


def test_set_probability_is_the_sum_over_orderings():
    probs = torch.softmax(torch.randn(12, generator=gen(0), dtype=torch.float64), 0)
    for members in [(0,), (1, 4), (2, 3, 7), (0, 5, 9, 11), (1, 2, 3, 4, 5)]:
        chosen = probs[list(members)]
        log_rest = torch.log1p(-chosen.sum())
        got = float(set_log_probability(chosen.log(), log_rest).exp())
        assert got == pytest.approx(ordered_set_probability(chosen.tolist()), rel=1e-12)
    assert float(set_log_probability(probs[:0].log(), torch.tensor(0.0, dtype=torch.float64))) == 0.0


def test_beam_search_draws_sets_without_replacement_with_their_probabilities():
    """k = 2 of the 9 configurations of 2 groups of 3: the frequencies of the unordered sets are p(S), and the
    first of each sample (the largest perturbed value) is a draw from p."""
    logits = torch.tensor([[0.5, -0.3, 1.0], [0.0, 0.8, -1.2]], dtype=torch.float64)
    n = 40_000
    index, p = configuration_probabilities(logits)
    log_probs = torch.log_softmax(logits, -1).expand(n, 2, 3)
    indices, values = stochastic_beam_search(log_probs, 2, gen(3))
    assert (values[0] >= values[1]).all()
    codes = indices[..., 0] * 3 + indices[..., 1]  # (2, n): configuration numbers
    assert (codes[0] != codes[1]).all()
    pairs = list(itertools.combinations(range(9), 2))
    expected = torch.tensor([ordered_set_probability([float(p[a]), float(p[b])]) for a, b in pairs],
                            dtype=torch.float64)
    assert float(expected.sum()) == pytest.approx(1.0, abs=1e-12)
    lookup = {pair: i for i, pair in enumerate(pairs)}
    low, high = torch.minimum(codes[0], codes[1]), torch.maximum(codes[0], codes[1])
    counts = torch.bincount(torch.tensor([lookup[(int(a), int(b))] for a, b in zip(low, high)]), minlength=len(pairs))
    assert stats.chisquare(counts.numpy(), (expected / expected.sum() * n).numpy()).pvalue > 1e-3
    first = torch.bincount(codes[0], minlength=9)
    assert stats.chisquare(first.numpy(), (p / p.sum() * n).numpy()).pvalue > 1e-3


@pytest.mark.parametrize("baseline", [True, False])
def test_unordered_set_estimate_is_unbiased_with_the_enumerated_variance(baseline):
    toy = make_task("categorical[groups=2,categories=3]")
    sets, p_sets, estimates = unordered_set_estimates(toy.logits, toy.loss, 3, baseline)
    assert float(p_sets.sum()) == pytest.approx(1.0, abs=1e-10)
    mean = (p_sets[:, None, None] * estimates).sum(0)
    variance = (p_sets[:, None, None] * (estimates - mean).pow(2)).sum(0)
    exact, _ = exact_gradient(toy.logits, toy.loss)
    # the estimator's identity (float64 sums; the toy's exact gradient has float32 losses)
    torch.testing.assert_close(mean, exact, rtol=0, atol=1e-6 * float(exact.abs().max()))
    spec = f"unordered-set[samples=3,baseline={'builtin' if baseline else 'none'}]"
    s = gradient_statistics(spec, toy.logits, toy.loss, 8000, seed=1, confidence=0.999)
    assert s.bias.low == 0.0, s.bias
    check_against_enumeration(s, mean, variance)


def test_the_built_in_baseline_lowers_the_variance():
    toy = make_task("categorical[groups=2,categories=3]")
    variances = []
    for baseline in (True, False):
        p_sets, estimates = unordered_set_estimates(toy.logits, toy.loss, 3, baseline)[1:]
        mean = (p_sets[:, None, None] * estimates).sum(0)
        variances.append(float((p_sets[:, None, None] * (estimates - mean).pow(2)).sum()))
    assert variances[0] < variances[1]


@pytest.mark.parametrize("spec", ["unordered-set[samples=4]", "reinforce-wor[samples=4]",
                                  "reinforce-wor[samples=4,baseline=none]"])
def test_a_sample_of_the_whole_support_gives_the_exact_gradient(spec):
    """k = V^G: the set is the whole support (p(S) = 1, R = 1, kappa = -inf so q = 1), so both estimators are
    sum_s grad p(s) (f(s) - b) with b = E[f] (or 0): the exact gradient, every time."""
    toy = make_task("categorical[groups=2,categories=2]")
    exact, _ = exact_gradient(toy.logits, toy.loss)
    leaf = toy.logits.expand(16, 2, 2).clone().requires_grad_(True)
    out = make_estimator(spec)(leaf, toy.loss, generator=gen(0))
    out.surrogate.sum().backward()
    torch.testing.assert_close(leaf.grad.double(), exact.expand(16, 2, 2), rtol=1e-5, atol=1e-6)


def test_reinforce_without_replacement_is_unbiased_without_its_baseline():
    toy = make_task("categorical[groups=2,categories=4]")
    spec = "reinforce-wor[samples=3,baseline=none]"
    s = gradient_statistics(spec, toy.logits, toy.loss, 8000, seed=2, confidence=0.999)
    assert s.bias.low == 0.0, s.bias


def test_reinforce_without_replacement_weights_are_priority_sampling():
    """With G = 1 and kappa from the (k + 1)-th beam, sum_s w_s f(s) (the reported loss, baseline none) is unbiased
    for E[f]: its mean over many rows matches the enumerated expectation within 4 standard errors."""
    toy = make_task("categorical[groups=1,categories=6]")
    _, expected = exact_gradient(toy.logits, toy.loss)
    estimator = make_estimator("reinforce-wor[samples=2,baseline=none]")
    out = estimator(toy.logits.expand(20_000, 1, 6), toy.loss, generator=gen(5))
    loss = out.loss.double()
    assert abs(float(loss.mean()) - expected) <= 4 * float(loss.std()) / math.sqrt(loss.numel())


def test_too_few_configurations_are_refused():
    logits = torch.tensor([[0.0, float("-inf"), 1.0]])
    with pytest.raises(GumbenchError, match="fewer than 4 configurations"):
        make_estimator("unordered-set")(logits, lambda y: y.sum((-2, -1)), generator=gen(0))
    with pytest.raises(GumbenchError):
        make_estimator("unordered-set[samples=7]")


def test_loss_evaluations_are_k():
    assert make_estimator("unordered-set[samples=5]").loss_evaluations == 5
    assert make_estimator("reinforce-wor[samples=3]").evaluations_per_estimate(4, 8) == 3
