"""simvq against vector-quantize-pytorch's SimVQ on identical inputs, frozen codebook and linear map; W as a
trainable parameter of the model; errors; a short training run."""

import pytest
import torch
from torch.nn.parameter import UninitializedParameter

from gumbench.benchmarks.training import DiscreteBottleneck, make_training_task, train
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.conftest import require_package

B, N, D, K, BETA = 3, 5, 4, 7, 0.25


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("rotation", [False, True])
def test_values_indices_losses_and_gradients_match_vector_quantize_pytorch(rotation):
    vqp = require_package("vector_quantize_pytorch")
    z = torch.randn(B, N, 1, D, generator=gen(0))
    frozen = torch.randn(1, K, D, generator=gen(1))
    weight = torch.eye(D) + 0.3 * torch.randn(D, D, generator=gen(2))
    upstream = torch.randn(B, N, 1, D, generator=gen(3))
    est = make_estimator(f"simvq[beta={BETA},rotation={str(rotation).lower()}]")
    est(z, lambda v: v.sum((-2, -1)), codebook=frozen)  # the first call makes W (the identity)
    assert torch.equal(est.weight.detach(), torch.eye(D))
    with torch.no_grad():
        est.weight.copy_(weight)
    zo, book = z.clone().requires_grad_(True), frozen.clone().requires_grad_(True)
    out = est(zo, lambda v: (v * upstream).sum((-2, -1)), codebook=book)

    sim = vqp.SimVQ(dim=D, codebook_size=K, rotation_trick=rotation, input_to_quantize_commit_loss_weight=BETA)
    with torch.no_grad():
        sim.frozen_codebook.copy_(frozen[0])
        sim.code_transform.weight.copy_(weight.T)  # Linear computes C weight^T: weight = W^T
    x = z.squeeze(-2).clone().requires_grad_(True)
    value, indices, commit = sim(x)

    torch.testing.assert_close(out.value.squeeze(-2), value, atol=1e-6, rtol=1e-5)
    assert torch.equal(out.indices.squeeze(-1), indices)
    # vqp: one loss, the batch mean of mse(sg x, e) + beta * mse(x, sg e); ours per row, kept apart
    torch.testing.assert_close((out.aux["codebook"] + out.aux["commitment"]).mean(), commit)
    code = (frozen[0] @ weight)[out.indices]  # (B, N, 1, D): the chosen codes of C W
    torch.testing.assert_close(out.aux["commitment"], BETA * (code - z).pow(2).mean((-2, -1)))
    (out.loss.sum() + (out.aux["codebook"] + out.aux["commitment"]).mean()).backward()
    ((value * upstream.squeeze(-2)).sum() + commit).backward()
    torch.testing.assert_close(zo.grad.squeeze(-2), x.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(est.weight.grad, sim.code_transform.weight.grad.T, atol=1e-6, rtol=1e-5)
    assert book.grad is None  # C is frozen


def test_nearest_code_of_the_effective_codebook_by_hand():
    est = make_estimator("simvq")
    frozen = torch.randn(2, 6, 3, generator=gen(0))
    z = torch.randn(10, 2, 3, generator=gen(1))
    est(z, lambda v: v.sum((-2, -1)), codebook=frozen)
    with torch.no_grad():
        est.weight.copy_(torch.randn(3, 3, generator=gen(2)))
    out = est(z, lambda v: v.sum((-2, -1)), codebook=frozen)
    effective = frozen @ est.weight.detach()  # (G, K, D), one W for the groups
    brute = torch.cdist(z.transpose(0, 1), effective).argmin(-1).T
    assert torch.equal(out.indices, brute) and torch.equal(est.assign_codes(z, frozen), brute)
    torch.testing.assert_close(out.value, effective[torch.arange(2), brute])
    torch.testing.assert_close(out.aux["codebook"], (z - out.value).pow(2).mean((-2, -1)))
    torch.testing.assert_close(out.aux["commitment"], 0.25 * (z - out.value).pow(2).mean((-2, -1)))


def test_w_is_a_model_parameter_trained_and_fresh_per_estimator():
    est = make_estimator("simvq")
    # W is its one parameter from the start, uninitialized (no shape) until the first call ...
    assert [type(p) for p in est.parameters()] == [UninitializedParameter] and next(est.parameters()) is est.weight
    assert list(est.state_dict()) == []  # ... and left out of the state until it is made
    bottleneck = DiscreteBottleneck(est, in_dim=5, groups=2, codes=6, code_dim=3)
    optimizer = torch.optim.Adam(bottleneck.parameters(), lr=0.1)  # ... but the parent module still collects W
    assert any(p is est.weight for p in bottleneck.parameters())
    features = torch.randn(8, 5, generator=gen(0))
    frozen = bottleneck.codebook.detach().clone()
    out = bottleneck(features, lambda q: q.pow(2).sum(-1))
    optimizer.zero_grad()
    out.surrogate.mean().backward()
    assert "estimator.weight" in dict(bottleneck.named_parameters())
    assert [type(p) for p in est.parameters()] == [torch.nn.Parameter] and est.weight.shape == (3, 3)  # made: D x D
    assert est.weight.grad is not None and est.weight.grad.abs().sum() > 0 and bottleneck.codebook.grad is None
    optimizer.step()
    assert not torch.equal(est.weight.detach(), torch.eye(3)) and torch.equal(bottleneck.codebook.detach(), frozen)
    task = make_training_task("gmm-vq[batch=16,codes=8,dim=4]")
    model = task.build(make_estimator("simvq"))
    groups = task.parameter_groups(model)
    assert any(p is model.bottleneck.estimator.weight for p in groups["model"])
    assert make_estimator("simvq").weight is not est.weight  # a new estimator (one per training run) has its own W


def test_trains_a_few_steps_on_gmm_vq_and_moves_only_w():
    seen = {}

    def keep(step, model):
        if step in (1, 30):
            seen[step] = (
                model.bottleneck.codebook.detach().clone(),
                model.bottleneck.estimator.weight.detach().clone(),
            )

    frame = train("gmm-vq[batch=64]", "simvq", steps=30, seed=0, eval_every=30, callback=keep)
    assert frame["loss_reconstruction"].iloc[-5:].mean() < 0.8 * frame["loss_reconstruction"].iloc[:5].mean()
    assert torch.equal(seen[1][0], seen[30][0]) and not torch.equal(seen[1][1], seen[30][1])
    assert (frame["grad_norm_bottleneck_codebook"] == 0).all() and (frame["grad_norm_model"] > 0).all()


def test_errors_name_what_is_allowed():
    est = make_estimator("simvq")
    est(torch.randn(2, 1, 3), lambda v: v.sum((-2, -1)), codebook=torch.randn(1, 4, 3))
    with pytest.raises(
        GumbenchError, match=r"simvq: its linear map W was made for vectors of D = 3 on the first call; got D = 4"
    ):
        est(torch.randn(2, 1, 4), lambda v: v.sum((-2, -1)), codebook=torch.randn(1, 4, 4))
    with pytest.raises(GumbenchError, match="simvq: the linear map W is made on the first forward call"):
        make_estimator("simvq").assign_codes(torch.randn(2, 1, 3), torch.randn(1, 4, 3))
    with torch.no_grad():
        est.weight.fill_(float("inf"))
    with pytest.raises(
        GumbenchError, match="simvq: NaN or inf in the effective codebook C W; allowed are finite values"
    ):
        est(torch.randn(2, 1, 3), lambda v: v.sum((-2, -1)), codebook=torch.randn(1, 4, 3))
    with pytest.raises(GumbenchError, match="simvq: NaN or inf in the frozen codebook C"):
        make_estimator("simvq")(
            torch.randn(2, 1, 3), lambda v: v.sum((-2, -1)), codebook=torch.full((1, 4, 3), float("nan"))
        )
    with pytest.raises(
        GumbenchError, match=r"simvq: beta \(commitment weight\) must be a finite number in \[0, 100\], got -1.0"
    ):
        make_estimator("simvq[beta=-1]")
