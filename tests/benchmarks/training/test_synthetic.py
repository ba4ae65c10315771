"""Synthetic training tasks: the gmm-vq codes find the true clusters; purity and NMI against values by hand; parameters
out of range (NaN, sizes that cannot be held) refused at construction, naming the task and the parameter."""

import pytest
import torch

from gumbench.benchmarks.training import make_training_task, train
from gumbench.benchmarks.training.synthetic import nmi, purity
from gumbench.errors import GumbenchError


def test_learning_finds_the_truth_on_gmm():
    frame = train("gmm-vq", "vq-commitment", steps=300, seed=0, eval_every=100)
    last = frame.iloc[-1]
    # 8 well-separated clusters: the codes should separate them (chance NMI ~ 0)
    assert last["eval_nmi"] > 0.9 and last["eval_purity"] > 0.9
    assert frame["loss"].iloc[-20:].mean() < frame["loss"].iloc[:20].mean() / 10


def test_purity_and_nmi_by_hand():
    codes = torch.tensor([0, 0, 1, 1, 2, 2])
    labels = torch.tensor([5, 5, 6, 6, 6, 7])
    assert purity(codes, labels) == pytest.approx(5 / 6)
    assert nmi(labels, labels) == pytest.approx(1.0)
    assert nmi(torch.zeros(6, dtype=torch.long), labels) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("tones[snr=nan]", "tones: snr (dB) must be a number in [-100, inf], got nan"),  # used to blame the logits
        ("tones[snr=-inf]", "tones: snr (dB) must be a number in [-100, inf], got -inf"),
        ("tones[snr=-1000]", "tones: snr (dB) must be a number in [-100, inf], got -1000.0"),
        ("tones[frames=2]", "tones: frames must be in [10, 200000], got 2"),
        ("tones[frames=1000000000]", "tones: frames must be in [10, 200000], got 1000000000"),
        (f"tones[seed={2**64}]", f"tones: seed must be in [0, 9223372036854775807], got {2**64}"),
        (
            "gmm-vq[noise=inf]",
            "gmm-vq: noise (spread around centres of spread 1) must be a finite number in (0, 1000], got inf",
        ),
        ("gmm-vq[seed=-1]", "gmm-vq: seed must be in [0, 9223372036854775807], got -1"),
        ("gmm-vq[dim=1000000000]", "gmm-vq: dim must be in [1, 4096], got 1000000000"),
        (
            "gmm-vq[batch=16384,codes=65536]",
            "gmm-vq: batch x codes must be <= 67,108,864 (memory), got 16384 x 65536 = 1073741824",
        ),
        ("digits-vae[hidden=1000000]", "digits-vae: hidden must be in [1, 4096], got 1000000"),
        (
            "digits-vae[latents=1024,categories=65536]",
            "digits-vae: batch x latents x categories must be <= 67,108,864 (memory), "
            "got 64 x 1024 x 65536 = 4294967296",
        ),
    ],
)
def test_parameters_out_of_range_are_refused_at_construction(spec, message):
    with pytest.raises(GumbenchError) as caught:
        make_training_task(spec)
    assert str(caught.value) == message


def test_tones_without_noise_is_allowed():
    """snr=inf names "no noise" (the range closes at +inf): the waveform is the tones alone."""
    clean = make_training_task("tones[snr=inf,frames=20]")
    assert torch.isfinite(clean.frame_features).all()
    assert clean.waveform.abs().max() <= 1.0 and torch.equal(
        clean.waveform, make_training_task("tones[snr=inf,frames=20]").waveform
    )
