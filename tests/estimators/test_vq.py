"""vq-commitment: nearest code, losses, straight-through, EMA codebook, and each codebook-care option against a
hand-built reference.

Codebook care: rotation trick, k-means init, dead-code restart, cosine codebooks (exact up to float64 rounding).
"""

import pytest
import torch

from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from gumbench.estimators.vq import kmeans, nearest_codes

OPTIONS = ["rotation=true", "init=kmeans", "restart=true,restart_threshold=1", "cosine=true",
           "ema=true,rotation=true,init=kmeans,restart=true,restart_threshold=1,cosine=true"]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_vq_nearest_code_losses_and_straight_through():
    z = torch.randn(50, 2, 3, generator=gen(0), requires_grad=True)
    codebook = torch.randn(2, 7, 3, generator=gen(1), requires_grad=True)
    brute = torch.cdist(z.detach().transpose(0, 1), codebook.detach()).argmin(-1).T
    assert torch.equal(nearest_codes(z.detach(), codebook.detach()), brute)
    upstream = torch.randn(50, 2, 3, generator=gen(2))
    out = make_estimator("vq-commitment[beta=0.25]")(z, lambda q: (q * upstream).sum((-2, -1)), codebook=codebook)
    z_q = codebook.detach()[torch.arange(2), brute]
    torch.testing.assert_close(out.value, z_q)
    torch.testing.assert_close(out.aux["codebook"], (z.detach() - z_q).pow(2).mean((-2, -1)))
    torch.testing.assert_close(out.aux["commitment"], 0.25 * (z.detach() - z_q).pow(2).mean((-2, -1)))
    out.surrogate.sum().backward()
    # straight-through: upstream gradient copied to z, plus the commitment term
    torch.testing.assert_close(z.grad, upstream + 0.25 * 2 * (z.detach() - z_q) / 6)


