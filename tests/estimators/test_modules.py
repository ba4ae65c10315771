"""Estimators are ordinary torch modules: parameters(), named_parameters(), state_dict() / load_state_dict()
and .to() work for every registered estimator; the state made on the first calls (EMA statistics, restart
counters, SimVQ's W, REINFORCE's EMA baseline, an owned codebook) round-trips into a fresh estimator made
from the same spec; a VQ estimator's own codebook trains with torch.optim.Adam(estimator.parameters())."""

import pytest
import torch

from gumbench.errors import GumbenchError
from gumbench.estimators import VQEstimator, make_estimator, registry

NAMES = registry.names()
# the state each option makes: EMA statistics, restarts, k-means flag, residual stages, W, the EMA baseline
STATEFUL = ["vq-commitment[ema=true]", "vq-commitment[restart=true,restart_threshold=1]",
            "vq-commitment[ema=true,restart=true,restart_threshold=1]", "vq-commitment[init=kmeans]",
            "residual-vq[stages=2,quantizer=vq-commitment[ema=true]]", "simvq", "reinforce[baseline=ema]"]
G, V, D, K = 2, 5, 3, 6


def gen(seed):
    return torch.Generator().manual_seed(seed)


def loss(value):
    return (value - 0.3).pow(2).sum((-2, -1))


def inputs(est, dtype=torch.float32):
    """(input, codebook) for one call: logits (4, G, V) and no codebook, or vectors (4, G, D) and a codebook
    that fits (the implicit code space's shape for fsq, lfq, bsq)."""
    if not isinstance(est, VQEstimator):
        return torch.randn(4, G, est.required_categories or V, generator=gen(0), dtype=dtype), None
    codes, dim = est.code_space(None, D) or est.code_space() if est.implicit_codes else (K, D)
    vectors = torch.randn(4, G, dim, generator=gen(0), dtype=dtype)
    return vectors, torch.randn(G, codes, dim, generator=gen(1), dtype=dtype)


def call(est, x, codebook, seed=2):
    kwargs = {} if codebook is None else {"codebook": codebook}
    return est(x, loss, generator=gen(seed), **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_every_estimator_is_an_ordinary_module(name):
    est = make_estimator(name)
    assert isinstance(est, torch.nn.Module) and isinstance(est.defaults, dict)
    named = dict(est.named_parameters())
    assert list(named.values()) == list(est.parameters())  # callable, the module's own (no declared-parameter dict)
    fresh = make_estimator(est.spec)
    fresh.load_state_dict(est.state_dict())  # strict: the same keys
    x, codebook = inputs(est)
    call(est, x, None if codebook is None else codebook.clone())  # the first call makes lazy state
    state = est.state_dict()
    assert all(isinstance(t, torch.Tensor) for t in state.values())
    fresh = make_estimator(est.spec)
    fresh.load_state_dict(state)
    assert set(fresh.state_dict()) == set(state)
    assert est.to(torch.float64) is est
    assert all(p.dtype == torch.float64 for p in est.parameters())
    assert all(t.dtype in (torch.float64, torch.bool, torch.long) for t in est.state_dict().values())
    x, codebook = inputs(est, torch.float64)
    out = call(est, x, codebook)
    assert out.value.dtype == torch.float64 and torch.isfinite(out.surrogate).all()


@pytest.mark.parametrize("spec", STATEFUL)
def test_state_round_trips_into_a_fresh_estimator(spec):
    est = make_estimator(spec)
    x, codebook = inputs(est)
    book = None if codebook is None else codebook.clone()
    for seed in range(4):  # training calls: EMA updates, restarts (threshold 1), k-means once
        call(est, x * (1 + seed), book, seed)
    state = est.state_dict()
    fresh = make_estimator(spec)
    fresh.load_state_dict(state)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    mine, theirs = (None, None) if book is None else (book.clone(), book.clone())
    for seed in (7, 8):  # the same calls on both (in-place codebook care included) give the same outputs
        a, b = call(est, x, mine, seed), call(fresh, x, theirs, seed)
        assert torch.equal(a.value, b.value) and torch.equal(a.surrogate, b.surrogate)
        assert torch.equal(a.indices, b.indices)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, est.state_dict()[key]), key
    if mine is not None:
        assert torch.equal(mine, theirs)


