"""The fused Gumbel-Rao kernel: draw for draw against the PyTorch reference, then in law.

Draw for draw: the kernel's conditional draws come from Philox streams 1..M
(``gumbel_uniforms(..., stream=m)``); fed to ``gumbel_rao_reference(exponentials=...)`` with
the kernel's own sample, the reference must give the same one-hot and the same gradient.
In law: the sample is Cat(softmax), the conditional noise built from the kernel's streams is
iid Gumbel(0, 1), the estimates have the reference estimator's mean, M = 1 has st-gumbel's
mean and variance and more draws lower it. Statistical checks use fixed seeds and bounds of
4 standard errors (or p > 1e-3); none is tuned.
"""

import math

import pytest
import torch
from scipy import stats

from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from gumbench.kernels import dispatch, gumbel_argmax, gumbel_rao, gumbel_softmax, gumbel_uniforms, launch, set_backend
from gumbench.kernels.reference import conditional_gumbel, gumbel_rao_reference

SEED = 4242
P_MIN = 1e-3


def kernel_exponentials(shape, seed, samples):
    """The E ~ Exp(1) the kernel draws for its M conditional draws: (samples, *shape)."""
    return torch.stack([-torch.log(gumbel_uniforms(shape, seed, stream=m + 1)) for m in range(samples)])


def compare_with_reference(x, dy, tau, samples, seed, atol, rtol):
    xf = x.detach().clone().requires_grad_(True)
    y, index = gumbel_rao(xf, tau, samples, seed=seed, backend="triton")
    y.backward(dy)
    assert y.dtype == x.dtype and xf.grad.dtype == x.dtype and index.shape == x.shape[:-1]
    assert torch.equal(index, gumbel_argmax(x.detach(), seed, backend="triton")), (
        "the sample is the Gumbel-max of stream 0"
    )
    xr = x.detach().clone().requires_grad_(True)
    y_ref, _ = gumbel_rao_reference(
        xr, tau, samples, index=index, exponentials=kernel_exponentials(x.shape, seed, samples)
    )
    y_ref.backward(dy)
    assert torch.equal(y, torch.nn.functional.one_hot(index, x.shape[-1]).to(x.dtype)), (
        "the forward is the exact one-hot"
    )
    torch.testing.assert_close(xf.grad, xr.grad, atol=atol, rtol=rtol)
    return xf.grad


DTYPES = [(torch.float32, 1e-5, 1e-4), (torch.float16, 2e-3, 1e-2), (torch.bfloat16, 2e-2, 2e-2)]


@pytest.mark.parametrize("shape", [(4, 1), (3, 2), (5, 7), (2, 257), (6, 320), (2, 3, 320)], ids=str)
@pytest.mark.parametrize("samples", [1, 3])
def test_backward_matches_reference_draw_for_draw_fp32(shape, samples):
    gen = torch.Generator().manual_seed(sum(shape) + samples)
    x = 3 * torch.randn(shape, generator=gen)
    dy = torch.randn(shape, generator=gen)
    compare_with_reference(x, dy, 0.7, samples, SEED, 1e-5, 1e-4)


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES[1:], ids=["float16", "bfloat16"])
def test_backward_matches_reference_in_half_precision(dtype, atol, rtol):
    gen = torch.Generator().manual_seed(1)
    x = (3 * torch.randn(3, 320, generator=gen)).to(dtype)
    dy = torch.randn(3, 320, generator=gen).to(dtype)
    compare_with_reference(x, dy, 0.5, 4, SEED, atol, rtol)


@pytest.mark.parametrize("shape, samples", [((3, 50), 3), ((2, 37), 5), ((1, 100), 1)], ids=str)
def test_looped_path_matches_reference(small_blocks, shape, samples):
    assert launch.launch_config(shape[0], shape[-1]).looped
    gen = torch.Generator().manual_seed(7)
    x = 3 * torch.randn(shape, generator=gen)
    x[0, 5] = float("-inf")
    dy = torch.randn(shape, generator=gen)
    grad = compare_with_reference(x, dy, 0.5, samples, SEED + 1, 1e-5, 1e-4)
    assert grad[0, 5] == 0


def test_strided_input_and_extreme_values():
    """Non-contiguous logits, +-1e4 and masked entries, tau from 0.01 to 100: finite, equal to the reference."""
    gen = torch.Generator().manual_seed(3)
    base = 3 * torch.randn(4, 40, generator=gen)
    base[0, :20] = 1e4
    base[1, 20:] = -1e4
    base[2, ::3] = float("-inf")
    x = base[:, ::2]  # column stride 2
    dy = torch.randn(x.shape, generator=gen)
    for tau in (0.01, 1.0, 100.0):
        grad = compare_with_reference(x, dy, tau, 3, SEED + 2, 1e-5, 1e-4)
        assert torch.isfinite(grad).all()
        assert (grad[2][torch.isneginf(x[2])] == 0).all(), "a masked category gets no gradient"


