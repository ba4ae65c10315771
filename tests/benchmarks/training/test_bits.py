"""Bits per frame: G x sum over a group's books of log2(codes), from the task and estimator as train() builds them."""

import math

import pytest
import torch

from gumbench.benchmarks.sweep.config import Unit
from gumbench.benchmarks.sweep.runner import run_unit
from gumbench.benchmarks.sweep.verdict import training_outcomes
from gumbench.benchmarks.training import make_training_task, train
from gumbench.benchmarks.training.bits import bits_per_frame, bits_text
from gumbench.estimators import make_estimator


@pytest.mark.parametrize(
    "task, estimator, bits",
    [
        ("digits-vae", "st-gumbel", 4 * 3),  # 4 latents of 8 categories
        ("digits-vae[latents=6,categories=16]", "reinmax", 6 * 4),
        ("digits-vae", "residual-vq[stages=2]", 4 * (2 + 2)),  # books of 4 and 4
        ("digits-vae", "residual-vq[stages=2,split=product]", 4 * (1 + 2)),  # books of 2 and 4
        ("fashion-vae[latents=30,categories=10]", "reinmax", 30 * math.log2(10)),  # the ReinMax paper's 30 x 10
        ("vq-wav2vec", "st-gumbel", 2 * math.log2(320)),  # 2 groups of 320 codes
        ("tones", "vq-commitment", 4),
        ("tones", "residual-vq[stages=2]", 6),
        ("tones", "residual-vq[stages=2,split=product]", 4),
        ("gmm-vq", "residual-vq[stages=3]", math.log2(10) + 2 * math.log2(11)),  # floor(s 32 / 3): 0, 10, 21, 32
        ("gmm-vq[code_dim=2]", "fsq[levels=8-4]", 5),
        ("gmm-vq", "fsq[levels=8-4]", 5),  # the bottleneck is sized from the levels
        ("tones", "lfq", 10),  # no size in the task's spec: LFQ's own default of 10 dimensions sizes it
        ("tones[codes=16]", "lfq", 4),  # sized from the 16 codes the spec sets: 4 dimensions
        ("tones[code_dim=6]", "bsq", 6),  # sized from the dimension: 64 codes
    ],
)
def test_known_bits(task, estimator, bits):
    assert bits_per_frame(task, estimator) == pytest.approx(bits, abs=1e-12)


@pytest.mark.parametrize(
    "task, estimator",
    [("digits-vae", "residual-vq[stages=2,split=product]"), ("tones", "fsq[levels=4-4]"),
     ("gmm-vq", "bsq"), ("gmm-vq[codes=64]", "residual-vq[stages=3,split=product]"), ("digits-vae", "gst[variant=p]")],
)
def test_bits_agree_with_the_model_train_builds(task, estimator):
    """From the model itself: its bottleneck's groups and codes (after sizing), and the stage books the
    estimator's codes fall into."""
    built, est = make_training_task(task), make_estimator(estimator)
    model = built.sized_for(est).build(est)
    books = est.book_sizes(model.bottleneck.codes) if hasattr(est, "book_sizes") else (model.bottleneck.codes,)
    if est.family == "vq" and est.name == "residual-vq":
        with torch.no_grad():
            out = est(torch.randn(500, model.bottleneck.groups, model.bottleneck.code_dim), lambda v: v.sum((-2, -1)),
                      codebook=model.bottleneck.codebook)
        first = torch.tensor([sum(books[:s]) for s in range(len(books))])
        local = out.stage_indices - first
        assert ((local >= 0) & (local < torch.tensor(books))).all()
    bits = model.bottleneck.groups * sum(math.log2(n) for n in books)
    assert bits_per_frame(task, estimator) == pytest.approx(bits, abs=1e-12)


def test_the_default_sweep_has_a_bit_matched_residual_rival_beside_each_residual_vq():
    from gumbench.benchmarks.sweep.config import DEFAULT_CONFIG, sections

    for section in sections(DEFAULT_CONFIG, "training"):
        if "residual-vq[stages=2]" in section["estimators"]:
            assert "residual-vq[stages=2,split=product]" in section["estimators"]
    # on logmel-vqvae's 128 codes: the even split has 12 bits, the product split the single books' 7
    assert bits_per_frame("logmel-vqvae", "residual-vq[stages=2]") == 12
    assert bits_per_frame("logmel-vqvae", "residual-vq[stages=2,split=product]") == 7
    assert bits_per_frame("logmel-vqvae", "vq-commitment") == 7
    assert bits_per_frame("logmel-vqvae[code_dim=3]", "fsq[levels=8-4-4]") == 7


def test_bits_text():
    assert [bits_text(b) for b in (7.0, 12.0, 2 * math.log2(320), 0.5)] == ["7", "12", "16.6", "0.5"]


def test_every_training_unit_records_its_bits_once_at_its_last_step():
    unit = Unit("training", "tones[frames=200]", "residual-vq[stages=2,split=product]", 0, 3, 4, eval_every=2)
    rows = run_unit(unit, threads=1)
    bits = rows[rows.metric == "bits_per_frame"]
    assert len(bits) == 1 and bits.step.iloc[0] == 4 and bits.value.iloc[0] == 4
    assert rows.step.max() == 4
    # the outcome of the unit is what it was without the row
    without = rows[rows.metric != "bits_per_frame"]
    assert training_outcomes(rows).equals(training_outcomes(without))
    # and the run is the one train() gives alone
    frame = train("tones[frames=200]", "residual-vq[stages=2,split=product]", steps=4, seed=3, eval_every=2)
    losses = rows[rows.metric == "loss"].sort_values("step").value.to_numpy()
    assert losses.tolist() == frame["loss"].tolist()
