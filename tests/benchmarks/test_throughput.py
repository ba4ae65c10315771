"""Throughput of gradient statistics: batched draws against one backward per sample.

Timed benchmarks, skipped in the default test run (``--benchmark-skip`` in the pytest
configuration). Run them side by side, in one process:

    pytest tests/benchmarks/test_throughput.py -o addopts="" --benchmark-only --benchmark-group-by=group

``test_batched`` / ``test_one_backward_per_sample``: ``chunk_size=1`` sends every estimate through
its own forward and backward: the naive loop, through the very same statistics code.

``test_versus_plain_loop`` (needs the ``bench`` extra: ``pip install -e '.[bench]'``) compares
``gradient_statistics`` with what a user writes without gumbench, for every categorical estimator:
a per-sample PyTorch loop (``tests/benchmarks/plain_loops.py``: ``F.gumbel_softmax``, the
``reinmax`` package, ...) and Storchastic's method where it has one. The sides alternate within one
benchmark (ROUNDS rounds, the order reversed every other round), one torch thread. gumbench draws
GUMBENCH_SAMPLES estimates per round; the loops draw LOOP_SAMPLES per round (they are slow) and their
time is scaled per sample to GUMBENCH_SAMPLES when reported (scripts/throughput_table.py). The test
asserts that gumbench's total variance and the loop's agree: |difference| <= 4 x the combined
standard error (two independent estimates, each nearly normal: a false alarm has probability about
6e-5 per case), and Storchastic's likewise where its method is defined as gumbench's. Where it is
not (its moving-average baseline includes the current loss; its DisARM does not converge to the
exact gradient), plain_loops.storch_methods says why, and the agreement is recorded, not asserted.
"""

import math
import os
import platform
import time

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from gumbench.benchmarks import gradient_statistics, make_task
from tests.benchmarks import plain_loops
from tests.conftest import require_package

SAMPLES = 10_000
TASK = "categorical[groups=1,categories=64]"  # K = 64

GUMBENCH_SAMPLES = 10_000
LOOP_SAMPLES = 1_000  # per round and side; 3,000 in all for the variance
ROUNDS = 3
TOLERANCE = 4.0  # combined standard errors


def storch_unavailable() -> str | None:
    """Why Storchastic cannot be compared, or None. Imported only when a benchmark runs: importing it
    patches torch functions process-wide (its tensor wrappers), which must not reach the other tests."""
    try:
        import storch  # noqa: F401
    except Exception as error:  # noqa: BLE001 - any failure to import is the reason to leave Storchastic out
        return f"storchastic does not import: {type(error).__name__}: {error}"
    return None

CATEGORICAL = ["st-gumbel", "soft-gumbel", "straight-through", "reinforce", "reinforce[baseline=ema]",
               "reinforce[baseline=loo]", "reinmax", "gumbel-rao", "gst"]
CASES = ([(TASK, e) for e in CATEGORICAL] + [("categorical", e) for e in CATEGORICAL]
         + [("polynomial", "disarm")])  # DisARM needs binary variables: polynomial, 8 x 2 logits


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy():
    return make_task(TASK)


@pytest.mark.benchmark(group="gradstats-10k-K64")
@pytest.mark.parametrize("estimator", ["st-gumbel", "reinforce[baseline=loo]"])
def test_batched(benchmark, toy, estimator):
    stats = benchmark.pedantic(
        gradient_statistics, args=(estimator, toy.logits, toy.loss, SAMPLES, 0), rounds=5, iterations=1
    )
    assert stats.samples == SAMPLES


@pytest.mark.benchmark(group="gradstats-10k-K64")
@pytest.mark.parametrize("estimator", ["st-gumbel", "reinforce[baseline=loo]"])
def test_one_backward_per_sample(benchmark, toy, estimator):
    stats = benchmark.pedantic(
        gradient_statistics,
        args=(estimator, toy.logits, toy.loss, SAMPLES, 0),
        kwargs={"chunk_size": 1},
        rounds=1,
        iterations=1,
    )
    assert stats.samples == SAMPLES


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    return (f"{model}, {os.cpu_count()} CPUs, {platform.system()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread")


def relative_error_of_mean(estimates: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(estimates.mean(0) - exact) / np.linalg.norm(exact))


