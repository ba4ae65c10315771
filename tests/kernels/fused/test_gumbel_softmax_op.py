"""The fused Gumbel-softmax kernels against the PyTorch reference fed the kernels' own uniforms, and in law:
argmax frequencies are the softmax's (the looped path returns the reference's argmax for the same uniforms,
and those uniforms are tested here)."""

import math

import pytest
import torch
from scipy import stats

from gumbench.errors import GumbenchError
from gumbench.kernels import gumbel_argmax, gumbel_softmax, gumbel_uniforms, launch
from gumbench.kernels.reference import gumbel_softmax_reference

SEED = 20240607

# K = 1, 2, odd, 257 (tiles 256 + 4), 320 (256 + 64, the wav2vec 2.0 codebook), 1000
# (512 + 512, padded), 3-D (..., G, V) inputs; every launch stays within 8 programs.
SHAPES = [(4, 1), (3, 2), (5, 7), (2, 257), (6, 320), (3, 1000), (2, 3, 320), (2, 2, 2, 9)]
DTYPES = [  # (dtype, atol, rtol): outputs are fp32 math cast to dtype, so one ulp of dtype apart at most
    (torch.float32, 1e-5, 1e-4),
    (torch.float16, 2e-3, 1e-2),
    (torch.bfloat16, 2e-2, 2e-2),
]
OUTPUTS = [  # (hard, save_y)
    (False, False),
    (False, True),
    (True, False),
    (True, True),
]


def reference_run(x, tau, hard, seed, dy):
    """Reference forward + backward with the uniforms the kernel draws for ``seed``."""
    u = gumbel_uniforms(x.shape, seed)
    xr = x.detach().clone().requires_grad_(True)
    y, index = gumbel_softmax_reference(xr, tau, hard, uniforms=u)
    y.backward(dy)
    return y.detach(), index, xr.grad


def fused_run(x, tau, hard, seed, dy, save_y=False):
    xf = x.detach().clone().requires_grad_(True)
    y, index = gumbel_softmax(xf, tau, hard, seed=seed, backend="triton", save_y=save_y, return_index=True)
    y.backward(dy)
    return y.detach(), index, xf.grad


# every output mode in fp32; in half precision the two that cover all loads and stores
GRID = [(*d, *o) for d in DTYPES for o in (OUTPUTS if d[0] == torch.float32 else [OUTPUTS[0], OUTPUTS[3]])]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(
    "dtype, atol, rtol, hard, save_y",
    GRID,
    ids=[f"{str(g[0]).removeprefix('torch.')}-{'hard' if g[3] else 'soft'}{'-saved' if g[4] else ''}" for g in GRID],
)
def test_forward_backward_match_reference(shape, dtype, atol, rtol, hard, save_y):
    gen = torch.Generator().manual_seed(sum(shape))
    x = (3 * torch.randn(shape, generator=gen)).to(dtype)
    dy = torch.randn(shape, generator=gen).to(dtype)
    tau = 0.7
    y_ref, i_ref, dx_ref = reference_run(x, tau, hard, SEED, dy)
    y, index, dx = fused_run(x, tau, hard, SEED, dy, save_y)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(index, i_ref, atol=0, rtol=0)
    torch.testing.assert_close(y, y_ref, atol=atol, rtol=rtol)
    # a saved half-precision y carries its own rounding into the gradient
    grad_tol = 2 if save_y and dtype != torch.float32 else 1
    torch.testing.assert_close(dx, dx_ref, atol=grad_tol * atol, rtol=grad_tol * rtol)


def test_uniforms_are_the_reference_scheme():
    u = gumbel_uniforms((16, 320), SEED)
    k = u.double() * 2**23 - 0.5
    assert torch.equal(k, k.round()) and k.min() >= 0 and k.max() < 2**23  # u = (k + 0.5) * 2**-23 exactly
    assert 0 < u.min() and u.max() < 1


def test_uniforms_depend_only_on_seed_row_and_column():
    wide = gumbel_uniforms((6, 40), SEED)
    assert torch.equal(gumbel_uniforms((4, 40), SEED), wide[:4])
    assert torch.equal(gumbel_uniforms((2, 3, 40), SEED), wide.view(2, 3, 40))
    # column c of row r is the same draw whatever K is, so a longer row extends a shorter one
    assert torch.equal(gumbel_uniforms((6, 24), SEED), wide[:, :24])


