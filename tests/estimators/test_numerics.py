"""Regression tests for the numerical promise, one per class of input that failed or is now refused
(the property test in test_properties.py draws across all of them)."""

import math

import pytest
import torch

from gumbench.errors import GumbenchError
from gumbench.estimators import VQEstimator, make_estimator, registry
from gumbench.estimators.base import LOGIT_LIMIT
from gumbench.estimators.vq import kmeans, magnitude_limit

CATEGORICAL = [n for n in registry.names() if not issubclass(registry.get(n), VQEstimator)]
TEMPERATURE_NAMES = [n for n in CATEGORICAL if registry.get(n).has_temperature]
INF = math.inf
HALF = [torch.float16, torch.bfloat16]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def categories(name):
    return registry.get(name).required_categories or 5


def linear_loss(y):
    """Weights 0, 1/4, ..., 1 (exact in every float dtype): an upstream gradient of at most 1."""
    return (y * torch.linspace(0, 1, y.shape[-1], dtype=y.dtype)).sum((-2, -1))


def run(name, logits, **params):
    leaf = logits.clone().requires_grad_(True)
    out = make_estimator(name, **params)(leaf, linear_loss, generator=gen(0))
    out.surrogate.sum().backward()
    return out, leaf.grad


# --- categorical estimators -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("scale", [1e4, 700.0])
def test_straight_through_in_half_precision_at_tau_001_is_the_fp32_estimate_rounded(scale, dtype):
    # two tied top logits: softmax(logits / 0.01) is (1/2, 1/2, 0, 0, 0), so the gradient is not 0;
    # logits / 0.01 is beyond fp16's range (it used to give NaN)
    row = torch.tensor([scale, scale, -scale, -INF, 0.0]).to(dtype)
    out, grad = run("straight-through", row.expand(64, 2, 5), tau=0.01)
    ref, ref_grad = run("straight-through", row.float().expand(64, 2, 5), tau=0.01)
    assert torch.equal(out.indices, ref.indices) and torch.equal(out.value, ref.value.to(dtype))
    assert torch.equal(grad, ref_grad.to(dtype)), "computed in fp32, rounded once"
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", CATEGORICAL)
@pytest.mark.parametrize("dtype", [torch.float32, *HALF])
def test_logits_up_to_the_limit_stay_finite_and_beyond_it_are_refused(name, dtype):
    limit = min(LOGIT_LIMIT, torch.finfo(dtype).max)
    big = torch.tensor(limit, dtype=dtype)
    if big.item() > LOGIT_LIMIT:  # rounded up on the cast: take the next value down
        big = torch.nextafter(big, torch.zeros_like(big))
    tau = {"tau": 0.01 if name not in ("reinmax", "reinmax-cv") else 1.0} if registry.get(name).has_temperature else {}
    if categories(name) == 2:
        rows = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [0.0, -INF], [1.0, 1.0]])
    else:
        rows = torch.tensor([[1.0, -1.0, 0.0, -INF, 1.0]] * 2)  # a tie at the top, both extremes, a mask
    logits = (rows.to(dtype) * big).expand(32, *rows.shape)
    out, grad = run(name, logits, **tau)
    assert torch.isfinite(out.value).all() and torch.isfinite(out.surrogate).all() and torch.isfinite(grad).all()
    if LOGIT_LIMIT < torch.finfo(dtype).max:  # fp16 cannot hold a logit beyond the limit
        with pytest.raises(GumbenchError, match="logits must be -inf or at most"):
            run(name, logits * 2, **tau)


def test_disarm_in_fp16_with_l1_minus_l0_beyond_the_fp16_range():
    top = torch.finfo(torch.float16).max
    logits = torch.tensor([[top, -top], [-top, top], [0.0, 0.0]], dtype=torch.float16).expand(16, 3, 2)
    out, grad = run("disarm", logits)  # l1 - l0 = -+2 * 65504 overflows fp16: the score term is taken in fp32
    assert torch.isfinite(out.surrogate).all() and torch.isfinite(grad).all()
    assert out.surrogate.dtype == torch.float16


@pytest.mark.parametrize("name", TEMPERATURE_NAMES)
def test_tau_outside_the_promised_interval_is_refused(name):
    for tau in (0.0099, 100.01, 1e-30, 1e30, 0.0, -1.0, math.nan, math.inf):
        with pytest.raises(GumbenchError, match=r"tau must be a finite number in \[0.01, 100\]"):
            make_estimator(name, tau=tau)
    assert make_estimator(name, tau=100.0).params["tau"] == 100.0


@pytest.mark.parametrize("name", CATEGORICAL)
@pytest.mark.parametrize("dtype", [torch.float32, *HALF])
def test_an_empty_batch_gives_empty_finite_outputs(name, dtype):
    out, grad = run(name, torch.zeros(0, 2, categories(name), dtype=dtype))
    assert out.surrogate.shape == (0,) and out.indices.shape[-2:] == (0, 2) and grad.shape == (0, 2, categories(name))