@pytest.mark.benchmark(group="versus-loop")
@pytest.mark.parametrize("task,estimator", CASES, ids=[f"{t}-{e}" for t, e in CASES])
def test_versus_plain_loop(benchmark, task, estimator):
    require_package("reinmax", extra="bench")
    toy = make_task(task)
    storch_note = storch_unavailable() or (
        "" if estimator in plain_loops.storch_methods() else "Storchastic has no such estimator"
    )
    sides = ["gumbench", "loop"] + ([] if storch_note else ["storchastic"])
    seconds = {side: [] for side in sides}
    drawn = {"loop": [], "storchastic": []}
    results = []

    def one_round():
        r = len(results)
        for side in sides if r % 2 == 0 else sides[::-1]:
            start = time.perf_counter()
            if side == "gumbench":
                results.append(gradient_statistics(estimator, toy.logits, toy.loss, GUMBENCH_SAMPLES, r))
            elif side == "loop":
                torch.manual_seed(1000 + r)
                drawn[side].append(plain_loops.LOOPS[estimator](toy.logits, toy.loss, LOOP_SAMPLES))
            else:
                torch.manual_seed(2000 + r)
                drawn[side].append(plain_loops.storch_estimates(estimator, toy, LOOP_SAMPLES))
            seconds[side].append(time.perf_counter() - start)

    load_before = os.getloadavg()
    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    load_after = os.getloadavg()

    stats = results[0]
    t = float(scipy_stats.t.ppf(0.5 + stats.confidence / 2, df=49))  # gumbench's jackknife: 50 groups
    variance = {"gumbench": (stats.total_variance.value, (stats.total_variance.high - stats.total_variance.value) / t)}
    exact = stats.exact_gradient.reshape(-1).double().numpy()
    mean_error = {"gumbench": relative_error_of_mean(stats.mean_gradient.reshape(1, -1).double().numpy(), exact)}
    for side, chunks in drawn.items():
        if chunks:
            estimates = np.concatenate(chunks)
            variance[side] = plain_loops.total_variance(estimates)
            mean_error[side] = relative_error_of_mean(estimates, exact)
    agree = {}
    for side in variance.keys() - {"gumbench"}:
        difference = abs(variance[side][0] - variance["gumbench"][0])
        combined = math.hypot(variance[side][1], variance["gumbench"][1])
        agree[side] = {
            "difference": difference,
            "combined_se": combined,
            "within": bool(difference <= TOLERANCE * combined),
        }

    benchmark.extra_info.update({
        "comparison": "versus-loop", "task": task, "shape": list(toy.logits.shape), "estimator": estimator,
        "gumbench_samples": GUMBENCH_SAMPLES, "loop_samples": LOOP_SAMPLES, "rounds": ROUNDS, "seconds": seconds,
        "total_variance": {side: {"value": v, "se": se} for side, (v, se) in variance.items()},
        "relative_error_of_mean": mean_error, "agreement": agree, "tolerance_se": TOLERANCE,
        "storchastic": storch_note or plain_loops.storch_methods()[estimator][1],
        "load_before": list(load_before), "load_after": list(load_after), "machine": machine(),
    })
    # the loop always; Storchastic where its method is defined as gumbench's (no note says otherwise)
    checked = ["loop"] + (
        ["storchastic"] if "storchastic" in agree and not plain_loops.storch_methods()[estimator][1] else []
    )
    for side in checked:
        assert agree[side]["within"], (
            f"{estimator} on {task}: total variance gumbench {variance['gumbench']} vs {side} "
            f"{variance[side]} differ by {agree[side]['difference']:.4g} > "
            f"{TOLERANCE} x {agree[side]['combined_se']:.4g}"
        )


SCALING_ESTIMATORS = [
    "straight-through",
    "reinforce[baseline=loo]",
    "st-gumbel",
    "gumbel-rao",
]  # one of each kind of draw
SCALING_CATEGORIES = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
SCALING_SAMPLES = 10_000


@pytest.mark.benchmark(group="scaling-in-V")
@pytest.mark.parametrize("estimator", SCALING_ESTIMATORS)
def test_time_in_categories(benchmark, estimator):
    """``gradient_statistics`` of SCALING_SAMPLES estimates on one group of V categories, V from 8 to
    4,096, the sizes alternating in order round by round; recorded per V (scripts/throughput_table.py
    turns them into time per element and the growth between sizes)."""
    toys = {v: make_task(f"categorical[groups=1,categories={v}]") for v in SCALING_CATEGORIES}
    seconds = {v: [] for v in SCALING_CATEGORIES}
    rounds = []

    def one_round():
        order = SCALING_CATEGORIES if len(rounds) % 2 == 0 else SCALING_CATEGORIES[::-1]
        for v in order:
            start = time.perf_counter()
            stats = gradient_statistics(estimator, toys[v].logits, toys[v].loss, SCALING_SAMPLES, len(rounds))
            seconds[v].append(time.perf_counter() - start)
            assert stats.samples == SCALING_SAMPLES
        rounds.append(order)

    load_before = os.getloadavg()
    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update({
        "comparison": "scaling", "estimator": estimator, "samples": SCALING_SAMPLES, "groups": 1,
        "seconds": {str(v): s for v, s in seconds.items()}, "load_before": list(load_before),
        "load_after": list(os.getloadavg()), "machine": machine(),
    })
