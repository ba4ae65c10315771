"""vq-commitment against vector-quantize-pytorch 1.34.1 (lucidrains), a pinned test-only oracle.

Both are called on identical inputs: gumbench's (B, N, G, D) vectors are vqp's (B, N, G * D) with
``heads=G, codebook_dim=D`` (no projection), its (G, K, D) codebook copied into vqp's per-head
codebook (``separate_codebook_per_head=True``; a shared (K, D) codebook is vqp's single one). Every
vqp extra is off (k-means init, dead-code expiry, projections, orthogonal / diversity losses) and
its rotation trick (on by default for D > 1) is set explicitly. The downstream loss is the same
linear function of the quantized vectors, averaged over rows; gumbench's objective is the mean of
its per-row surrogate, vqp's is that downstream mean plus its scalar loss.

Forward values, indices, losses and input gradients agree to float32 rounding; the conventions
that differ are each checked as an exact relation (see gumbench/estimators/vq.py and
docs/estimators.md, "vector-quantize-pytorch"):

- learnable codebook: vqp's loss is beta * ||x - e||^2 without stop-gradients, so its codebook
  gradient is beta times gumbench's (the codebook term of van den Oord et al. has weight 1);
- EMA: same decay convention, but vqp's statistics start at zero (gumbench's at N_k = 1, M_k = e_k), and
  vqp blends in the current code, e_k <- (M_k + eps e_k) / (N_k + eps), where gumbench divides M_k by N_k;
- dead codes by a ratio (``restart_ratio``, vqp's ``dead_code_threshold_ratio``): the same usage average from
  zero, the same codes found dead and the same reset usage; the replacements are batch vectors in both, drawn
  differently (gumbench with replacement, vqp without);
- cosine codebook: vqp compares normalized vectors with the stored codes as they are (it keeps
  them unit-norm instead of normalizing at lookup), stores the EMA result normalized, and refuses
  a learnable codebook with cosine similarity.

vqp 1.32.0 (the previous pin) divided by Laplace-smoothed counts; 1.34.1 changed that and deprecated its
absolute dead-code threshold (``threshold_ema_dead_code``), which is no longer used here.
"""

import pytest
import torch

from gumbench.estimators import make_estimator
from tests.conftest import require_package

B, N, G, D, K = 4, 6, 3, 5, 7
TOL = dict(rtol=1e-5, atol=1e-6)  # float32: vqp computes in float32 whatever the input


def gen(seed):
    return torch.Generator().manual_seed(seed)


def data(seed=0):
    z = torch.randn(B, N, G, D, generator=gen(seed))
    codebook = torch.randn(G, K, D, generator=gen(seed + 1))
    upstream = torch.randn(B, N, G, D, generator=gen(seed + 2))
    return z, codebook, upstream


def oracle(*, shared=False, **options):
    """vqp's VectorQuantize laid out like gumbench's (..., G, D), every extra off unless given."""
    vqp = require_package("vector_quantize_pytorch")
    settings = dict(kmeans_init=False, dead_code_threshold_ratio=0.0, rotation_trick=False, learnable_codebook=False,
                    ema_update=False, commitment_weight=0.25)
    settings.update(options)
    vq = vqp.VectorQuantize(dim=G * D, codebook_size=K, codebook_dim=D, heads=G, separate_codebook_per_head=not shared,
                            **settings)
    return vq.train()


def load(vq, codebook):
    """Copy a codebook into vqp, with its EMA statistics at gumbench's start (N_k = 1, M_k = e_k)."""
    book = codebook.reshape(vq._codebook.embed.shape)
    with torch.no_grad():
        vq._codebook.embed.copy_(book)
        vq._codebook.embed_avg.copy_(book)  # vqp's averages start from its own random codebook otherwise
        vq._codebook.cluster_size.fill_(1.0)


def run_gumbench(spec, z, codebook, upstream):
    z = z.clone().requires_grad_()
    codebook = codebook.clone().requires_grad_()
    est = make_estimator(spec).train()
    out = est(z, lambda value: (value * upstream).sum((-2, -1)), codebook=codebook)
    out.surrogate.mean().backward()
    return est, out, z.grad, codebook.grad, codebook.detach()


