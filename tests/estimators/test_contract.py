"""Contract tests run over every registered estimator, built-in or plugin, reading its declared capabilities."""

import pytest
import torch
from scipy import stats

from gumbench.errors import GumbenchError
from gumbench.estimators import EstimatorOutput, VQEstimator, make_estimator, registry
from gumbench.estimators.implicit import ImplicitCodebookVQ
from tests.estimators.enumeration import SAMPLES

NAMES = registry.names()
CATEGORICAL = [n for n in NAMES if not issubclass(registry.get(n), VQEstimator)]
VQ = [n for n in NAMES if issubclass(registry.get(n), VQEstimator)]
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
    return registry.get(name).required_categories or V


def all_variants(name):
    cls = registry.get(name)
    # an empty ``variants`` only keeps an estimator out of the default gradstats table; test its defaults
    return [make_estimator(name, **variant) for variant in cls.variants or ({},)]


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
        assert (nonzero.any() if type(est).zero_estimate_possible else nonzero.all()), est.spec


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
        (torch.zeros(2, 3, dtype=torch.long), "floating-point"),
    ]:
        with pytest.raises(GumbenchError, match=match):
            est(bad, lambda y: y.sum((-2, -1)))
    with pytest.raises(GumbenchError, match="one loss per row"):
        est(torch.zeros(4, 2, categories(name)), lambda y: y.sum())


@pytest.mark.parametrize("name", VQ)
def test_vq_contract(name):
    cls = registry.get(name)
    # implicit codebooks (FSQ, LFQ, BSQ) read only the codebook's shape, which must be theirs, and give it no gradient
    implicit = issubclass(cls, ImplicitCodebookVQ)
    for ema in (False, True) if "ema" in cls.defaults else (None,):
        params = {} if ema is None else {"ema": ema}
        est = make_estimator(name, **params)
        codes, dim = est.code_shape(D) if implicit else (K, D)
        z = torch.randn(*BATCH, G, dim, generator=gen(0), requires_grad=True)
        initial = torch.randn(G, codes, dim, generator=gen(1))
        codebook = initial.clone().requires_grad_(True)
        out = est(z, lambda q: q.pow(2).sum(dim=(-2, -1)), codebook=codebook)
        assert out.surrogate.shape == BATCH and out.value.shape == z.shape
        assert out.indices.shape == (*BATCH, G)
        out.surrogate.sum().backward()
        assert z.grad is not None and (z.grad.abs().sum(dim=(-2, -1)) > 0).all()
        if implicit or not cls.codebook_gradient:
            assert codebook.grad is None
        elif not ema:
            assert codebook.grad is not None and codebook.grad.abs().sum() > 0
        # deterministic: same input, same output (same draws too where the codes depend on them)
        draws = [gen(2), gen(2)] if cls.stochastic_codes else [None, None]
        again = make_estimator(name, **params)(z.detach(), lambda q: q.sum(dim=(-2, -1)), codebook=initial.clone(),
                                               generator=draws[0])
        first = out if not cls.stochastic_codes else make_estimator(name, **params)(
            z.detach(), lambda q: q.sum(dim=(-2, -1)), codebook=initial.clone(), generator=draws[1])
        assert torch.equal(again.indices, first.indices)
    with pytest.raises(GumbenchError, match="codebook"):
        make_estimator(name)(z, lambda q: q.sum((-2, -1)))
    with pytest.raises(GumbenchError, match="does not fit"):
        make_estimator(name)(z, lambda q: q.sum((-2, -1)), codebook=torch.randn(K, D + 1))


# --- generic properties, over the union of the estimators each used to be checked for ------------------

# every registered categorical estimator that takes any number of categories is included too (DisARM needs V = 2)
FREQUENCY_NAMES = [
    "st-gumbel",
    "soft-gumbel",
    "straight-through",
    "reinforce",
    "gumbel-rao",
    "reinmax",
    "gst",
    "gst[variant=p]",
]
# samples without replacement are distinct within a row, so only their first is a draw from softmax (tested in
# test_without_replacement.py)
WITHOUT_REPLACEMENT = ("unordered-set", "reinforce-wor")
FREQUENCY_NAMES += [
    n
    for n in CATEGORICAL
    if registry.get(n).required_categories is None and n not in FREQUENCY_NAMES and n not in WITHOUT_REPLACEMENT
]
EXTREME_NAMES = [
    "st-gumbel",
    "soft-gumbel",
    "straight-through",
    "reinforce[baseline=loo]",
    "gumbel-rao",
    "reinmax",
    "gst",
    "gst[variant=p]",
    "disarm",
]
EXTREME_NAMES += [n for n in CATEGORICAL if n not in EXTREME_NAMES]