@pytest.mark.parametrize("name", CATEGORICAL)
def test_integer_logits_are_refused(name):
    with pytest.raises(GumbenchError, match="floating-point tensor, got dtype torch.int64"):
        make_estimator(name)(torch.zeros(3, 2, categories(name), dtype=torch.long), linear_loss)


# --- vector quantization ----------------------------------------------------------------------------------

VQ_OPTIONS = ["", "ema=true", "rotation=true", "init=kmeans", "restart=true,restart_threshold=1", "cosine=true",
              "ema=true,rotation=true,init=kmeans,restart=true,restart_threshold=1,cosine=true"]


def vq(options=""):
    return make_estimator(f"vq-commitment[{options}]" if options else "vq-commitment")


def vq_loss(q):
    return (q * torch.linspace(0, 1, q.shape[-1], dtype=q.dtype)).mean((-2, -1))


@pytest.mark.parametrize("bad", [math.nan, INF, -INF])
def test_vq_codebook_with_nan_or_inf_is_refused_unless_kmeans_overwrites_it(bad):
    z = torch.randn(16, 2, 3, generator=gen(0))
    codebook = torch.randn(2, 4, 3, generator=gen(1))
    codebook[1, 2, 0] = bad
    for options in VQ_OPTIONS:
        if "init=kmeans" not in options:
            with pytest.raises(GumbenchError, match="NaN or inf in the codebook; allowed are finite values"):
                vq(options)(z, vq_loss, codebook=codebook.clone())
    with pytest.raises(
        GumbenchError, match="NaN or inf in the codebook"
    ):  # eval: k-means does not run, the codebook is read
        vq("init=kmeans").eval()(z, vq_loss, codebook=codebook.clone())
    book = codebook.clone()
    out = vq("init=kmeans")(
        z, vq_loss, codebook=book, generator=gen(2)
    )  # training: its codes become k-means centres first
    assert torch.isfinite(book).all() and torch.isfinite(out.surrogate).all()


@pytest.mark.parametrize("shape", [(2, 0, 3), (0, 3)])
def test_vq_empty_codebook_is_refused(shape):
    with pytest.raises(GumbenchError, match="with K >= 1 codes"):
        vq()(torch.randn(4, 2, 3), vq_loss, codebook=torch.zeros(shape))


def test_vq_inputs_without_groups_or_dimensions_are_refused():
    for z, book in ((torch.zeros(4, 0, 3), torch.zeros(5, 3)), (torch.zeros(4, 2, 0), torch.zeros(2, 5, 0))):
        with pytest.raises(GumbenchError, match=r"shape \(\.\.\., G, D\) with G, D >= 1"):
            vq()(z, vq_loss, codebook=book)


@pytest.mark.parametrize("inputs, book", [(torch.float32, torch.float16), (torch.float16, torch.float32),
                                          (torch.bfloat16, torch.float16), (torch.float64, torch.float32)])
def test_vq_dtype_mismatch_is_refused(inputs, book):
    with pytest.raises(GumbenchError, match="codebook must have the inputs' dtype and device"):
        vq()(torch.randn(4, 2, 3).to(inputs), vq_loss, codebook=torch.randn(2, 5, 3).to(book))


def test_vq_codebook_that_is_not_a_tensor_is_refused():
    with pytest.raises(GumbenchError, match="needs codebook=tensor of shape"):
        vq()(torch.randn(4, 2, 3), vq_loss, codebook=[[0.0] * 3] * 5)


@pytest.mark.parametrize("dtype", HALF)
def test_vq_kmeans_init_in_half_precision_runs_in_fp32(dtype):
    z = torch.randn(64, 2, 3, generator=gen(0)).to(dtype).requires_grad_(True)
    codebook = torch.zeros(2, 4, 3, dtype=dtype, requires_grad=True)
    out = vq("init=kmeans,kmeans_iters=3")(z, vq_loss, codebook=codebook, generator=gen(1))
    expected = kmeans(z.detach().float().transpose(0, 1), 4, 3, generator=gen(1))  # (G, N, D) per group, same draws
    assert torch.equal(codebook.detach(), expected.to(dtype))
    out.surrogate.mean().backward()
    assert torch.isfinite(out.surrogate).all() and torch.isfinite(z.grad).all() and torch.isfinite(codebook.grad).all()


