"""DiVeQ and SF-DiVeQ against the authors' ``diveq`` package 0.1.3 and vector-quantize-pytorch 1.34.1's
``directional_reparam`` (pinned test-only oracles), and against their formulas written out in float64.

Layout: the oracles take (N, D) vectors and one (K, D) codebook; gumbench gets them as (N, 1, D) with the
shared codebook. Both draw their noise from one stream seeded alike (the oracles from torch's global generator,
gumbench from its ``generator``), in the same order, so the draws are identical. Conventions, each tested:
diveq's ``noise_var`` is the noise's standard deviation sigma (it draws ``Normal(0, noise_var)``), vqp's
``directional_reparam_variance`` is sigma^2.
"""

import math

import pytest
import torch

from gumbench.benchmarks.training import train
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.conftest import gen, require_package

N, D, K = 40, 3, 7
TOL = dict(rtol=1e-5, atol=1e-6)


def data(seed=0, count=N, dim=D, codes=K):
    return (torch.randn(count, dim, generator=gen(seed)), torch.randn(codes, dim, generator=gen(seed + 1)),
            torch.randn(count, dim, generator=gen(seed + 2)))


def run_gumbench(spec, z, codebook, upstream, seed, train_mode=True):
    est = make_estimator(spec).train(train_mode)
    z, codebook = z.clone().requires_grad_(), codebook.clone().requires_grad_()
    out = est(z.unsqueeze(1), lambda value: (value * upstream.unsqueeze(1)).sum((-2, -1)), codebook=codebook,
              generator=gen(seed))
    out.loss.sum().backward()
    return out.value.squeeze(1), out.indices.squeeze(1), z.grad, codebook.grad


def run_oracle(module, z, upstream, seed):
    z = z.clone().requires_grad_()
    torch.manual_seed(seed)
    value, indices, _ = module(z)
    (value * upstream).sum().backward()
    return value, indices, z.grad, module.codebook.grad


def authors(kind, codebook, sigma, **options):
    """The diveq package's ``kind`` (DIVEQ or SFDIVEQ) holding ``codebook``."""
    kind = getattr(require_package("diveq"), kind)
    module = kind(codebook.shape[0], codebook.shape[1], noise_var=sigma, allow_warning=False, **options)
    with torch.no_grad():
        module.codebook.copy_(codebook)
    return module


@pytest.mark.parametrize("sigma", [1e-3, 0.3])
def test_diveq_agrees_with_the_authors_package(sigma):
    z, codebook, upstream = data()
    ours = run_gumbench(f"diveq[sigma={sigma}]", z, codebook, upstream, seed=5)
    theirs = run_oracle(authors("DIVEQ", codebook, sigma, codebook_reset=False, verbose=False), z, upstream, seed=5)
    assert torch.equal(ours[1], theirs[1])
    for mine, other in zip(ours[:1] + ours[2:], theirs[:1] + theirs[2:]):
        torch.testing.assert_close(mine, other, **TOL)


def test_diveq_noise_is_the_variance_in_vector_quantize_pytorch():
    """vqp's directional_reparam(x, e, variance) is diveq[sigma=sqrt(variance)] on the same draws."""
    directional_reparam = require_package("vector_quantize_pytorch.vector_quantize_pytorch").directional_reparam

    z, codebook, upstream = data(10)
    variance = 0.04
    spec = f"diveq[sigma={math.sqrt(variance)}]"
    value, indices, z_grad, book_grad = run_gumbench(spec, z, codebook, upstream, seed=3)
    x, book = z.clone().requires_grad_(), codebook.clone().requires_grad_()
    nearest = torch.cdist(x.detach(), book.detach()).argmin(-1)
    torch.manual_seed(3)
    theirs = directional_reparam(x, book[nearest], variance)
    (theirs * upstream).sum().backward()
    assert torch.equal(nearest, indices)
    torch.testing.assert_close(theirs, value, **TOL)
    torch.testing.assert_close(x.grad, z_grad, **TOL)
    torch.testing.assert_close(book.grad, book_grad, **TOL)


def test_diveq_without_noise_is_the_code_with_projected_gradients_in_float64():
    """sigma = 0: value = e; grad z = (I - u u^T) g and grad e = u u^T g, u = (e - z)/||e - z||."""
    z, codebook, upstream = (t.double() for t in data(20))
    value, indices, z_grad, book_grad = run_gumbench("diveq[sigma=0]", z, codebook, upstream, seed=0)
    e = codebook[indices]
    u = torch.nn.functional.normalize(e - z, dim=-1)
    along = (u * upstream).sum(-1, keepdim=True) * u
    torch.testing.assert_close(value, e)
    torch.testing.assert_close(z_grad, upstream - along)
    torch.testing.assert_close(book_grad, torch.zeros_like(codebook).index_add_(0, indices, along))