def test_state_names_the_lazy_buffers_once_made():
    est = make_estimator("vq-commitment[ema=true,restart=true]")
    assert set(est.state_dict()) == {"initialized"}  # nothing made yet
    x, codebook = inputs(est)
    call(est, x, codebook)
    assert set(est.state_dict()) == {"initialized", "ema_counts", "ema_sums", "unused_calls"}
    assert est.state_dict()["unused_calls"].dtype == torch.long and est.state_dict()["ema_counts"].shape == (G, K)
    baseline = make_estimator("reinforce[baseline=ema]")
    call(baseline, *inputs(baseline))
    assert baseline.state_dict()["ema_loss"].dtype == torch.float64


def test_an_owned_codebook_trains_with_adam_on_the_estimator_parameters():
    """A VQ-VAE-like fit: 4 clusters of vectors, an owned codebook of 4 codes; Adam on est.parameters() alone moves
    the codes onto the clusters (the codebook loss drops), and the trained state round-trips."""
    centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    est = make_estimator("vq-commitment").own_codebook(4, 2, generator=gen(0))
    assert [name for name, _ in est.named_parameters()] == ["codebook"] and est.codebook.shape == (4, 2)
    start = est.codebook.detach().clone()
    optimizer = torch.optim.Adam(est.parameters(), lr=0.05)
    losses = []
    for step in range(300):
        noise = 0.05 * torch.randn(64, 2, generator=gen(10**4 + step))
        points = centres[torch.randint(0, 4, (64,), generator=gen(step))] + noise
        out = est(points.unsqueeze(-2), lambda value: value.new_zeros(value.shape[:-2]))
        optimizer.zero_grad()
        out.surrogate.mean().backward()
        optimizer.step()
        losses.append(float(out.aux["codebook"].detach().mean()))
    assert sum(losses[-20:]) / 20 < 0.1 * sum(losses[:20]) / 20
    assert (est.codebook.detach() - start).norm() > 1.0
    # each centre has a code near it
    assert torch.cdist(centres, est.codebook.detach()).min(dim=1).values.max() < 0.5
    fresh = make_estimator(est.spec)
    fresh.load_state_dict(est.state_dict())
    assert isinstance(fresh.codebook, torch.nn.Parameter) and torch.equal(fresh.codebook, est.codebook)
    assert torch.equal(fresh.quantize(centres.unsqueeze(-2))[1], est.quantize(centres.unsqueeze(-2))[1])


def test_owned_codebooks_per_group_and_on_residual_and_implicit_quantizers():
    z = torch.randn(5, 3, 4, generator=gen(0))
    for spec, codes in (("vq-commitment[ema=true]", 8), ("residual-vq[stages=2]", 8), ("fsq", 1000), ("ibq", 8)):
        est = make_estimator(spec).own_codebook(codes, 4, groups=3, generator=gen(1))
        assert est.codebook.shape == (3, codes, 4)
        given = est(z, loss, codebook=est.codebook.detach().clone())
        assert torch.equal(est(z, loss).indices, given.indices)


@pytest.mark.parametrize("args, message", [
    ((0, 4), "codes must be >= 1, got 0"),
    ((8, 2.5), "dim must be an integer >= 1, got 2.5"),
    ((8, 4, 0), "groups must be >= 1, got 0"),
    ((2**20, 2**10), "too large"),
])
def test_bad_codebook_sizes_are_one_line(args, message):
    with pytest.raises(GumbenchError, match=message):
        make_estimator("vq-commitment").own_codebook(*args)


def test_without_any_codebook_the_error_says_how_to_own_one():
    with pytest.raises(GumbenchError, match=r"needs codebook=tensor .* or a codebook of its own \(own_codebook"):
        make_estimator("vq-commitment")(torch.randn(2, 1, 3), loss)