@pytest.mark.parametrize("options", VQ_OPTIONS)
def test_vq_empty_batch_gives_empty_outputs_and_leaves_the_codebook_alone(options):
    codebook = torch.randn(2, 4, 3, generator=gen(1), requires_grad=True)
    frozen = codebook.detach().clone()
    est = vq(options)
    z = torch.zeros(0, 2, 3, requires_grad=True)
    out = est(z, vq_loss, codebook=codebook, generator=gen(0))
    out.surrogate.sum().backward()
    assert out.surrogate.shape == (0,) and out.indices.shape == (0, 2) and z.grad.shape == (0, 2, 3)
    assert torch.equal(codebook.detach(), frozen)
    assert bool(est.initialized) == ("init=kmeans" not in options), "k-means waits for a batch with vectors"


@pytest.mark.parametrize("options", ["", "rotation=true", "ema=true"])
def test_vq_fp16_vectors_of_1e4_pick_the_exact_nearest_code(options):
    # ||z||^2 ~ 1e8 overflows fp16; in fp32 the distances, the codes and the losses come out exact
    # (the differences of fp16 numbers this size are exact in fp32; only the squares and the mean round)
    directions = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]]) / torch.tensor(
        [1, 1, 1, 3**0.5]
    ).unsqueeze(-1)
    codes = (1e4 * directions).expand(2, 4, 3).to(torch.float16)
    z = (codes[:, torch.arange(40) % 4].transpose(0, 1) + 300 * torch.randn(40, 2, 3, generator=gen(0))).to(
        torch.float16
    )
    z.requires_grad_(True)
    codebook = codes.clone().requires_grad_(True)
    out = vq(options)(z, vq_loss, codebook=codebook)
    exact = torch.cdist(z.detach().double().transpose(0, 1), codes.double()).argmin(-1).T  # (40, 2)
    assert torch.equal(out.indices, exact)
    chosen = codes.double()[torch.arange(2), exact]
    assert torch.equal(out.value, chosen.to(torch.float16))
    reference = 0.25 * (z.detach().double() - chosen).pow(2).mean((-2, -1))
    # each square and each of the 6 additions in the mean rounds once in fp32 (2^-24 each)
    torch.testing.assert_close(out.aux["commitment"].double(), reference, rtol=8 * 2**-24, atol=0)
    out.surrogate.mean().backward()
    assert torch.isfinite(z.grad).all() and (codebook.grad is None or torch.isfinite(codebook.grad).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("beta", [0.25, 100.0])
def test_vq_magnitude_limit_is_finite_below_and_refused_above(dtype, beta):
    # the worst case for a given max|z| + max|e| = s: one element per row (G = D = 1), the code at -z
    limit = magnitude_limit(dtype, 1, beta)
    est = vq(f"beta={beta:g}")
    for share, accepted in ((0.98, True), (1.02, False)):
        half = torch.tensor(share * limit / 2).to(dtype).item()  # the value the dtype holds
        z = torch.full((4, 1, 1), half, dtype=dtype, requires_grad=True)
        codebook = torch.full((1, 1, 1), -half, dtype=dtype, requires_grad=True)
        if not accepted:
            with pytest.raises(GumbenchError, match="max |input| + max |code| must be at most"):
                est(z, vq_loss, codebook=codebook)
            continue
        out = est(z, vq_loss, codebook=codebook)
        out.surrogate.mean().backward()
        assert all(torch.isfinite(t).all() for t in (out.surrogate, *out.aux.values(), z.grad, codebook.grad))
    with pytest.raises(GumbenchError, match="must be at most"):  # the reported case: vectors of 1e20 in fp32
        vq()(torch.full((4, 2, 3), 1e20), vq_loss, codebook=torch.full((2, 4, 3), -1e20))


@pytest.mark.parametrize("options", ["rotation=true", "cosine=true", "rotation=true,cosine=true"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_vq_vectors_near_zero_keep_finite_gradients(options, dtype):
    # 1/|z| (normalizing) and |e|/|z| (the rotation's rescale) are capped at sqrt(largest value of the dtype)
    tiny = torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps  # the smallest subnormal
    z = torch.tensor([[[tiny, 0.0, 0.0]], [[0.0, -tiny, 0.0]]], dtype=dtype, requires_grad=True)
    codebook = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]]], dtype=dtype, requires_grad=True)
    out = vq(options)(z, lambda q: (q * torch.tensor([1.0, -1.0, 0.5], dtype=dtype)).sum((-2, -1)), codebook=codebook)
    out.surrogate.sum().backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(codebook.grad).all()
    assert (z.grad.abs() <= torch.finfo(dtype).max ** 0.5 * 1.5).all()


def test_vq_ema_with_a_shared_codebook_is_refused_before_any_work():
    calls = []

    def loss(q):
        calls.append(q)
        return vq_loss(q)

    with pytest.raises(
        GumbenchError, match=r"ema=true updates per-group codebooks; pass shape \(G, K, D\), got \(5, 3\)"
    ):
        vq("ema=true")(torch.randn(4, 2, 3), loss, codebook=torch.randn(5, 3))
    assert not calls, "refused before the downstream loss ran"