def run_vqp(vq, z, upstream):
    x = z.reshape(B, N, G * D).clone().requires_grad_()
    value, indices, loss, parts = vq(x, return_loss_breakdown=True)
    value = value.reshape(B, N, G, D)
    ((value * upstream).sum((-2, -1)).mean() + loss).backward()
    embed = vq._codebook.embed
    return value, indices, loss, parts.commitment, x.grad.reshape(B, N, G, D), embed.grad, embed.detach()


@pytest.mark.parametrize("shared", [False, True], ids=["per-group", "shared"])
@pytest.mark.parametrize("beta", [0.25, 1.0, 2.0])
def test_learnable_codebook_agrees_and_codebook_gradient_is_beta_times(beta, shared):
    z, codebook, upstream = data()
    if shared:
        codebook = codebook[0]
    _, out, z_grad, book_grad, _ = run_gumbench(f"vq-commitment[beta={beta}]", z, codebook, upstream)
    vq = oracle(shared=shared, learnable_codebook=True, commitment_weight=beta)
    load(vq, codebook)
    value, indices, loss, mse, x_grad, embed_grad, _ = run_vqp(vq, z, upstream)
    assert torch.equal(indices, out.indices)
    torch.testing.assert_close(value, out.value, **TOL)
    # vqp's loss beta * mse(e, x) is gumbench's commitment term; its unweighted mse is the codebook term
    torch.testing.assert_close(loss, out.aux["commitment"].mean(), **TOL)
    torch.testing.assert_close(mse, out.aux["codebook"].mean(), **TOL)
    torch.testing.assert_close(x_grad, z_grad, **TOL)
    # the convention: vqp weights the codebook term by beta too (no stop-gradient on either side)
    torch.testing.assert_close(embed_grad.reshape(book_grad.shape), beta * book_grad, **TOL)
    if beta != 1.0:  # the relation is not an identity: with beta != 1 the gradients really differ
        assert (embed_grad.reshape(book_grad.shape) - book_grad).abs().max() > 1e-3


def test_rotation_trick_agrees():
    z, codebook, upstream = data(10)
    _, out, z_grad, book_grad, _ = run_gumbench("vq-commitment[beta=0.25,rotation=true]", z, codebook, upstream)
    _, _, plain_grad, _, _ = run_gumbench("vq-commitment[beta=0.25]", z, codebook, upstream)
    vq = oracle(learnable_codebook=True, rotation_trick=True)
    load(vq, codebook)
    value, indices, loss, _, x_grad, embed_grad, _ = run_vqp(vq, z, upstream)
    assert torch.equal(indices, out.indices)
    torch.testing.assert_close(value, out.value, **TOL)  # vqp's value is lambda R z: e up to rounding
    torch.testing.assert_close(loss, out.aux["commitment"].mean(), **TOL)
    torch.testing.assert_close(x_grad, z_grad, **TOL)
    assert (z_grad - plain_grad).abs().max() > 1e-2  # the rotation really changes the gradient
    torch.testing.assert_close(embed_grad, 0.25 * book_grad, **TOL)  # the value carries no codebook gradient in either


@pytest.mark.parametrize("rotation", [False, True])
def test_cosine_codebook_agrees_on_unit_codes(rotation):
    z, codebook, upstream = data(20)
    codebook = torch.nn.functional.normalize(codebook, dim=-1)  # vqp keeps its cosine codes unit-norm
    spec = f"vq-commitment[beta=0.25,cosine=true,rotation={str(rotation).lower()}]"
    _, out, z_grad, _, _ = run_gumbench(spec, z, codebook, upstream)
    vq = oracle(use_cosine_sim=True, rotation_trick=rotation)
    load(vq, codebook)
    value, indices, loss, _, x_grad, embed_grad, _ = run_vqp(vq, z, upstream)
    assert torch.equal(indices, out.indices)
    torch.testing.assert_close(value, out.value, **TOL)
    torch.testing.assert_close(loss, out.aux["commitment"].mean(), **TOL)
    torch.testing.assert_close(x_grad, z_grad, **TOL)  # both differentiate through the normalization
    assert embed_grad is None  # vqp's cosine codebook is a buffer: no codebook term


