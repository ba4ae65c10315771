"""The digits ELBO gradient study: RLOO unbiased and ST-Gumbel biased inside the VAE; its text summary."""

import pandas as pd
import pytest

from gumbench.benchmarks import training
from gumbench.benchmarks.studies import elbo_gradient_study, format_elbo_study
from gumbench.errors import GumbenchError


def test_digits_elbo_gradient_study_reports_unbiased_reinforce():
    frame = elbo_gradient_study("reinforce[baseline=loo]", checkpoints=(0, 5), points=2, samples=2000, seed=0)
    assert sorted(frame["step"].unique()) == [0, 5]
    assert len(frame) == 4
    # unbiased: every bias interval reaches 0
    assert (frame["relative_bias_low"] == 0).all()
    assert (frame["cosine"] > 0.5).all()
    st = elbo_gradient_study("st-gumbel[tau=1]", checkpoints=(0,), points=2, samples=2000, seed=0)
    assert (st["relative_bias_low"] > 0).all(), "straight-through Gumbel is biased inside the VAE"


def test_format_elbo_study_averages_over_images_per_estimator_and_checkpoint():
    rows = [
        ("reinforce[baseline=loo]", 0, 0, 0.010, 2.000, 0.900),
        ("reinforce[baseline=loo]", 0, 1, 0.030, 4.000, 0.700),
        ("reinforce[baseline=loo]", 5, 0, 0.000, 1.000, 0.950),
        ("reinforce[baseline=loo]", 5, 1, 0.002, 3.000, 0.850),
        ("st-gumbel[tau=1]", 0, 0, 0.4004, 0.500, 0.600),
        ("st-gumbel[tau=1]", 0, 1, 0.2002, 0.300, 0.800),
    ]
    frame = pd.DataFrame(rows, columns=["label", "step", "image", "relative_bias", "relative_std", "cosine"])
    frame["task"], frame["samples"] = "digits-vae", 2000
    lines = format_elbo_study(frame, width=200).splitlines()
    assert (
        lines[0] == "Mean over 2 evaluation images; 2,000 estimates each; exact gradient by enumeration (digits-vae)."
    )
    # one row per (label, step), means to 3 decimals
    cells = [[cell.strip() for cell in line.strip("│┃").split(line[0])] for line in lines if line[0] in "│┃"]
    assert cells == [["estimator", "step", "relative_bias", "relative_std", "cosine"],
                     ["reinforce[baseline=loo]", "0", "0.020", "3.000", "0.800"],
                     ["reinforce[baseline=loo]", "5", "0.001", "2.000", "0.900"],
                     ["st-gumbel[tau=1]", "0", "0.300", "0.400", "0.700"]]
    narrow = format_elbo_study(frame, width=40).splitlines()  # too narrow for the table: one block per row
    assert (
        max(map(len, narrow)) <= 40
        and narrow.count("reinforce[baseline=loo]") == 2
        and "  relative_std   3.000" in narrow
    )


@pytest.mark.parametrize("kwargs, message", [
    ({"samples": 3}, "samples must be in [4, 100000000], got 3"),
    ({"points": 0}, "points must be in [1, 297], got 0"),
    ({"seed": -1}, "seed must be in [0, 9223372036854775803], got -1"),
    ({"checkpoints": (0, -5)}, "checkpoints must be in [0, 1000000], got -5"),
    ({"checkpoints": (10**12,)}, "checkpoints must be in [0, 1000000], got 1000000000000"),
    ({"checkpoints": ()}, "checkpoints must name at least one step"),
])
def test_bad_arguments_are_refused_before_training(kwargs, message, monkeypatch):
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(GumbenchError) as caught:
        elbo_gradient_study("st-gumbel", **kwargs)
    assert str(caught.value) == "elbo_gradient_study: " + message
