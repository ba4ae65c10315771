"""ibq against the formulas of the paper and its released quantizer (vector-quantize-pytorch has no IBQ): value,
index backpropagation to every code, losses and their gradients by hand, errors, a short training run."""

import pytest
import torch

from gumbench.benchmarks.training import train
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.conftest import require_package


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_vector_quantize_pytorch_has_no_ibq():
    vqp = require_package("vector_quantize_pytorch")
    names = {n.lower() for n in dir(vqp)}
    assert not {n for n in names if "ibq" in n or "indexprop" in n or "index_backprop" in n}


def test_value_losses_and_gradients_by_hand_in_float64():
    z = torch.randn(6, 2, 3, generator=gen(0), dtype=torch.float64, requires_grad=True)
    codebook = torch.randn(2, 5, 3, generator=gen(1), dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(6, 2, 3, generator=gen(2), dtype=torch.float64)
    out = make_estimator("ibq[beta=0.25]")(z, lambda v: (v * upstream).sum((-2, -1)), codebook=codebook)
    logits = torch.einsum("ngd,gkd->ngk", z.detach(), codebook.detach())
    k = logits.argmax(-1)
    e = codebook.detach()[torch.arange(2), k]
    assert torch.equal(out.indices, k) and torch.equal(make_estimator("ibq").assign_codes(z, codebook), k)
    torch.testing.assert_close(out.value, e)  # forward: the chosen code
    torch.testing.assert_close(out.aux["commitment"], (e - z.detach()).pow(2).mean((-2, -1)))
    torch.testing.assert_close(out.aux["double_quantization"], 1.25 * (e - z.detach()).pow(2).mean((-2, -1)))

    # the value's backward, by hand: g = upstream; grad logits = p * (C g - p.(C g)); grad z = C^T grad logits;
    # grad C_j = (h_j + grad-logit term) ... : d/dC of (h - sg p + p) C . g = (h_j + 0) g + grad_logit_j z
    gz, gc = torch.autograd.grad(out.loss.sum(), [z, codebook], retain_graph=True)
    p = torch.softmax(logits, -1)
    cg = torch.einsum("gkd,ngd->ngk", codebook.detach(), upstream)
    grad_logits = p * (cg - (p * cg).sum(-1, keepdim=True))
    torch.testing.assert_close(gz, torch.einsum("ngk,gkd->ngd", grad_logits, codebook.detach()))
    hard = torch.nn.functional.one_hot(k, 5).double()
    expected = torch.einsum("ngk,ngd->gkd", hard, upstream) + torch.einsum("ngk,ngd->gkd", grad_logits, z.detach())
    torch.testing.assert_close(gc, expected)
    # every code row gets a gradient, not only the chosen ones
    assert (gc.abs().sum(-1) > 0).all()
    assert hard.sum(0).eq(0).any(), "some code is never chosen, so the test shows the soft path reaching it"

    # the losses' gradients: double quantization moves z to sg[e] and e to sg[z] (beta); commitment has no stop-gradient
    gz, gc = torch.autograd.grad(out.aux["double_quantization"].sum(), [z, codebook], retain_graph=True)
    torch.testing.assert_close(gz, 2 * (z.detach() - e) / 6)
    torch.testing.assert_close(gc, torch.einsum("ngk,ngd->gkd", hard, 0.25 * 2 * (e - z.detach()) / 6))
    gz, gc = torch.autograd.grad(out.aux["commitment"].sum(), [z, codebook])
    g = 2 * (e - z.detach()) / 6  # d commitment / d z_q
    cg = torch.einsum("gkd,ngd->ngk", codebook.detach(), g)
    grad_logits = p * (cg - (p * cg).sum(-1, keepdim=True))
    torch.testing.assert_close(gz, -g + torch.einsum("ngk,gkd->ngd", grad_logits, codebook.detach()))
    torch.testing.assert_close(
        gc, torch.einsum("ngk,ngd->gkd", hard, g) + torch.einsum("ngk,ngd->gkd", grad_logits, z.detach())
    )


def test_shared_codebook_and_half_precision_in_fp32():
    z = torch.randn(4, 3, 2, generator=gen(0))
    codebook = torch.randn(5, 2, generator=gen(1))
    full = make_estimator("ibq")(z, lambda v: v.sum((-2, -1)), codebook=codebook)
    per_group = make_estimator("ibq")(z, lambda v: v.sum((-2, -1)), codebook=codebook.expand(3, 5, 2))
    assert torch.equal(full.indices, per_group.indices)
    half = make_estimator("ibq")(
        z.half().requires_grad_(True), lambda v: v.float().sum((-2, -1)), codebook=codebook.half()
    )
    assert half.value.dtype == torch.float16 and half.aux["commitment"].dtype == torch.float32


def test_errors_name_what_is_allowed():
    with pytest.raises(
        GumbenchError,
        match=r"ibq: max \|input\| \+ max \|code\| must be at most .* for float16 with D = 4 "
        r"\(the softmax path's gradient grows like D \|z\| \|e\|\), got 300",
    ):
        make_estimator("ibq")(torch.full((2, 1, 4), 100.0, dtype=torch.float16), lambda v: v.sum((-2, -1)),
                              codebook=torch.full((1, 3, 4), 200.0, dtype=torch.float16))
    with pytest.raises(GumbenchError, match="ibq: NaN or inf in the codebook"):
        make_estimator("ibq")(
            torch.zeros(2, 1, 4), lambda v: v.sum((-2, -1)), codebook=torch.full((1, 3, 4), float("nan"))
        )
    with pytest.raises(GumbenchError, match=r"ibq: beta \(weight of"):
        make_estimator("ibq[beta=-1]")


def test_trains_a_few_steps_on_gmm_vq():
    frame = train("gmm-vq[batch=64]", "ibq", steps=30, seed=0, eval_every=30)
    assert frame["loss_reconstruction"].iloc[-5:].mean() < 0.9 * frame["loss_reconstruction"].iloc[:5].mean()
    assert {"loss_commitment", "loss_double_quantization"} <= set(frame.columns)
