"""VQBridge against vector-quantize-pytorch 1.34.1 (a pinned test-only oracle), which has no projector of its own
but the hook ``vq_bridge`` (a module applied to the codebook before the lookup, with a learnable codebook): it is
handed this estimator's projector, so the lookup, the straight-through value and the losses around it are
checked. As for vq-commitment, vqp's loss beta ||x - e||^2 has no stop-gradient: its codebook and projector
gradients are beta times gumbench's."""

import pytest
import torch

from gumbench.benchmarks.training import train
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.conftest import gen, require_package

B, N, G, D, K = 4, 6, 3, 5, 8
TOL = dict(rtol=1e-5, atol=1e-6)


class Hook(torch.nn.Module):
    """vqp's vq_bridge: the estimator's projector (held outside vqp's own parameters)."""

    def __init__(self, estimator):
        super().__init__()
        self.estimator = [estimator]

    def forward(self, books):
        return self.estimator[0].bridged(books)


def made(spec, codebook, seed=1, scale=0.3):
    """An estimator whose projector is made and whose recover layer is moved away from zero."""
    est = make_estimator(spec).train()
    est(torch.zeros(1, G, D), lambda v: v.sum((-2, -1)), codebook=codebook.clone(), generator=gen(seed))
    with torch.no_grad():
        est.recover_weight.copy_(torch.randn(est.recover_weight.shape, generator=gen(seed + 1)) * scale)
        est.recover_bias.copy_(torch.randn(est.recover_bias.shape, generator=gen(seed + 2)) * scale)
    return est


@pytest.mark.parametrize("spec", ["vqbridge[beta=0.5]", "vqbridge[depth=2,patch=2,width=32]"])
def test_agrees_with_vector_quantize_pytorch_through_its_hook(spec):
    z, codebook = torch.randn(B, N, G, D, generator=gen(0)), torch.randn(G, K, D, generator=gen(1))
    upstream = torch.randn(B, N, G, D, generator=gen(2))
    est = made(spec, codebook)
    beta = est.params["beta"]
    vqp = require_package("vector_quantize_pytorch")
    vq = vqp.VectorQuantize(dim=G * D, codebook_size=K, codebook_dim=D, heads=G, separate_codebook_per_head=True,
                            vq_bridge=Hook(est), learnable_codebook=True, ema_update=False, rotation_trick=False,
                            commitment_weight=beta).train()
    with torch.no_grad():
        vq._codebook.embed.copy_(codebook)
    x = z.reshape(B, N, G * D).clone().requires_grad_()
    value, indices, loss = vq(x)
    ((value.reshape(B, N, G, D) * upstream).sum((-2, -1)).mean() + loss).backward()
    theirs = {name: param.grad.clone() for name, param in est.named_parameters()}
    est.zero_grad()
    zz, book = z.clone().requires_grad_(), codebook.clone().requires_grad_()
    out = est(zz, lambda v: (v * upstream).sum((-2, -1)), codebook=book)
    out.surrogate.mean().backward()
    assert torch.equal(out.indices, indices)
    torch.testing.assert_close(out.value, value.reshape(B, N, G, D), **TOL)
    torch.testing.assert_close(loss, out.aux["commitment"].mean(), **TOL)
    torch.testing.assert_close(zz.grad, x.grad.reshape(B, N, G, D), **TOL)
    torch.testing.assert_close(beta * book.grad, vq._codebook.embed.grad, **TOL)
    for name, param in est.named_parameters():
        torch.testing.assert_close(beta * param.grad, theirs[name], **TOL)
    assert est.recover_weight.grad.abs().max() > 1e-4  # the projector really learns from the codebook loss


def test_starts_as_vq_commitment_and_the_projector_moves_every_code():
    z, codebook = torch.randn(B, N, G, D, generator=gen(10)), torch.randn(K, D, generator=gen(11))
    upstream = torch.randn(B, N, G, D, generator=gen(12))
    outs = []
    for spec in ("vqbridge", "vq-commitment"):
        book = codebook.clone().requires_grad_()
        out = make_estimator(spec).train()(z, lambda v: (v * upstream).sum((-2, -1)), codebook=book, generator=gen(0))
        out.surrogate.mean().backward()
        outs.append((out, book.grad))
    (bridge, bridge_grad), (plain, plain_grad) = outs
    assert torch.equal(bridge.indices, plain.indices)
    torch.testing.assert_close(bridge.value, plain.value)
    torch.testing.assert_close(bridge_grad, plain_grad)  # the recover layer starts at zero: E' = E
    far = codebook.clone()
    far[-1] = 50.0  # never the nearest code
    est = made("vqbridge", far.unsqueeze(0).expand(G, K, D))
    book = far.clone().requires_grad_()
    out = est(z, lambda v: (v * upstream).sum((-2, -1)), codebook=book)
    out.surrogate.mean().backward()
    assert not (out.indices == K - 1).any()
    assert book.grad[-1].abs().sum() > 1e-6  # dense codebook gradients: the unchosen code moves too
    plain = make_estimator("vq-commitment").train()
    book = far.clone().requires_grad_()
    plain(z, lambda v: (v * upstream).sum((-2, -1)), codebook=book).surrogate.mean().backward()
    assert book.grad[-1].abs().sum() == 0  # while vq-commitment's unchosen code gets none


def test_projector_is_drawn_from_the_first_generator_and_sizes_are_checked():
    codebook = torch.randn(G, K, D, generator=gen(20))
    first, second = made("vqbridge", codebook, seed=3, scale=0), made("vqbridge", codebook, seed=3, scale=0)
    for (name, a), (_, b) in zip(first.named_parameters(), second.named_parameters()):
        assert torch.equal(a, b), name
    with pytest.raises(GumbenchError, match="made for vectors of D = 5"):
        first(torch.zeros(1, G, 4), lambda v: v.sum((-2, -1)), codebook=torch.zeros(G, K, 4))
    with pytest.raises(GumbenchError, match="multiple of patch=3"):
        make_estimator("vqbridge[patch=3]")(torch.zeros(1, G, D), lambda v: v.sum((-2, -1)), codebook=codebook)
    with pytest.raises(GumbenchError, match="width must be a multiple of heads"):
        make_estimator("vqbridge[width=10,heads=4]")
    with pytest.raises(GumbenchError, match="first forward call"):
        make_estimator("vqbridge").assign_codes(torch.zeros(1, G, D), codebook)


def test_trains_a_few_steps_on_gmm_vq():
    frame = train("gmm-vq[batch=64]", "vqbridge[width=16]", steps=30, seed=0, eval_every=30)
    assert frame["loss_reconstruction"].iloc[-5:].mean() < 0.8 * frame["loss_reconstruction"].iloc[:5].mean()
