"""FSP against vector-quantize-pytorch 1.34.1's ``FSP`` (a pinned test-only oracle, ``vector_norm="none"``: its
batch-statistics loss is left out, see gumbench/estimators/fsp.py) and against its formulas in float64.

Both draw the in-bin perturbation and the quantize-or-perturb choice from one stream seeded alike (vqp from
torch's global generator, gumbench from its ``generator``), in the same order.
"""

import math

import pytest
import torch

from gumbench.benchmarks.training import train
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.conftest import gen, require_package

LEVELS = (8, 5, 2, 3)
N, G = 20, 3
TOL = dict(rtol=1e-5, atol=1e-6)


def run_gumbench(spec, z, upstream, seed, train_mode=True):
    est = make_estimator(spec).train(train_mode)
    z = z.clone().requires_grad_()
    codebook = torch.zeros(est.codes, len(est.levels), dtype=z.dtype)  # shared; only its shape is read
    out = est(z, lambda value: (value * upstream).sum((-2, -1)), codebook=codebook, generator=gen(seed))
    out.loss.sum().backward()
    return est, out, z.grad


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "normal", "laplace", "cauchy"])
def test_agrees_with_vector_quantize_pytorch(act, rate, inverse):
    z = torch.randn(N, G, len(LEVELS), generator=gen(1)) * 1.5
    upstream = torch.randn(N, G, len(LEVELS), generator=gen(2))
    spec = f"fsp[levels={'-'.join(map(str, LEVELS))},act={act},rate={rate},inverse={str(inverse).lower()}]"
    _, out, z_grad = run_gumbench(spec, z, upstream, seed=7)
    fsp = require_package("vector_quantize_pytorch").FSP
    oracle = fsp(levels=list(LEVELS), act_name=act, quantize_rate=rate, need_inv_act=inverse, vector_norm="none")
    oracle.train()
    x = z.clone().requires_grad_()
    torch.manual_seed(7)
    value, indices, norm_loss, _ = oracle(x)
    (value * upstream).sum().backward()
    assert torch.equal(out.indices, indices.long()) and float(norm_loss.detach()) == 0
    torch.testing.assert_close(out.value, value, **TOL)
    torch.testing.assert_close(z_grad, x.grad, **TOL)


def test_bins_centres_and_gradient_by_hand_in_float64():
    """Eval: digit floor(F(z) L), value (centre - 1/2) sqrt(12), gradient sqrt(12) F'(z) (tanh: (1 - tanh^2)/2)."""
    z = torch.randn(N, G, len(LEVELS), generator=gen(3), dtype=torch.float64) * 2
    upstream = torch.randn(z.shape, generator=gen(4), dtype=torch.float64)
    est, out, z_grad = run_gumbench("fsp[levels=8-5-2-3]", z, upstream, seed=0, train_mode=False)
    levels = torch.tensor(LEVELS, dtype=torch.float64)
    cdf = (torch.tanh(z) + 1) / 2
    digits = torch.floor(cdf * levels)
    torch.testing.assert_close(out.value, ((digits + 0.5) / levels - 0.5) * math.sqrt(12))
    torch.testing.assert_close(z_grad, upstream * math.sqrt(12) * (1 - torch.tanh(z) ** 2) / 2)
    torch.testing.assert_close(est.index_digits(out.indices).double(), digits)
    torch.testing.assert_close(est.decode(out.indices, torch.zeros(1, dtype=torch.float64)), out.value)


def test_training_perturbs_within_half_a_bin_and_eval_quantizes():
    z = torch.randn(2000, 1, 4, generator=gen(5))
    upstream = torch.ones_like(z)
    est, out, _ = run_gumbench("fsp[levels=5-5-5-5]", z, upstream, seed=1)
    cdf = (torch.tanh(z) + 1) / 2
    moved = out.value / math.sqrt(12) + 0.5 - cdf
    assert moved.abs().max() <= 1 / 10 + 1e-6 and moved.abs().max() > 0.09  # up to half a bin (1/(2 L))
    eval_value = est.eval()(z, lambda v: v.sum((-2, -1)), codebook=torch.zeros(625, 4)).value
    assert torch.unique(eval_value).numel() == 5


def test_two_levels_are_allowed_and_errors_name_what_is_allowed():
    make_estimator("fsp[levels=2-2-2]")
    with pytest.raises(GumbenchError, match=r"every level must be in \[2, 1000\]"):
        make_estimator("fsp[levels=1-4]")
    with pytest.raises(GumbenchError, match="act"):
        make_estimator("fsp[act=gumbel]")


def test_trains_a_few_steps_on_gmm_vq():
    frame = train("gmm-vq[batch=64,codes=625,code_dim=4]", "fsp[levels=5-5-5-5]", steps=30, seed=0, eval_every=30)
    assert frame["loss_reconstruction"].iloc[-5:].mean() < 0.9 * frame["loss_reconstruction"].iloc[:5].mean()