def test_cosine_lookup_normalizes_codes_in_gumbench_only():
    """gumbench(cosine, C) = vqp(cosine, normalize(C)); vqp on C itself ranks by x/|x| . C_k."""
    z, codebook, upstream = data(30)
    codebook = codebook * torch.rand(G, K, 1, generator=gen(33)).mul(3).add(0.2)  # code lengths 0.2 to 3.2
    _, out, _, _, _ = run_gumbench("vq-commitment[cosine=true]", z, codebook, upstream)
    unit = oracle(use_cosine_sim=True)
    load(unit, torch.nn.functional.normalize(codebook, dim=-1))
    value, indices, *_ = run_vqp(unit, z, upstream)
    assert torch.equal(indices, out.indices)
    torch.testing.assert_close(value, out.value, **TOL)
    raw = oracle(use_cosine_sim=True)
    load(raw, codebook)
    value, indices, *_ = run_vqp(raw, z, upstream)
    dots = torch.einsum("bngd,gkd->bngk", torch.nn.functional.normalize(z, dim=-1), codebook)
    assert torch.equal(indices, dots.argmax(-1))
    assert not torch.equal(indices, out.indices)  # the code lengths change vqp's choice here
    torch.testing.assert_close(value, codebook[torch.arange(G), indices], **TOL)  # the stored code, not unit-norm


def test_cosine_with_learnable_codebook_is_refused_by_vqp():
    with pytest.raises(AssertionError, match="cosine sim"):
        oracle(use_cosine_sim=True, learnable_codebook=True)


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_ema_update_blends_the_current_code_in_vqp(eps):
    """Loaded at gumbench's start (N_k = 1, M_k = e_k), after one training call vqp's code k is
    (M_k + eps e_k) / (N_k + eps), e_k the code before the call, where gumbench's is M_k / N_k; counts N and
    sums M themselves agree."""
    z, codebook, upstream = data(40)
    spec = "vq-commitment[beta=0.25,ema=true,decay=0.7]"
    est, out, z_grad, book_grad, gb_book = run_gumbench(spec, z, codebook, upstream)
    vq = oracle(ema_update=True, decay=0.7, eps=eps)
    load(vq, codebook)
    value, indices, loss, _, x_grad, _, vqp_book = run_vqp(vq, z, upstream)
    assert torch.equal(indices, out.indices)
    torch.testing.assert_close(value, out.value, **TOL)
    torch.testing.assert_close(loss, out.aux["commitment"].mean(), **TOL)
    assert "codebook" not in out.aux and book_grad is None
    torch.testing.assert_close(x_grad, z_grad, **TOL)
    counts, sums = est.ema_counts, est.ema_sums
    torch.testing.assert_close(vq._codebook.cluster_size, counts, **TOL)
    torch.testing.assert_close(vq._codebook.embed_avg, sums, **TOL)
    torch.testing.assert_close(gb_book, sums / counts.unsqueeze(-1), **TOL)
    torch.testing.assert_close(vqp_book, (sums + eps * codebook) / (counts + eps).unsqueeze(-1), **TOL)
    # equivalently vqp = (N_k gumbench + eps e_k) / (N_k + eps): a rarely used code (small N_k) stays near e_k
    blended = (counts.unsqueeze(-1) * gb_book + eps * codebook) / (counts + eps).unsqueeze(-1)
    torch.testing.assert_close(vqp_book, blended, **TOL)
    if eps == 0.5:
        assert (vqp_book - gb_book).abs().max() > 1e-2


def test_vqp_ema_statistics_start_at_zero():
    """Fresh, vqp's counts and sums are 0 (k-means init would not seed them); after one call from there they
    are gumbench's minus its start: N_vqp = N - decay, M_vqp = M - decay e_k."""
    z, codebook, upstream = data(45)
    decay = 0.7
    est, out, *_ = run_gumbench(f"vq-commitment[ema=true,decay={decay}]", z, codebook, upstream)
    vq = oracle(ema_update=True, decay=decay)
    assert not vq._codebook.cluster_size.any() and not vq._codebook.embed_avg.any()
    with torch.no_grad():
        vq._codebook.embed.copy_(codebook)  # the codes only; the statistics stay at vqp's zero start
    _, indices, *_ = run_vqp(vq, z, upstream)
    assert torch.equal(indices, out.indices)
    torch.testing.assert_close(vq._codebook.cluster_size, est.ema_counts - decay, **TOL)
    torch.testing.assert_close(vq._codebook.embed_avg, est.ema_sums - decay * codebook, **TOL)


