"""Gumbel-softmax relaxations (soft-gumbel, st-gumbel): eval is the noiseless argmax, the backward uses the forward's
noise."""

import torch

from gumbench.estimators import make_estimator
from gumbench.kernels.reference import gumbel_noise


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_st_gumbel_eval_is_the_noiseless_argmax():
    est = make_estimator("st-gumbel").eval()
    logits = torch.randn(100, 2, 7, generator=gen(0))
    out = est(logits, lambda y: y.sum((-2, -1)), generator=gen(1))
    assert torch.equal(out.indices, logits.argmax(-1))
    assert torch.equal(out.value, torch.nn.functional.one_hot(logits.argmax(-1), 7).float())
    train = make_estimator("st-gumbel")(logits, lambda y: y.sum((-2, -1)), generator=gen(1))
    assert not torch.equal(train.indices, logits.argmax(-1)), "training mode must sample, not take the argmax"


def test_st_gumbel_backward_is_the_softmax_jacobian_with_the_same_noise():
    logits = torch.randn(8, 3, 5, generator=gen(0), requires_grad=True)
    upstream = torch.randn(8, 3, 5, generator=gen(1))
    out = make_estimator("st-gumbel[tau=0.7]")(logits, lambda y: (y * upstream).sum((-2, -1)), generator=gen(2))
    out.surrogate.sum().backward()
    g = gumbel_noise(logits.shape, generator=gen(2))
    leaf = logits.detach().clone().requires_grad_(True)
    soft = torch.softmax((leaf + g) / 0.7, -1)
    (soft * upstream).sum().backward()
    torch.testing.assert_close(logits.grad, leaf.grad)
    assert torch.equal(out.indices, (logits.detach() + g).argmax(-1))


# --- gumbench.kernels.reference (to move to tests/kernels/test_reference.py) --------------------------


