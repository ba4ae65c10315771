"""Bounded memory by declaration (gumbench.footprint): names sampled by hypothesis from every registered task's and
problem's declared ranges either run or are refused up front, under an address-space cap (RLIMIT_AS) in a worker
process; never an allocation error. Sizes that only cost time are held at the low end of their ranges (the
reference's antithetic pairs, steps, samples), so that each name runs in seconds."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gumbench.benchmarks.problems import registry as problems
from gumbench.benchmarks.training import registry as training
from gumbench.errors import GumbenchError
from gumbench.registry import format_spec

ROOT = Path(__file__).resolve().parents[1]
CAP = 3 * 2**30  # address space the worker may add to what it has mapped after importing torch
TIME_ONLY = {"reference_samples", "steps", "frames", "eval_images", "seed"}  # held at their lowest (seed: 0)
SKIP = {"data_dir", "audio_dir"}  # data folders: left at their defaults (a missing one is refused up front)


def value_strategy(cls, key):
    default = cls.defaults[key]
    if key in cls.choices:
        return st.sampled_from(tuple(cls.choices[key]))
    allowed = cls.ranges.get(key)
    if key in SKIP or isinstance(default, (bool, str)) or allowed is None:
        return st.just(default)
    low = allowed.low if allowed.low is not None else 0
    if key in TIME_ONLY:
        lowest = int(low) if key == "reference_samples" else max(low, 0) + (1 if allowed.low_open else 0)
        return st.just(type(default)(lowest))
    high = allowed.high if allowed.high is not None and math.isfinite(allowed.high) else max(2 * default, 1) * 2**20
    if isinstance(default, int):
        # log-uniform over [low, high]: the large sizes, where memory runs out, are drawn as often as the small
        exponents = st.floats(math.log2(max(low, 1)), math.log2(max(high, 1)))
        return exponents.map(lambda e: int(min(max(round(2**e), low), high)))
    lo = low if not allowed.low_open else (low + 1e-3 if low == 0 else low * 1.001)
    return st.floats(lo, high if not allowed.high_open else high * 0.999)


def names(registry, kind):
    classes = sorted(registry.classes().items())

    @st.composite
    def one_name(draw):
        name, cls = draw(st.sampled_from(classes))
        params = {key: draw(value_strategy(cls, key)) for key in cls.defaults}
        return kind, format_spec(name, params)

    return one_name()


@pytest.fixture(scope="module")
def worker():
    """ask(kind, name): the answer of a fresh worker process (each run starts from a new process, as a user's does)."""
    answers = []

    def ask(kind, name):
        done = subprocess.run([sys.executable, "-m", "tests.memory_worker", str(CAP)], cwd=ROOT, text=True, timeout=600,
                              input=json.dumps([kind, name]) + "\n", capture_output=True)
        lines = done.stdout.splitlines()
        assert len(lines) == 2 and lines[0] == "ready", f"the worker died on {kind} {name}: {done.stderr[-2000:]}"
        answers.append(json.loads(lines[1]))
        return answers[-1]

    yield ask
    print(f"\n{answers.count('ran')} ran, {sum(a.startswith('refused') for a in answers)} refused of {len(answers)}")


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(case=st.one_of(names(problems, "gradstats"), names(training, "training")))
def test_sampled_names_run_or_are_refused_up_front_never_an_allocation_error(worker, case):
    kind, name = case
    answer = worker(kind, name)
    assert answer == "ran" or answer.startswith("refused: "), f"{kind} {name}: {answer}"


def test_the_issues_api_case_is_refused_before_allocating(worker):
    """vq-commitment through the API with K = 65,536, G = 16, D = 16 and 4,096 rows tried 17 GB."""
    import torch

    from gumbench.estimators import make_estimator

    est = make_estimator("vq-commitment")
    with pytest.raises(GumbenchError, match=r"vq-commitment.*would need about .* GiB .*lower the rows of the inputs, "
                                            r"the groups G or the codes K"):
        est(torch.zeros(4096, 16, 16), lambda v: v.sum((-2, -1)), codebook=torch.zeros(16, 65536, 16))
    for spec in ("quantizer-smoothed[quantizer=vq,codes=65536]",
                 "quantizer-smoothed[quantizer=vq,codes=65536,groups=16,dim=16]"):
        assert worker("gradstats", spec).startswith("refused: "), spec


def test_a_gzip_bomb_is_refused_after_its_header_not_after_inflating(tmp_path):
    """1 MB of gzip that inflates to 1 GB under a header claiming 10 GB: refused holding well under 100 MB
    (it took 2.4 GB before: the whole file was inflated, then found short)."""
    import tracemalloc

    from gumbench.benchmarks.training.images import read_idx
    from tests.test_bad_input import bomb

    bomb(tmp_path)
    path = next(tmp_path.glob("train-images*.gz"))
    tracemalloc.start()
    try:
        with pytest.raises(GumbenchError, match=r"its header says 10,000,000,000 bytes of data.*over the memory limit"):
            read_idx(path, 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MiB held while refusing"