def test_diveq_eval_gives_the_nearest_code():
    z, codebook, upstream = data(25)
    value, indices, _, _ = run_gumbench("diveq[sigma=0.5]", z, codebook, upstream, seed=0, train_mode=False)
    assert torch.equal(indices, torch.cdist(z, codebook).argmin(-1))
    torch.testing.assert_close(value, codebook[indices])


def test_diveq_replacement_agrees_with_the_authors_package():
    """Every replace_every calls, codes chosen in too few of them become jittered copies of used codes: the same
    codes, the same copies (the same draws), counted per call as the authors do (a code counts once per call)."""
    every, calls = 3, 7
    _, codebook, _ = data(30, codes=12)
    module = authors("DIVEQ", codebook, 1e-3, replacement_iters=every, discard_threshold=0.5, verbose=False)
    est = make_estimator(f"diveq[replace=true,replace_every={every},discard_threshold=0.5]").train()
    ours, generator, changed = codebook.clone(), gen(7), 0
    torch.manual_seed(7)
    for call in range(calls):
        z = torch.randn(16, D, generator=gen(100 + call)) + 1.5  # off-centre: some codes go unused
        before = ours.clone()
        est(z.unsqueeze(1), lambda value: value.sum((-2, -1)), codebook=ours, generator=generator)
        module(z)
        torch.testing.assert_close(ours, module.codebook.detach(), rtol=0, atol=0)
        changed += int((ours != before).any(-1).sum())
    assert changed > 0


@pytest.mark.parametrize("sigma", [1e-3, 0.2])
def test_sf_diveq_agrees_with_the_authors_package(sigma):
    z, codebook, upstream = data(40)
    ours = run_gumbench(f"sf-diveq[sigma={sigma}]", z, codebook, upstream, seed=9)
    theirs = run_oracle(authors("SFDIVEQ", codebook, sigma, skip_iters=0, avg_iters=0), z, upstream, seed=9)
    assert torch.equal(ours[1], theirs[1])
    for mine, other in zip(ours[:1] + ours[2:], theirs[:1] + theirs[2:]):
        torch.testing.assert_close(mine, other, **TOL)


@pytest.mark.parametrize("codes", [3, 7])
def test_sf_diveq_eval_is_the_authors_projection(codes):
    z, codebook, upstream = data(50, codes=codes)
    value, indices, _, _ = run_gumbench("sf-diveq", z, codebook, upstream, seed=0, train_mode=False)
    projected, nearest, _ = authors("SFDIVEQ", codebook, 1e-3, skip_iters=0, avg_iters=0).inference(z)
    assert torch.equal(indices, nearest)
    torch.testing.assert_close(value, projected, **TOL)


def test_sf_diveq_without_noise_is_the_dithered_point_of_its_segment():
    z, codebook, upstream = (t.double() for t in data(60))
    value, indices, z_grad, _ = run_gumbench("sf-diveq[sigma=0]", z, codebook, upstream, seed=4)
    lam = torch.rand(1, K - 1, 1, generator=gen(4), dtype=torch.float64)[0]  # the first draw: one dither per segment
    points = (1 - lam) * codebook[:-1] + lam * codebook[1:]
    assert torch.equal(indices, torch.cdist(z, points).argmin(-1))
    torch.testing.assert_close(value, points[indices])
    assert (z_grad - upstream).abs().max() > 1e-3  # the directions carry no gradient: not straight-through


def test_sf_diveq_needs_two_codes_and_shapes_are_checked():
    z, codebook, _ = data(70, codes=1)
    with pytest.raises(GumbenchError, match="at least 2 codes"):
        make_estimator("sf-diveq").train()(z.unsqueeze(1), lambda v: v.sum((-2, -1)), codebook=codebook)
    with pytest.raises(GumbenchError, match="replace_every only applies with replace=true"):
        make_estimator("diveq[replace_every=5]")


@pytest.mark.parametrize("spec", ["diveq", "sf-diveq", "diveq[replace=true,replace_every=10]"])
def test_trains_a_few_steps_on_gmm_vq(spec):
    frame = train("gmm-vq[batch=64]", spec, steps=30, seed=0, eval_every=30)
    # a smoke test: the reconstruction falls (SF-DiVeQ's by about 18% in 30 steps, DiVeQ's by more)
    assert frame["loss_reconstruction"].iloc[-5:].mean() < 0.9 * frame["loss_reconstruction"].iloc[:5].mean()
    assert (frame["grad_norm_bottleneck_codebook"] > 0).all()