def test_cosine_ema_update_is_normalized_in_vqp():
    """With cosine similarity vqp stores normalize((M_k + eps e_k) / (N_k + eps)); gumbench stores M_k / N_k."""
    z, codebook, upstream = data(50)
    codebook = torch.nn.functional.normalize(codebook, dim=-1)
    est, out, _, _, gb_book = run_gumbench("vq-commitment[ema=true,decay=0.6,cosine=true]", z, codebook, upstream)
    vq = oracle(ema_update=True, decay=0.6, eps=0.3, use_cosine_sim=True)
    load(vq, codebook)
    value, indices, *_, vqp_book = run_vqp(vq, z, upstream)
    assert torch.equal(indices, out.indices)
    torch.testing.assert_close(value, out.value, **TOL)
    torch.testing.assert_close(vq._codebook.embed_avg, est.ema_sums, **TOL)
    torch.testing.assert_close(gb_book, est.ema_sums / est.ema_counts.unsqueeze(-1), **TOL)
    blended = (est.ema_sums + 0.3 * codebook) / (est.ema_counts + 0.3).unsqueeze(-1)
    torch.testing.assert_close(vqp_book, torch.nn.functional.normalize(blended, dim=-1), **TOL)
    assert (gb_book.norm(dim=-1) - 1).abs().max() > 1e-2  # gumbench's stored codes are not unit-norm


@pytest.mark.parametrize("ratio", [0.3, 0.9])
def test_dead_codes_by_ratio_agree_with_vqp(ratio):
    """restart_ratio is vqp's dead_code_threshold_ratio: call after call (gumbench handed vqp's codebook, so the
    choices stay the same), the same usage averages and the same codes replaced, by vectors of the batch."""
    decay, calls = 0.8, 6
    _, codebook, _ = data(60)
    est = make_estimator(f"vq-commitment[restart=true,restart_ratio={ratio},decay={decay}]").train()
    vq = oracle(learnable_codebook=True, dead_code_threshold_ratio=ratio, decay=decay)
    with torch.no_grad():
        vq._codebook.embed.copy_(codebook)  # the usage averages stay at their zero start in both
    replaced_any = 0
    for call in range(calls):
        z = torch.randn(B, N, G, D, generator=gen(61 + call)) * 0.5 + 1.0  # off-centre: some codes go unused
        before = vq._codebook.embed.detach().clone()
        book = before.clone()
        out = est(z, lambda value: value.sum((-2, -1)), codebook=book, generator=gen(call))
        _, indices, _ = vq(z.reshape(B, N, G * D))
        assert torch.equal(indices, out.indices)
        torch.testing.assert_close(vq._codebook.cluster_size, est.usage, **TOL)
        vqp_replaced = (vq._codebook.embed.detach() != before).any(-1)
        assert torch.equal(vqp_replaced, (book != before).any(-1))
        batch = z.reshape(-1, G, D).transpose(0, 1)  # (G, B N, D)
        for replaced_book in (book, vq._codebook.embed.detach()):
            distance = torch.cdist(replaced_book, batch).amin(-1)  # (G, K)
            assert (distance[vqp_replaced] < 1e-5).all()
        replaced_any += int(vqp_replaced.sum())
    assert replaced_any > 0


def test_spec_of_vq_commitment_leaves_restart_ratio_out_at_its_default():
    """Stored specs (and the sweep unit ids and seeds made from them) predate restart_ratio: unchanged."""
    stored = ("vq-commitment[beta=0.25,ema=false,decay=0.99,eps=1e-05,rotation=false,init=random,kmeans_iters=10,"
              "restart=false,restart_threshold=50,cosine=false]")
    assert make_estimator("vq-commitment").spec == stored
    spec = make_estimator("vq-commitment[restart=true,restart_ratio=0.1]").spec
    assert spec.endswith(",restart=true,restart_threshold=50,cosine=false,restart_ratio=0.1]")
    assert make_estimator(spec).spec == spec
