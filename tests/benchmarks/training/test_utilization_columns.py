"""train() rows: effective-bits and per-dimension columns for implicit codebooks (VQ estimators that declare
``has_code_digits``), per-stage and joint columns for outputs with stage indices; existing columns unchanged.

The estimators here are stand-ins built on vq-commitment (not registered): one that declares levels
(2, 4) over its 8 codes, one whose output carries two stages (its indices and a function of them).
"""


import pytest
import torch

from gumbench.benchmarks.training import train
from gumbench.benchmarks.training.base import DiscreteBottleneck
from gumbench.benchmarks.utilization import implicit_usage, stage_usage
from gumbench.estimators.vq import VQCommitment

TASK = "gmm-vq[clusters=4,codes=8]"
BASE = {
    "code_perplexity",
    "used_fraction",
    "usage_entropy",
    "collapse",
    "dead_codes",
    "loss_commitment",
    "loss_codebook",
}


class Recording(VQCommitment):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        if self.training:  # the training steps' codes (evaluations call the eval-mode forward too)
            self.seen.append(out.indices.detach().clone())
        return out


class Implicit(Recording):
    has_code_digits = True

    def digit_levels(self, dim=None):
        return (2, 4)

    def index_digits(self, indices, dim=None):
        return torch.stack([indices % 2, indices // 2], -1)


def second_stage(indices):
    return (indices * 3 + 1) % 5  # 5 of the 8 codes reachable in stage 1


class Residual(Recording):
    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        return out._replace(stage_indices=torch.stack([out.indices, second_stage(out.indices)], -1))


def test_plain_estimators_get_no_new_columns():
    frame = train(TASK, "vq-commitment", steps=2, seed=0)
    assert BASE <= set(frame.columns)
    assert not any(c.startswith(("effective_bits", "dim_", "joint_", "code_perplexity_s")) for c in frame.columns)


def test_implicit_codebook_columns_match_implicit_usage():
    est = Implicit()
    frame = train(TASK, est, steps=3, seed=1)
    plain = train(TASK, "vq-commitment", steps=3, seed=1)
    assert len(est.seen) == 3
    for step, indices in enumerate(est.seen):
        expected = implicit_usage(indices, est.index_digits(indices), (2, 4)).as_row()
        assert set(expected) == {"effective_bits", "code_bits", "dim_bits", "dim_perplexity_d0", "dim_perplexity_d1",
                                 "dim_bits_d0", "dim_bits_d1", "dim_max_bits_d0", "dim_max_bits_d1"}
        for column, value in expected.items():
            assert frame[column].iloc[step] == pytest.approx(value), column
    assert frame["code_bits"].eq(3.0).all() and frame["dim_max_bits_d1"].eq(2.0).all()
    # the existing columns are those of the same run without the stand-in's extras
    timing = ["step_seconds", "peak_memory_mb"]
    assert (
        frame[plain.columns]
        .drop(columns=timing + ["estimator", "label"])
        .equals(plain.drop(columns=timing + ["estimator", "label"]))
    )


def test_the_capability_is_declared_not_probed():
    class Undeclared(VQCommitment):  # digit methods without has_code_digits: no columns (nothing probes for them)
        def digit_levels(self, dim=None):
            return (2, 4)

        def index_digits(self, indices, dim=None):
            raise AssertionError("index_digits is called only where has_code_digits is declared")

    frame = train(TASK, Undeclared(), steps=1, seed=0)
    assert not any(c.startswith(("effective_bits", "dim_")) for c in frame.columns)

    class Declared(VQCommitment):  # declared without the methods: the base's NotImplementedError, not a silent skip
        has_code_digits = True

    with pytest.raises(NotImplementedError, match="per-dimension code digits"):
        train(TASK, Declared(), steps=1, seed=0)


def test_stage_columns_match_stage_usage_and_dead_codes_over_the_window():
    est = Residual()
    frame = train(TASK, est, steps=3, seed=2, dead_window=2)
    for step, indices in enumerate(est.seen):
        stages = torch.stack([indices, second_stage(indices)], -1)
        expected = stage_usage(stages, 8).as_row()
        for column, value in expected.items():
            assert frame[column].iloc[step] == pytest.approx(value), column
        window = est.seen[max(0, step - 1):step + 1]
        for s, fn in enumerate((lambda i: i, second_stage)):
            used = torch.cat([fn(i).reshape(-1) for i in window]).unique().numel()
            assert frame[f"dead_codes_s{s}"].iloc[step] == 8 - used
    assert frame["dead_codes_s1"].ge(3).all()  # codes 5, 6, 7 are never reached in stage 1
    assert frame["joint_max_bits"].eq(6.0).all()
    # stage 1 is a function of stage 0: the joint usage is stage 0's
    assert frame["joint_code_perplexity"].tolist() == pytest.approx(frame["code_perplexity_s0"].tolist())
    assert frame["code_perplexity_s0"].tolist() == pytest.approx(frame["code_perplexity"].tolist())


def test_bottleneck_output_carries_stage_indices_or_none():
    features = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    for est in (VQCommitment(), Residual()):
        torch.manual_seed(0)
        bottleneck = DiscreteBottleneck(est, in_dim=3, groups=2, codes=8, code_dim=4)
        out = bottleneck(features, lambda q: q.pow(2).sum(-1))
        if isinstance(est, Residual):
            assert torch.equal(out.stage_indices, torch.stack([out.indices, second_stage(out.indices)], -1))
        else:
            assert out.stage_indices is None
