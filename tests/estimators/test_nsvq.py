"""nsvq against the paper's formula (vector-quantize-pytorch has no NSVQ): the substituted error has the
quantization error's length and an isotropic direction, gradients by hand, eval gives the nearest code."""

import math

import pytest
import torch
from scipy import stats

from gumbench.benchmarks.training import train
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.conftest import require_package


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_vector_quantize_pytorch_has_no_nsvq():
    vqp = require_package("vector_quantize_pytorch")
    assert not [n for n in dir(vqp) if "nsvq" in n.lower() or "noisesub" in n.lower()]


def test_value_is_z_plus_the_error_length_in_the_drawn_direction_with_gradients_by_hand():
    z = torch.randn(8, 2, 3, generator=gen(0), dtype=torch.float64, requires_grad=True)
    codebook = torch.randn(2, 5, 3, generator=gen(1), dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(8, 2, 3, generator=gen(2), dtype=torch.float64)
    out = make_estimator("nsvq")(z, lambda v: (v * upstream).sum((-2, -1)), codebook=codebook, generator=gen(3))
    k = torch.cdist(z.detach().transpose(0, 1), codebook.detach()).argmin(-1).T
    e = codebook.detach()[torch.arange(2), k]
    assert torch.equal(out.indices, k) and out.aux == {}
    v = torch.randn(8, 2, 3, generator=gen(3), dtype=torch.float64)  # the same draw from the same generator
    u = v / v.norm(dim=-1, keepdim=True)
    error = (z.detach() - e).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(out.value, z.detach() + error * u)
    torch.testing.assert_close((out.value - z).norm(dim=-1), error.squeeze(-1))  # |value - z| = |z - e|
    out.surrogate.sum().backward()
    r = (z.detach() - e) / error  # d|z - e|/dz
    coupling = (u * upstream).sum(-1, keepdim=True) * r
    torch.testing.assert_close(z.grad, upstream + coupling)
    torch.testing.assert_close(
        codebook.grad, torch.einsum("ngk,ngd->gkd", torch.nn.functional.one_hot(k, 5).double(), -coupling)
    )


def test_noise_direction_is_isotropic():
    rows, dim = 20000, 3
    z = torch.zeros(rows, 1, dim)
    codebook = torch.tensor([[[2.0, 0.0, 0.0]]])  # |z - e| = 2 for every row
    out = make_estimator("nsvq")(z, lambda v: v.sum((-2, -1)), codebook=codebook, generator=gen(0))
    direction = out.value[:, 0] / 2
    torch.testing.assert_close(direction.norm(dim=-1), torch.ones(rows))
    # uniform on the sphere: mean 0, covariance I/3, and each coordinate uniform on [-1, 1] (Archimedes)
    assert direction.mean(0).abs().max() < 4 / math.sqrt(3 * rows)
    torch.testing.assert_close(direction.T @ direction / rows, torch.eye(dim) / 3, atol=0.02, rtol=0)
    for coordinate in direction.T:
        assert stats.kstest(coordinate.numpy(), "uniform", args=(-1, 2)).pvalue > 1e-3


def test_eval_gives_the_nearest_code_and_zero_error_gives_finite_gradients():
    z = torch.randn(5, 2, 3, generator=gen(0))
    codebook = torch.randn(2, 4, 3, generator=gen(1), requires_grad=True)
    est = make_estimator("nsvq").eval()
    out = est(z, lambda v: v.sum((-2, -1)), codebook=codebook)
    k = est.assign_codes(z, codebook)
    torch.testing.assert_close(out.value, codebook.detach()[torch.arange(2), k])
    assert torch.equal(out.indices, k)
    at_code = codebook.detach()[:, :1].transpose(0, 1).clone().requires_grad_(True)  # z exactly on a code
    book = codebook.detach().clone().requires_grad_(True)
    train_out = make_estimator("nsvq")(at_code, lambda v: v.sum((-2, -1)), codebook=book, generator=gen(2))
    torch.testing.assert_close(train_out.value, at_code.detach())
    train_out.surrogate.sum().backward()
    assert torch.isfinite(at_code.grad).all() and torch.isfinite(book.grad).all()


def test_errors_name_what_is_allowed():
    with pytest.raises(
        GumbenchError,
        match=r"nsvq: max \|input\| \+ sqrt\(D\) \(max \|input\| \+ max \|code\|\) "
        r"must be at most 3.28e\+04 for float16",
    ):
        make_estimator("nsvq")(torch.full((2, 1, 4), 1e4, dtype=torch.float16), lambda v: v.sum((-2, -1)),
                               codebook=torch.full((1, 3, 4), -1e4, dtype=torch.float16))
    with pytest.raises(GumbenchError, match="nsvq: NaN or inf in the inputs"):
        make_estimator("nsvq")(
            torch.full((2, 1, 4), float("inf")), lambda v: v.sum((-2, -1)), codebook=torch.zeros(1, 3, 4)
        )
    with pytest.raises(GumbenchError, match="nsvq has no parameter 'beta'"):
        make_estimator("nsvq[beta=1]")


def test_trains_a_few_steps_on_gmm_vq():
    frame = train("gmm-vq[batch=64]", "nsvq", steps=30, seed=0, eval_every=30)
    assert frame["loss_reconstruction"].iloc[-5:].mean() < 0.8 * frame["loss_reconstruction"].iloc[:5].mean()
    assert (frame["grad_norm_bottleneck_codebook"] > 0).all()