def test_vq_ema_moves_codes_to_the_mean_of_their_vectors():
    codebook = torch.tensor([[[0.0, 0.0], [10.0, 10.0], [-50.0, 50.0]]])  # (1, 3, 2)
    est = make_estimator("vq-commitment[ema=true,decay=0.5]")
    z = torch.tensor([[1.0, 1.0], [2.0, 0.0], [9.0, 11.0]]).reshape(3, 1, 2)
    for _ in range(40):
        out = est(z, lambda q: q.sum((-2, -1)), codebook=codebook)
    assert "codebook" not in out.aux
    torch.testing.assert_close(codebook[0, 0], torch.tensor([1.5, 0.5]), atol=1e-4, rtol=0)
    torch.testing.assert_close(codebook[0, 1], torch.tensor([9.0, 11.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(codebook[0, 2], torch.tensor([-50.0, 50.0]))  # never chosen: unchanged
    frozen = codebook.clone()
    est.eval()(z + 1, lambda q: q.sum((-2, -1)), codebook=codebook)
    assert torch.equal(codebook, frozen), "eval mode must not update the codebook"


def linear_loss(upstream):
    return lambda q: (q * upstream).sum((-2, -1))


def rotation_matrix(z, e):
    """R = I - 2 r r^T + 2 q u^T with u = z/|z|, q = e/|e|, r = (u + q)/|u + q| (Fifty et al. 2024)."""
    u, q = z / z.norm(), e / e.norm()
    r = (u + q) / (u + q).norm()
    eye = torch.eye(z.numel(), dtype=z.dtype)
    return eye - 2 * torch.outer(r, r) + 2 * torch.outer(q, u)


def test_rotation_trick_gradient_is_the_rotated_gradient():
    z = torch.randn(30, 2, 3, generator=gen(0), dtype=torch.float64, requires_grad=True)
    codebook = torch.randn(2, 5, 3, generator=gen(1), dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(30, 2, 3, generator=gen(2), dtype=torch.float64)
    # beta = 0: the commitment term adds nothing to z's gradient, only the downstream loss reaches z
    out = make_estimator("vq-commitment[rotation=true,beta=0]")(z, linear_loss(upstream), codebook=codebook)
    index = nearest_codes(z.detach(), codebook.detach())
    e = codebook.detach()[torch.arange(2), index]  # (30, 2, 3)
    assert torch.equal(out.value, e), "the forward value is the code itself"
    out.surrogate.sum().backward()
    expected = torch.empty_like(e)
    for n in range(30):
        for g in range(2):
            zz, ee = z.detach()[n, g], e[n, g]
            rot, scale = rotation_matrix(zz, ee), ee.norm() / zz.norm()
            torch.testing.assert_close(rot.T @ rot, torch.eye(3, dtype=rot.dtype))  # a rotation ...
            assert torch.linalg.det(rot) == pytest.approx(1.0, abs=1e-12)  # ... not a reflection
            torch.testing.assert_close(scale * rot @ zz, ee)  # that maps z_e onto e
            expected[n, g] = scale * rot.T @ upstream[n, g]
    torch.testing.assert_close(z.grad, expected)
    # the codebook still learns from its codebook loss only
    assert codebook.grad is not None and codebook.grad.abs().sum() > 0


def test_rotation_trick_degenerate_directions_stay_finite():
    upstream = torch.tensor([[[0.3, -1.0, 2.0]]], dtype=torch.float64)
    codebook = torch.tensor([[[3.0, 0.0, 0.0]]], dtype=torch.float64)
    est = make_estimator("vq-commitment[rotation=true,beta=0]")
    # z opposite the code: R becomes the reflection I - 2 u u^T (still maps u onto q), scale 3/2
    z = torch.tensor([[[-2.0, 0.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    est(z, linear_loss(upstream), codebook=codebook).surrogate.sum().backward()
    u = torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(
        z.grad[0, 0], 1.5 * (torch.eye(3, dtype=torch.float64) - 2 * torch.outer(u, u)) @ upstream[0, 0]
    )
    # z = 0 has no direction: plain straight-through
    z = torch.zeros(1, 1, 3, dtype=torch.float64, requires_grad=True)
    est(z, linear_loss(upstream), codebook=codebook).surrogate.sum().backward()
    torch.testing.assert_close(z.grad, upstream)


def mixture(centres, per_cluster, generator, spread=0.1):
    labels = torch.arange(len(centres)).repeat(per_cluster)
    return centres[labels] + spread * torch.randn(
        len(labels), centres.shape[-1], generator=generator, dtype=centres.dtype
    ), labels


def test_kmeans_init_puts_codes_at_the_cluster_centres():
    # two groups, each a mixture of 4 well-separated clusters (centres 20 apart, spread 0.1)
    centres = [torch.tensor([[10.0, 10], [-10, 10], [10, -10], [-10, -10]], dtype=torch.float64),
               torch.tensor([[0.0, 30], [30, 0], [0, -30], [-30, 0]], dtype=torch.float64)]
    drawn = [mixture(c, 100, gen(g)) for g, c in enumerate(centres)]
    z = torch.stack([points for points, _ in drawn], dim=1)  # (400, 2, 2)
    codebook = torch.randn(2, 4, 2, generator=gen(5), dtype=torch.float64)
    initial = codebook.clone()
    est = make_estimator("vq-commitment[init=kmeans]")
    est.eval()(z, lambda q: q.sum((-2, -1)), codebook=codebook)
    assert torch.equal(codebook, initial), "k-means runs on the first training call, not in eval"
    out = est.train()(z, lambda q: q.sum((-2, -1)), codebook=codebook, generator=gen(6))
    for g, (points, labels) in enumerate(drawn):
        means = torch.stack([points[labels == k].mean(0) for k in range(4)])
        match = torch.cdist(means, codebook[g]).argmin(-1)
        assert sorted(match.tolist()) == [0, 1, 2, 3], "one code per cluster"
        torch.testing.assert_close(codebook[g, match], means)
        # the first call already quantizes with the new codes: each cluster goes to its own code
        assert torch.equal(out.indices[:, g], match[labels])
    # lazy and once: a later training batch does not re-run it
    after = codebook.clone()
    est(z + 5, lambda q: q.sum((-2, -1)), codebook=codebook, generator=gen(7))
    assert torch.equal(codebook, after)


def test_kmeans_pools_groups_for_a_shared_codebook_and_survives_few_points():
    centres = torch.tensor([[5.0, 0], [-5, 0], [0, 5]], dtype=torch.float64)
    points, labels = mixture(centres, 50, gen(0))
    codebook = torch.zeros(3, 2, dtype=torch.float64)  # (K, D), shared by the 2 groups
    make_estimator("vq-commitment[init=kmeans]")(
        points.reshape(75, 2, 2), lambda q: q.sum((-2, -1)), codebook=codebook, generator=gen(1)
    )
    means = torch.stack([points[labels == k].mean(0) for k in range(3)])
    match = torch.cdist(means, codebook).argmin(-1)
    assert sorted(match.tolist()) == [0, 1, 2]
    torch.testing.assert_close(codebook[match], means)
    # fewer distinct points than codes: every code lands on a data point, nothing is NaN
    few = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]], dtype=torch.float64)
    centres = kmeans(few.transpose(0, 1), 5, 10, generator=gen(2))
    assert torch.isfinite(centres).all()
    assert (torch.cdist(centres[0], few[:, 0]).min(-1).values == 0).all()


def test_restart_revives_dead_codes():
    codebook = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]]], dtype=torch.float64)
    z = torch.tensor([[0.1, -0.1], [0.0, 0.2], [0.9, 1.1], [1.2, 0.8]], dtype=torch.float64).reshape(4, 1, 2)
    est = make_estimator("vq-commitment[restart=true,restart_threshold=3]")
    for calls in (1, 2):
        out = est(z, lambda q: q.sum((-2, -1)), codebook=codebook, generator=gen(0))
        assert not (out.indices == 2).any()
        assert est.unused_calls.tolist() == [[0, 0, calls]]
        assert codebook[0, 2].tolist() == [100.0, 100.0], "not dead before the threshold"
    est.eval()(z, lambda q: q.sum((-2, -1)), codebook=codebook)
    assert est.unused_calls.tolist() == [[0, 0, 2]], "eval calls do not count"
    est.train()(z, lambda q: q.sum((-2, -1)), codebook=codebook, generator=gen(0))
    copied = (z[:, 0] == codebook[0, 2]).all(-1)
    assert copied.sum() == 1, "the dead code is now one of the batch's vectors"
    assert codebook[0, :2].tolist() == [[0.0, 0.0], [1.0, 1.0]], "used codes are left alone"
    assert est.unused_calls.tolist() == [[0, 0, 0]]
    out = est(z, lambda q: q.sum((-2, -1)), codebook=codebook, generator=gen(0))
    assert (out.indices[copied] == 2).all(), "and it is chosen again"


def test_restart_resets_the_ema_statistics_of_the_revived_code():
    codebook = torch.tensor([[[0.0, 0.0], [50.0, 50.0]]], dtype=torch.float64)
    z = torch.tensor([[0.5, 0.0], [0.0, 0.5]], dtype=torch.float64).reshape(2, 1, 2)
    est = make_estimator("vq-commitment[ema=true,restart=true,restart_threshold=1]")
    est(z, lambda q: q.sum((-2, -1)), codebook=codebook, generator=gen(0))
    assert (z[:, 0] == codebook[0, 1]).all(-1).any()
    assert est.ema_counts[0, 1] == 1.0
    torch.testing.assert_close(est.ema_sums[0, 1], codebook[0, 1])


def test_cosine_codebook_picks_by_angle():
    codebook = torch.tensor([[[0.9, 0.5], [10.0, 0.1]]], dtype=torch.float64, requires_grad=True)
    z = torch.tensor([[[2.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    upstream = torch.tensor([[[0.7, -1.3]]], dtype=torch.float64)
    plain = make_estimator("vq-commitment")(z, linear_loss(upstream), codebook=codebook)
    assert plain.indices.item() == 0, "L2 picks the closer, shorter code"
    out = make_estimator("vq-commitment[cosine=true,beta=0]")(z, linear_loss(upstream), codebook=codebook)
    assert out.indices.item() == 1, "cosine picks the code at the smaller angle"
    q = codebook.detach()[0, 1] / codebook.detach()[0, 1].norm()
    torch.testing.assert_close(out.value[0, 0], q)
    torch.testing.assert_close(
        out.aux["codebook"], (torch.tensor([1.0, 0.0], dtype=torch.float64) - q).pow(2).mean().reshape(1)
    )
    out.surrogate.sum().backward()
    # straight-through to the normalized vector: grad = (I - u u^T) upstream / |z|, orthogonal to z
    u = torch.tensor([1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(
        z.grad[0, 0], (torch.eye(2, dtype=torch.float64) - torch.outer(u, u)) @ upstream[0, 0] / 2
    )
    assert make_estimator("vq-commitment[cosine=true]").assign_codes(z, codebook).item() == 1


@pytest.mark.parametrize("options", OPTIONS)
def test_options_keep_the_vq_contract(options):
    def run(seed):
        est = make_estimator(f"vq-commitment[{options}]")
        z = torch.randn(6, 3, 4, generator=gen(0), requires_grad=True)
        codebook = torch.randn(3, 5, 4, generator=gen(1)).requires_grad_(True)
        out = est(z, lambda q: q.pow(2).sum((-2, -1)), codebook=codebook, generator=gen(seed))
        out.surrogate.sum().backward()
        return est, z, codebook, out

    est, z, codebook, out = run(2)
    assert out.surrogate.shape == (6,) and out.value.shape == z.shape and out.indices.shape == (6, 3)
    assert torch.isfinite(z.grad).all() and (z.grad.abs().sum((-2, -1)) > 0).all()
    if not est.params["ema"]:
        assert codebook.grad is not None and torch.isfinite(codebook.grad).all()
    _, z2, codebook2, out2 = run(2)
    assert torch.equal(out.indices, out2.indices) and torch.equal(z.grad, z2.grad) and torch.equal(codebook, codebook2)
    frozen = codebook.detach().clone()
    est.eval()(torch.randn(6, 3, 4, generator=gen(9)), lambda q: q.sum((-2, -1)), codebook=codebook)
    assert torch.equal(codebook.detach(), frozen), "eval mode never changes the codebook"


def test_options_train_end_to_end():
    from gumbench.benchmarks.training import train

    spec = "vq-commitment[ema=true,rotation=true,init=kmeans,restart=true,restart_threshold=2,cosine=true]"
    a = train("gmm-vq[batch=64]", spec, steps=3, seed=0, eval_every=3)
    b = train("gmm-vq[batch=64]", spec, steps=3, seed=0, eval_every=3)
    timing = ["step_seconds", "peak_memory_mb"]
    assert a.drop(columns=timing).equals(b.drop(columns=timing))


@pytest.mark.parametrize("bad, match", [
    ("vq-commitment[kmeans_iters=5]", "kmeans_iters only applies with init=kmeans"),
    ("vq-commitment[restart_threshold=10]", "restart_threshold only applies with restart=true"),
    ("vq-commitment[init=pca]", "init must be one of random, kmeans"),
    ("vq-commitment[restart=true,restart_threshold=0]", "restart_threshold .* must be >= 1"),
    ("vq-commitment[init=kmeans,kmeans_iters=0]", "kmeans_iters must be in \\[1, 1000\\], got 0"),
    ("vq-commitment[rotation=yes]", "rotation must be true or false"),
])
def test_option_errors_name_what_is_allowed(bad, match):
    with pytest.raises(GumbenchError, match=match):
        make_estimator(bad)