def test_saved_memory_does_not_grow_with_samples():
    """The fused autograd graph saves the logits and the index whatever M is; the reference
    saves its (M, ..., V) noise (a check that the measurement sees growth where there is some)."""

    def saved_bytes(backend, samples):
        sizes = []

        def pack(t):
            sizes.append(t.numel() * t.element_size())
            return t

        x = torch.randn(4, 320, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y, _ = gumbel_rao(x, 0.5, samples, seed=SEED, backend=backend)
        y.backward(torch.ones_like(y))
        return sum(sizes)

    logits_and_index = 4 * 320 * 4 + 4 * 8
    assert saved_bytes("triton", 1) == saved_bytes("triton", 64) == logits_and_index
    assert saved_bytes("reference", 64) > 32 * saved_bytes("reference", 1)


def test_conditional_noise_from_the_kernel_streams_is_iid_gumbel():
    """Index from stream 0, exponentials from streams 1 and 2: the conditional noise is Gumbel(0, 1)
    in every column (were a stream reused for the sample, the conditioning would bias it)."""
    logits = torch.tensor([1.5, 0.2, -0.7, 0.0, 2.0, -3.0])
    x = logits.expand(8 * launch.launch_config(4096, 6).rows_per_program, -1)  # 4096 rows, 8 programs
    index = gumbel_argmax(x, SEED, backend="triton")
    noise = conditional_gumbel(x, index, 2, exponentials=kernel_exponentials(x.shape, SEED, 2))
    assert (torch.argmax(x + noise, -1) == index).all(), "the condition holds for every draw"
    pvalues = [
        stats.kstest(noise[m, :, j].double().numpy(), stats.gumbel_r.cdf).pvalue for m in range(2) for j in range(6)
    ]
    assert min(pvalues) > P_MIN / len(pvalues), pvalues


def replicate_estimates(fn, logits, upstream, n_rows, **kwargs):
    """Gradient estimates, one per row of an (n_rows, V) batch of the same logits.

    The upstream gradient at the one-hot sample D = e_k is row k of ``upstream``: it depends
    on the sample, as the gradient of a nonlinear loss does.
    """
    x = logits.expand(n_rows, -1).clone().requires_grad_(True)
    y, index = fn(x, **kwargs)
    (y * upstream[index]).sum().backward()
    return x.grad.double()


def total_variance(estimates):
    """(total variance, its standard error) from the per-row squared deviations."""
    deviations = (estimates - estimates.mean(0)).pow(2).sum(-1)
    return float(deviations.mean()), float(deviations.std() / math.sqrt(len(deviations)))


def assert_same_mean(a, b):
    se = (a.var(0) / len(a) + b.var(0) / len(b)).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() <= 4 * se).all(), (a.mean(0), b.mean(0), se)


def test_estimates_have_the_reference_mean_and_the_rao_blackwell_variance():
    logits = torch.tensor([0.5, -0.3, 1.2, 0.0, -1.0])
    upstream = torch.randn(5, 5, generator=torch.Generator().manual_seed(0))
    n_rows = 8 * launch.launch_config(4096, 5).rows_per_program  # 4096 replicates, 8 programs
    tau = 0.5

    def kernel(samples, seed):
        return replicate_estimates(
            gumbel_rao, logits, upstream, n_rows, tau=tau, samples=samples, seed=seed, backend="triton"
        )

    def st_gumbel(x, seed):
        return gumbel_softmax(x, tau, hard=True, seed=seed, backend="triton", return_index=True)

    def reference(x, samples, generator):
        return gumbel_rao_reference(x, tau, samples, generator=generator)

    one, eight = kernel(1, 11), kernel(8, 12)
    st = replicate_estimates(st_gumbel, logits, upstream, n_rows, seed=13)
    ref = replicate_estimates(
        reference, logits, upstream, 20_000, samples=8, generator=torch.Generator().manual_seed(14)
    )
    # one mean for all: E[J | D] does not depend on M, and M = 1 is st-gumbel in distribution
    assert_same_mean(eight, ref)
    assert_same_mean(one, st)
    assert_same_mean(one, eight)
    # M = 1 has st-gumbel's variance; eight draws have less
    (v1, se1), (vst, sest), (v8, se8) = total_variance(one), total_variance(st), total_variance(eight)
    assert abs(v1 - vst) <= 4 * math.hypot(se1, sest), (v1, vst)
    assert v8 + 4 * math.hypot(se8, se1) < v1, (v8, v1)
    v_ref, se_ref = total_variance(ref)
    assert abs(v8 - v_ref) <= 4 * math.hypot(se8, se_ref), (v8, v_ref)


def test_estimator_takes_the_fused_path_under_the_triton_backend():
    logits = torch.randn(4, 3, 9, generator=torch.Generator().manual_seed(0), requires_grad=True)
    upstream = torch.randn(4, 3, 9, generator=torch.Generator().manual_seed(1))
    with set_backend("triton"):
        out = make_estimator("gumbel-rao[tau=0.7,samples=4]")(
            logits, lambda y: (y * upstream).sum((-2, -1)), generator=torch.Generator().manual_seed(2)
        )
    out.surrogate.sum().backward()
    seed = dispatch._draw_seed(torch.Generator().manual_seed(2))  # the estimator's seed, replayed
    x = logits.detach().clone().requires_grad_(True)
    y, index = gumbel_rao(x, 0.7, 4, seed=seed, backend="triton")
    (y * upstream).sum().backward()
    assert torch.equal(out.indices, index) and torch.equal(out.value, y)
    torch.testing.assert_close(logits.grad, x.grad, atol=0, rtol=0)


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")  # the interpreter's max over the NaN row
def test_bad_arguments_are_clear_errors(small_blocks):
    x = torch.randn(2, 50)
    for samples in (0, -1, 2.5, True):
        with pytest.raises(GumbenchError, match="samples"):
            gumbel_rao(x, 1.0, samples, seed=1, backend="triton")
    with pytest.raises(GumbenchError, match=f"samples <= {launch.MAX_LOOPED_SAMPLES} for rows wider than 32"):
        gumbel_rao(x, 1.0, launch.MAX_LOOPED_SAMPLES + 1, seed=1, backend="triton")
    with pytest.raises(GumbenchError, match="tau"):
        gumbel_rao(x, 0.0, 2, seed=1, backend="triton")
    with pytest.raises(GumbenchError, match="NaN"):
        gumbel_rao(torch.full((2, 5), float("nan")), 1.0, 2, seed=1, backend="triton")
