"""Contract tests run over every registered estimator, built-in or plugin."""

import pytest
import torch

from gumbench.errors import GumbenchError
from gumbench.estimators import EstimatorOutput, make_estimator, registry

NAMES = registry.names()
CATEGORICAL = [n for n in NAMES if registry.get(n).family != "vq"]
VQ = [n for n in NAMES if registry.get(n).family == "vq"]
BATCH, G, V, D, K = (2, 3), 2, 5, 4, 6


def gen(seed):
    return torch.Generator().manual_seed(seed)


def target_loss(y):
    """A loss on (..., G, V) -> (...) that tells every category apart."""
    groups, categories = y.shape[-2:]
    weights = torch.arange(groups * categories, dtype=y.dtype).reshape(groups, categories) / (groups * categories)
    return ((y - weights).pow(2) * (1 + weights)).sum(dim=(-2, -1))


def categories(name):
    """V for the contract tests: 5, or the number an estimator requires (``required_categories``, DisARM's 2)."""
    return getattr(registry.get(name), "required_categories", None) or V


def all_variants(name):
    cls = registry.get(name)
    # an empty ``variants`` only keeps an estimator out of the default gradstats table; test its defaults
    return [make_estimator(name, **variant) for variant in getattr(cls, "variants", ()) or ({},)]


def test_registry_lists_the_card_estimators():
    assert {"soft-gumbel", "st-gumbel", "straight-through", "reinforce", "vq-commitment"} <= set(NAMES)
    for name in NAMES:
        cls = registry.get(name)
        assert cls.family in ("relaxation", "score-function", "vq")
        assert cls.description


@pytest.mark.parametrize("name", CATEGORICAL)
def test_categorical_contract(name):
    v = categories(name)
    for est in all_variants(name):
        logits = torch.randn(*BATCH, G, v, generator=gen(0), requires_grad=True)
        out = est(logits, target_loss, generator=gen(1))
        assert isinstance(out, EstimatorOutput)
        assert out.surrogate.shape == BATCH
        assert out.loss.shape == BATCH
        assert out.value.shape[-len(BATCH) - 2:] == (*BATCH, G, v)
        assert out.indices.shape == out.value.shape[:-1]
        assert out.indices.dtype == torch.long and out.indices.min() >= 0 and out.indices.max() < v
        out.surrogate.sum().backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()
        # every row gets its own, nonzero gradient; an estimator that is exactly 0 with positive
        # probability (``zero_estimate_possible``: DisARM when every antithetic pair agrees) in some row
        nonzero = logits.grad.abs().sum(dim=(-2, -1)) > 0
        assert (nonzero.any() if getattr(type(est), "zero_estimate_possible", False) else nonzero.all()), est.spec


@pytest.mark.parametrize("name", CATEGORICAL)
def test_categorical_rows_do_not_mix(name):
    est = make_estimator(name)
    logits = torch.randn(4, G, categories(name), generator=gen(0), requires_grad=True)
    out = est(logits, target_loss, generator=gen(1))
    (grad_row0,) = torch.autograd.grad(out.surrogate[0], logits)
    assert grad_row0[1:].abs().max() == 0


@pytest.mark.parametrize("name", CATEGORICAL)
def test_determinism_with_a_seed(name):
    logits = torch.randn(64, G, categories(name), generator=gen(0))

    def run(seed):
        leaf = logits.clone().requires_grad_(True)
        out = make_estimator(name)(leaf, target_loss, generator=gen(seed))
        out.surrogate.sum().backward()
        return out.value.detach(), leaf.grad

    v1, g1 = run(5)
    v2, g2 = run(5)
    assert torch.equal(v1, v2) and torch.equal(g1, g2)
    v3, g3 = run(6)
    assert not torch.equal(v3, v1), "a different seed should draw different samples"


@pytest.mark.parametrize("name", CATEGORICAL)
def test_bad_logits_are_rejected(name):
    est = make_estimator(name)
    for bad, match in [
        (torch.full((2, 3), float("nan")), "NaN"),
        (torch.tensor([[0.0, float("inf")]]), r"\+inf"),
        (torch.full((1, 3), float("-inf")), "entirely -inf"),
        (torch.zeros(3), r"\(\.\.\., G, V\)"),
    ]:
        with pytest.raises(GumbenchError, match=match):
            est(bad, lambda y: y.sum((-2, -1)))
    with pytest.raises(GumbenchError, match="one loss per row"):
        est(torch.zeros(4, 2, categories(name)), lambda y: y.sum())


@pytest.mark.parametrize("name", VQ)
def test_vq_contract(name):
    for ema in (False, True):
        est = make_estimator(name, ema=ema)
        z = torch.randn(*BATCH, G, D, generator=gen(0), requires_grad=True)
        initial = torch.randn(G, K, D, generator=gen(1))
        codebook = initial.clone().requires_grad_(True)
        out = est(z, lambda q: q.pow(2).sum(dim=(-2, -1)), codebook=codebook)
        assert out.surrogate.shape == BATCH and out.value.shape == z.shape
        assert out.indices.shape == (*BATCH, G)
        out.surrogate.sum().backward()
        assert z.grad is not None and (z.grad.abs().sum(dim=(-2, -1)) > 0).all()
        if not ema:
            assert codebook.grad is not None and codebook.grad.abs().sum() > 0
        # deterministic: same input, same output
        again = make_estimator(name, ema=ema)(z.detach(), lambda q: q.sum(dim=(-2, -1)), codebook=initial.clone())
        assert torch.equal(again.indices, out.indices)
    with pytest.raises(GumbenchError, match="codebook"):
        make_estimator(name)(z, lambda q: q.sum((-2, -1)))
    with pytest.raises(GumbenchError, match="does not fit"):
        make_estimator(name)(z, lambda q: q.sum((-2, -1)), codebook=torch.randn(K, D + 1))