@pytest.mark.parametrize("name", FREQUENCY_NAMES)
def test_sampled_category_frequencies_match_softmax(name):
    logits = torch.tensor([[1.5, 0.2, -0.7, 0.0, 2.0, -3.0]])
    n = SAMPLES
    out = make_estimator(name)(logits.expand(n, 1, 6), lambda y: y.sum((-2, -1)), generator=gen(7))
    counts = torch.bincount(out.indices.reshape(-1), minlength=6).double()
    expected = torch.softmax(logits.double(), -1)[0] * counts.sum()  # n rows, times S where S samples are drawn per row
    p = stats.chisquare(counts.numpy(), expected.numpy()).pvalue
    assert p > 1e-3, (counts, expected, p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "name, tau",
    [(n, t) for n in EXTREME_NAMES for t in (0.01, 1.0, 100.0)
     # ReinMax (and ReinMax-CV) need tau >= 1 (tested as an error in test_reinmax.py)
     if not (n in ("reinmax", "reinmax-cv") and t < 1)],
)
def test_extreme_logits_stay_finite(name, tau, dtype):
    est = make_estimator(name)
    if est.has_temperature:
        est = make_estimator(name, tau=tau)
    row = torch.tensor([1e4, -1e4, 0.0, float("-inf"), 1e4 - 1.0])
    if est.required_categories == 2:  # binary groups (DisARM): (1e4, -1e4), (0, -inf), (-inf, 1e4 - 1), (0, 0)
        row = torch.tensor([[1e4, -1e4], [0.0, float("-inf")], [float("-inf"), 1e4 - 1.0], [0.0, 0.0]])
    logits = row.expand(512, *row.shape[-2:]) if row.dim() == 2 else row.expand(512, 2, 5)
    logits = logits.to(dtype, copy=True).requires_grad_(True)
    out = est(logits, lambda y: (y * torch.arange(float(y.shape[-1]))).sum((-2, -1)), generator=gen(0))
    out.surrogate.sum().backward()
    assert torch.isfinite(out.value).all() and torch.isfinite(out.surrogate).all()
    assert torch.isfinite(logits.grad).all()
    assert not (out.indices == 3).any(), "a masked (-inf) category was chosen"
    chosen = out.indices.unsqueeze(-1)
    assert torch.isfinite(logits.detach().expand(*out.indices.shape, logits.shape[-1]).gather(-1, chosen)).all(), (
        "a masked category was chosen"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "st-gumbel[tau=0]",
        "soft-gumbel[tau=-1]",
        "straight-through[tau=nan]",
        "reinforce[baseline=loo,samples=1]",
        "reinforce[decay=1.5]",
        "vq-commitment[beta=-1]",
        "vq-commitment[decay=1]",
        "gumbel-rao[samples=0]",
        "gumbel-rao[tau=0]",
        "gst[tau=-1]",
        "reinmax[tau=nan]",
        "disarm[tau=1]",
        "zgr[tau=1]",
        "decoupled-st-gumbel[tau_forward=0]",
        "decoupled-st-gumbel[tau_forward=1000]",
        "indecater[samples=0]",
        "indecater[tau=1]",
    ],
)
def test_invalid_parameters_raise_clear_errors(bad):
    with pytest.raises(GumbenchError):
        make_estimator(bad)


@pytest.mark.parametrize("name", VQ)
def test_vq_evaluation_vectors_are_the_eval_forward_value(name):
    """The bottleneck evaluates what ``quantize`` gives: for every VQ estimator it is the eval-mode forward's
    value and indices, and ``decode`` of those indices gives the same vectors where the indices determine them."""
    cls = registry.get(name)
    est = make_estimator(name)
    codes, dim = est.code_shape(D) if issubclass(cls, ImplicitCodebookVQ) else (K, D)
    z = torch.randn(*BATCH, G, dim, generator=gen(3))
    codebook = torch.randn(G, codes, dim, generator=gen(4))
    est(z, lambda q: q.sum(dim=(-2, -1)), codebook=codebook.clone())  # one training call (SimVQ makes W)
    est.eval()
    out = est(z, lambda q: q.sum(dim=(-2, -1)), codebook=codebook)
    est.train()
    indices, vectors = est.quantize(z, codebook)
    assert est.training, "quantize leaves the mode as it was"
    assert torch.equal(indices, out.indices) and torch.equal(vectors, out.value.detach())
    undetermined = {"residual-vq": "sum of all its stages", "sf-diveq": "projection onto the polyline"}
    if name in undetermined:
        with pytest.raises(GumbenchError, match=undetermined[name]):
            est.decode(indices, codebook)
    else:
        torch.testing.assert_close(est.decode(indices, codebook), vectors, rtol=1e-6, atol=1e-6)
