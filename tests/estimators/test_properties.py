"""The numerical promise as a property: every registered estimator, with parameters drawn inside and
outside their declared ranges, on any shape (empty batches and wrong ranks included), dtype and
extreme values, gives finite values, losses and gradients, or a GumbenchError; never another
exception, and never a case that runs past its time bound.

The downstream losses have gradients of at most 1 per entry (the promise is about what the
estimators compute, not about the caller's loss). Counts (samples, k-means iterations, restart
thresholds) are drawn small: their cost grows with them, their numerics do not. Hypothesis runs
derandomized, without a database, so every run tries the same cases.
"""

import math
import signal
from contextlib import contextmanager

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gumbench.errors import GumbenchError
from gumbench.estimators import VQEstimator, make_estimator, registry
from gumbench.plugin import Range

CATEGORICAL = [n for n in registry.names() if not issubclass(registry.get(n), VQEstimator)]
VQ = [n for n in registry.names() if issubclass(registry.get(n), VQEstimator)]
FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
DTYPES = st.sampled_from([*FLOATS, *FLOATS, torch.int64])  # integers: refused, so drawn rarely
SECONDS = 10  # hard bound per case (a hang fails the test); hypothesis' deadline below is the usual one
PROPERTY = settings(max_examples=1000, derandomize=True, database=None, deadline=2000,
                    suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def time_limit(seconds):
    def stop(signum, frame):
        raise TimeoutError(f"case ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outside(allowed: Range):
    """Values a Range refuses: NaN, +-inf, and numbers beyond either end."""
    bad = [st.sampled_from([math.nan, math.inf, -math.inf])]
    if allowed.low is not None:
        bad.append(
            st.floats(max_value=allowed.low, exclude_max=not allowed.low_open, allow_nan=False, allow_infinity=False)
        )
    if allowed.high is not None:
        bad.append(
            st.floats(min_value=allowed.high, exclude_min=not allowed.high_open, allow_nan=False, allow_infinity=False)
        )
    return st.one_of(bad)


def rarely(draw) -> bool:
    """True about one time in eight: invalid input is drawn rarely, so most cases do the work."""
    return draw(st.sampled_from([False] * 7 + [True]))


def parameter_value(draw, cls, key):
    default, allowed = cls.defaults[key], cls.ranges.get(key, Range())
    if isinstance(default, bool):
        return draw(st.booleans())
    if key in cls.choices:
        return "bogus" if rarely(draw) else draw(st.sampled_from(cls.choices[key]))
    if isinstance(default, int):  # counts: the declared minimum and a few above it, or one below
        low = 0 if allowed.low is None else int(allowed.low)
        return low - 1 if rarely(draw) else draw(st.integers(low, low + 4))
    if rarely(draw):
        return draw(outside(allowed))
    return draw(st.floats(min_value=allowed.low, max_value=allowed.high, exclude_min=allowed.low_open,
                          exclude_max=allowed.high_open, allow_nan=False, allow_infinity=False))


@st.composite
def specs(draw, names):
    """(name, parameters): a registered estimator and some of its parameters, mostly inside their ranges."""
    name = draw(st.sampled_from(names))
    cls = registry.get(name)
    keys = draw(st.lists(st.sampled_from(sorted(cls.defaults)), unique=True)) if cls.defaults else []
    params = {key: parameter_value(draw, cls, key) for key in keys}
    for key, (switch, value) in cls.requires.items():  # an option set without the one it requires: rarely
        if key in params and not rarely(draw):
            params[switch] = value
    return name, params


# values are drawn into a small palette that fills the tensor (ties are common: the hard case for
# gradients at low tau); "max" and "tiny" are the dtype's own
SPECIAL = [0.0, 1.0, -1.0, 700.0, -700.0, 1e4, -1e4, 1e20, -1e20, -math.inf, "max", "-max", "tiny", math.nan, math.inf]


def palettes(finite_range):
    value = st.one_of(st.sampled_from(SPECIAL), st.floats(-finite_range, finite_range))
    return st.lists(value, min_size=1, max_size=4)


def sizes(high):
    """1..high, and 0 rarely (empty dimensions)."""
    return st.sampled_from([*range(1, high + 1)] * 3 + [0])


def fill(shape, dtype, palette, jitter, seed):
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    info = torch.finfo(dtype)
    named = {"max": info.max, "-max": -info.max, "tiny": info.tiny}
    values = torch.tensor([named.get(v, v) if isinstance(v, str) else v for v in palette], dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    x = values[torch.randint(len(palette), shape, generator=generator)]
    if jitter:
        x = x + torch.randn(shape, generator=generator, dtype=torch.float64)
    return x.to(dtype)


def finite(*tensors):
    return all(t is None or bool(torch.isfinite(t.double()).all()) for t in tensors)


leading = st.lists(sizes(3), max_size=2)  # batch dimensions, an empty batch included


@given(
    spec=specs(CATEGORICAL),
    lead=leading,
    groups=sizes(3),
    categories=sizes(6),
    rank_one=st.sampled_from([False] * 7 + [True]),
    dtype=DTYPES,
    palette=palettes(1e4),
    jitter=st.booleans(),
    seed=st.integers(0, 2**16),
    training=st.booleans(),
    as_required=st.sampled_from([True] * 7 + [False]),
)
@PROPERTY
def test_categorical_estimators_give_finite_results_or_a_gumbench_error(spec, lead, groups, categories, rank_one, dtype,
                                                                         palette, jitter, seed, training, as_required):
    name, params = spec
    if registry.get(name).required_categories and as_required:  # DisARM: V = 2, mostly
        categories = registry.get(name).required_categories
    shape = [categories] if rank_one else [*lead, groups, categories]
    logits = fill(shape, dtype, palette, jitter, seed)
    if dtype.is_floating_point:
        logits.requires_grad_(True)

    def loss(y):
        return (y * torch.linspace(0, 1, y.shape[-1], dtype=y.dtype)).sum((-2, -1))

    try:
        with time_limit(SECONDS):
            estimator = make_estimator(name, **params).train(training)
            out = estimator(logits, loss, generator=torch.Generator().manual_seed(seed))
            if out.surrogate.requires_grad:  # eval-mode st-gumbel and gumbel-rao give no gradient by design
                out.surrogate.sum().backward()
    except GumbenchError:
        return
    assert finite(out.value, out.surrogate, out.loss, *out.aux.values(), logits.grad), (name, params)


@given(spec=specs(VQ), lead=leading, groups=sizes(3), dim=sizes(4), codes=sizes(5), shared=st.booleans(),
       misfit=st.sampled_from([0] * 7 + [1]), dtype=DTYPES, book_dtype=st.sampled_from([None] * 14 + FLOATS),
       palette=palettes(10.0), book_palette=palettes(10.0), jitter=st.booleans(), seed=st.integers(0, 2**16),
       training=st.booleans(), calls=st.integers(1, 2))
@PROPERTY
def test_vq_estimators_give_finite_results_or_a_gumbench_error(
    spec,
    lead,
    groups,
    dim,
    codes,
    shared,
    misfit,
    dtype,
    book_dtype,
    palette,
    book_palette,
    jitter,
    seed,
    training,
    calls,
):
    z = fill([*lead, groups, dim], dtype, palette, jitter, seed)
    book_shape = [codes, dim + misfit] if shared else [groups, codes, dim + misfit]
    codebook = fill(book_shape, book_dtype or dtype, book_palette, jitter, seed + 1)
    for leaf in (z, codebook):
        if leaf.is_floating_point():
            leaf.requires_grad_(True)

    def loss(q):
        return (q * torch.linspace(0, 1, q.shape[-1], dtype=q.dtype)).mean((-2, -1))

    name, params = spec
    try:
        with time_limit(SECONDS):
            estimator = make_estimator(name, **params).train(training)
            for _ in range(calls):  # a second call sees the state the first left (EMA, k-means, restarts)
                out = estimator(z, loss, codebook=codebook, generator=torch.Generator().manual_seed(seed))
            # the codebook is shared by the rows: averaging them, the usual training step, keeps its
            # gradient a mean rather than a sum over the batch
            out.surrogate.mean().backward()
    except GumbenchError:
        return
    assert finite(out.value, out.surrogate, out.loss, *out.aux.values(), z.grad, codebook.grad, codebook), (
        name,
        params,
    )


def test_the_time_bound_stops_a_case_that_runs_too_long():
    with pytest.raises(TimeoutError, match="ran past"):
        with time_limit(0.05):
            while True:
                pass