def test_looped_path_equals_single_block(small_blocks):
    x = torch.randn(3, 45)
    x[1, 16:32] = float("-inf")  # a whole 16-wide chunk of -inf
    dy = torch.randn(3, 45)
    assert launch.launch_config(3, 45).looped
    y_ref, i_ref, dx_ref = reference_run(x, 0.5, False, SEED, dy)
    for hard, save_y in OUTPUTS:
        y, index, dx = fused_run(x, 0.5, hard, SEED, dy, save_y)
        torch.testing.assert_close(index, i_ref, atol=0, rtol=0)
        expected = torch.nn.functional.one_hot(i_ref, 45).float() if hard else y_ref
        torch.testing.assert_close(y, expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(dx, dx_ref, atol=1e-6, rtol=1e-5)
    assert torch.equal(gumbel_argmax(x, SEED, backend="triton"), i_ref)


def test_looped_path_at_default_limits():
    n_cols = launch.MAX_SINGLE_BLOCK + 3
    assert launch.launch_config(2, n_cols).looped
    x = torch.randn(2, n_cols)
    dy = torch.randn(2, n_cols)
    y_ref, i_ref, dx_ref = reference_run(x, 1.0, True, SEED, dy)
    y, index, dx = fused_run(x, 1.0, True, SEED, dy)
    assert torch.equal(index, i_ref) and torch.equal(y, y_ref)
    torch.testing.assert_close(dx, dx_ref, atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize(
    "make",
    [
        lambda base: base[:, ::2],  # column stride 2
        lambda base: base[:, :7],  # a slice of wider rows
        lambda base: base.view(4, 2, 16).transpose(0, 1),  # leading dims that do not merge: one copy
        lambda base: base.t().contiguous().t(),  # column-major (column stride = rows)
    ],
    ids=["strided-cols", "sliced", "transposed-lead", "column-major"],
)
def test_non_contiguous_inputs(make):
    base = torch.randn(8, 16)
    x = make(base)
    assert not x.is_contiguous()
    dy = torch.randn(x.shape)
    y, index, dx = fused_run(x, 0.8, False, SEED, dy)
    y_c, index_c, dx_c = fused_run(x.contiguous(), 0.8, False, SEED, dy)
    assert torch.equal(index, index_c) and torch.equal(y, y_c) and torch.equal(dx, dx_c)


def test_expanded_gradient(generator):
    x = torch.randn(3, 320, generator=generator, requires_grad=True)
    y = gumbel_softmax(x, 0.5, hard=True, seed=SEED, backend="triton")
    (y * torch.arange(320.0)).sum().backward()  # dy: an expanded row, stride 0 between rows
    xr = x.detach().clone().requires_grad_(True)
    yr, _ = gumbel_softmax_reference(xr, 0.5, True, uniforms=gumbel_uniforms(x.shape, SEED))
    (yr * torch.arange(320.0)).sum().backward()
    # dx = y_soft (dy - <dy, y_soft>) / tau: the inner sum of 320 terms up to 319 is rounded in a different
    # order by the kernel; its fp32 error is about eps sqrt(K) max|dy|, divided by tau
    atol = torch.finfo(torch.float32).eps * 320 ** 0.5 * 319 / 0.5
    torch.testing.assert_close(x.grad, xr.grad, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("tau", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("hard", [False, True])
def test_extreme_logits_stay_finite(tau, hard):
    x = torch.tensor([[1e4, -1e4, 0.0, -1e4, 1e4 - 1, float("-inf")], [-1e4] * 5 + [float("-inf")]])
    x = x.repeat(4, 1).requires_grad_(True)
    y, index = gumbel_softmax(x, tau, hard, seed=SEED, backend="triton", return_index=True)
    y.backward(torch.randn_like(y))
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(y.detach().sum(-1), torch.ones(8))
    assert (index != 5).all() and (y[:, 5] == 0).all() and (x.grad[:, 5] == 0).all()


def test_masked_entries_never_chosen():
    x = torch.randn(8, 33)
    x[:, ::3] = float("-inf")
    for seed in range(4):
        index = gumbel_argmax(x, seed, backend="triton")
        assert (index % 3 != 0).all()
    y = gumbel_softmax(x, 0.3, seed=0, backend="triton")
    assert (y[:, ::3] == 0).all() and not torch.isnan(y).any()


def test_same_seed_same_draw_other_seed_other_draw():
    x = torch.randn(6, 50)
    a = gumbel_softmax(x, 1.0, seed=3, backend="triton")
    assert torch.equal(a, gumbel_softmax(x, 1.0, seed=3, backend="triton"))
    for other in (4, 3 + 2**32, -3, 2**64 + 3 + 2**40):  # the high 32 bits of the key count
        assert not torch.equal(a, gumbel_softmax(x, 1.0, seed=other, backend="triton"))
    assert torch.equal(a, gumbel_softmax(x, 1.0, seed=3 + 2**64, backend="triton"))  # seeds are taken mod 2**64


def test_generator_makes_draws_reproducible():
    x = torch.randn(4, 10)
    draw = lambda: gumbel_softmax(x, seed=None, generator=torch.Generator().manual_seed(1), backend="triton")  # noqa: E731
    assert torch.equal(draw(), draw())
    gen = torch.Generator().manual_seed(1)
    first = gumbel_softmax(x, generator=gen, backend="triton")
    assert not torch.equal(first, gumbel_softmax(x, generator=gen, backend="triton"))  # the generator advances
    torch.manual_seed(0)
    g1 = gumbel_softmax(x, backend="triton")
    torch.manual_seed(0)
    assert torch.equal(g1, gumbel_softmax(x, backend="triton"))  # the global RNG, when nothing is given


def test_rows_get_independent_noise():
    x = torch.zeros(8, 16)
    index = gumbel_argmax(x, SEED, backend="triton")
    assert len(set(index.tolist())) > 1


def test_no_grad_needed_saves_nothing():
    x = torch.randn(3, 9)
    y = gumbel_softmax(x, 1.0, hard=True, seed=1, backend="triton", save_y=True)
    assert not y.requires_grad and y.sum().item() == 3


def test_empty_and_one_dimensional_inputs():
    y, index = gumbel_softmax(torch.randn(0, 5), seed=1, backend="triton", return_index=True)
    assert y.shape == (0, 5) and index.shape == (0,)
    x = torch.randn(11)
    y, index = gumbel_softmax(x, 0.5, seed=2, backend="triton", return_index=True)
    y_ref, i_ref = gumbel_softmax_reference(x, 0.5, uniforms=gumbel_uniforms(x.shape, 2))
    assert index.shape == () and index == i_ref
    torch.testing.assert_close(y, y_ref)


@pytest.mark.parametrize("bad, message", [("nan", "NaN"), ("inf", r"\+inf"), ("-inf", "entirely -inf")])
@pytest.mark.parametrize("n_cols", [10, 40])  # single block, looped
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf in the rejected row
def test_invalid_rows_rejected_in_kernel(bad, message, n_cols, small_blocks):
    x = torch.randn(3, n_cols)
    if bad == "-inf":
        x[1] = float("-inf")
    else:
        x[1, 5] = float(bad)
    with pytest.raises(GumbenchError, match=message):
        gumbel_softmax(x, seed=1, backend="triton")
    with pytest.raises(GumbenchError, match=message):
        gumbel_softmax(x, hard=True, seed=1, backend="triton")
    with pytest.raises(GumbenchError, match=message):
        gumbel_argmax(x, 1, backend="triton")
    y = gumbel_softmax(x, hard=True, seed=1, backend="triton", check=False)  # no check: no error
    assert torch.isfinite(y[[0, 2]]).all()


# --- in law ---------------------------------------------------------------------------------

P_MIN = 1e-3  # fixed seeds; a correct sampler fails this once in a thousand seeds


def chi_square_p(index: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(index.flatten(), minlength=len(probs)).double()
    keep = probs > 0
    assert counts[~keep].sum() == 0, "a zero-probability category was drawn"
    expected = probs[keep].double() / probs[keep].double().sum() * counts.sum()
    return stats.chisquare(counts[keep].numpy(), expected.numpy()).pvalue


def test_argmax_frequencies_match_softmax():
    probs = torch.tensor([0.05, 0.1, 0.15, 0.3, 0.4, 0.0])  # the last is masked with -inf
    logits = probs.log()
    n_rows = 8 * launch.launch_config(4096, 6).rows_per_program  # 8 programs of 512 rows: 4096 draws
    x = logits.expand(n_rows, -1)
    assert chi_square_p(gumbel_argmax(x, 11, backend="triton"), probs) > P_MIN
    # the one-hot of the hard forward is the same sample; tau does not change it
    y = gumbel_softmax(x, tau=0.1, hard=True, seed=12, backend="triton")
    assert torch.equal(y.sum(-1), torch.ones(n_rows))
    assert chi_square_p(y.argmax(-1), probs) > P_MIN


def test_uniforms_are_uniform_and_independent_of_position():
    u = gumbel_uniforms((64, 64), 5).flatten()
    assert stats.kstest(u.numpy(), "uniform").pvalue > P_MIN
    # neighbouring columns share a Philox call (4 outputs): they must not be correlated
    pairs = gumbel_uniforms((64, 64), 6).view(-1, 2)
    assert abs(stats.pearsonr(pairs[:, 0].numpy(), pairs[:, 1].numpy()).statistic) < 4 / math.sqrt(len(pairs))


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_hard_sample_is_the_argmax_of_the_soft_one(tau):
    probs = torch.tensor([0.2, 0.3, 0.5])
    x = probs.log().expand(2048, -1)
    y = gumbel_softmax(x, tau=tau, seed=21, backend="triton")
    assert torch.allclose(y.sum(-1), torch.ones(2048), atol=1e-5)
    hard = gumbel_softmax(x, tau=tau, hard=True, seed=21, backend="triton")
    assert torch.equal(hard.argmax(-1), y.argmax(-1))  # the same noise under both
