"""The digits ELBO gradient study: RLOO unbiased and ST-Gumbel biased inside the VAE; its text summary."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gumbench.benchmarks import training
from gumbench.benchmarks.studies import elbo_gradient_study, format_elbo_study
from gumbench.errors import GumbenchError


def test_digits_elbo_gradient_study_reports_unbiased_reinforce():
    frame = elbo_gradient_study("reinforce[baseline=loo]", checkpoints=(0, 5), points=2, samples=2000, seed=0,
                                instances=1)
    assert sorted(frame["step"].unique()) == [0, 5]
    assert len(frame) == 4
    # unbiased: every bias interval reaches 0
    assert (frame["relative_bias_low"] == 0).all()
    assert (frame["cosine"] > 0.5).all()
    st = elbo_gradient_study("st-gumbel[tau=1]", checkpoints=(0,), points=2, samples=2000, seed=0, instances=1)
    assert (st["relative_bias_low"] > 0).all(), "straight-through Gumbel is biased inside the VAE"


def test_each_instance_trains_its_own_model_and_probes_its_own_images():
    """Instance r is the run from seed + r probed on images r x points on: the rows equal that run's own."""
    from gumbench.benchmarks.probes import gradient_probe
    from gumbench.benchmarks.problems.elbo import checked_study

    frame = elbo_gradient_study("st-gumbel", checkpoints=(0, 1), points=2, samples=200, seed=3, instances=3)
    assert frame.groupby("instance").image.apply(sorted).tolist() == [[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]]
    assert frame.groupby("instance").seed.first().tolist() == [3, 4, 5]
    task, est = checked_study("digits-vae", "st-gumbel")
    callback, rows = gradient_probe(task, est, [0, 1], points=2, samples=200, seed=4, first_image=2)
    training.train(task, est, steps=1, seed=4, callback=callback)
    own = pd.DataFrame(rows)
    mine = frame[frame.instance == 1].drop(columns=["instance", "seed"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, own)
    # a new model per instance: at step 0 (before any training) the exact gradients at one image differ by seed
    assert frame[frame.step == 0].exact_norm.nunique() == 6


def test_format_elbo_study_gives_intervals_over_instances_and_orderings():
    rows = []
    for instance, (rloo, st) in enumerate([(8.0, 0.5), (10.0, 0.6), (12.0, 0.4), (9.0, 0.7)]):
        for image, shift in enumerate((-0.01, 0.01)):  # two images per instance, averaged first
            rows.append(("reinforce[baseline=loo]", instance, 0, 2 * instance + image, 0.01 * instance, 3.0,
                         rloo + shift, 0.9 + shift))
            rows.append(("st-gumbel[tau=1]", instance, 0, 2 * instance + image, 0.3 + shift, 0.5, st + shift,
                         0.95 + shift))
    frame = pd.DataFrame(rows, columns=["label", "instance", "step", "image", "relative_bias", "relative_std",
                                        "relative_mse", "cosine"])
    frame["task"], frame["samples"] = "digits-vae", 2000
    text = format_elbo_study(frame, width=200)
    assert text.startswith("Over 4 instances (independently seeded models, 2 evaluation images each")
    gmean = stats.gmean([8.0, 10.0, 12.0, 9.0])
    logs = np.log([8.0, 10.0, 12.0, 9.0])
    low, high = np.exp(stats.t.interval(0.95, 3, loc=logs.mean(), scale=stats.sem(logs)))
    assert f"{gmean:.3g} [{low:.3g}, {high:.3g}]" in text
    high = stats.t.interval(0.95, 3, loc=0.015, scale=stats.sem([0.0, 0.01, 0.02, 0.03]))[1]
    assert f"0.015 [0, {high:.3g}]" in text  # a bias interval reaching below 0 is clipped there
    assert "st-gumbel[tau=1] below reinforce[baseline=loo] on every instance (4 of 4)" in text


def test_orderings_count_the_instances_an_ordering_holds_on():
    from gumbench.benchmarks.studies.instances import format_orderings, orderings

    frame = pd.DataFrame({"step": 0, "instance": [0, 1, 2, 0, 1, 2], "label": ["a"] * 3 + ["b"] * 3,
                          "relative_mse": [1.0, 2.0, 4.0, 2.0, 1.5, 8.0]})
    table = orderings(frame, ["step"])
    assert format_orderings(table) == ["a below b on 2 of 3 instances"]
    alone = orderings(frame[frame.label == "a"], ["step"])  # one estimator: nothing to order, the columns all there
    assert alone.empty and list(alone.columns) == ["step", "better", "worse", "wins", "instances"]


@pytest.mark.parametrize("kwargs, message", [
    ({"samples": 3}, "samples must be in [4, 100000000], got 3"),
    ({"points": 0}, "points must be in [1, 297], got 0"),
    ({"seed": -1}, "seed must be in [0, 9223372036854775803], got -1"),
    ({"checkpoints": (0, -5)}, "checkpoints must be in [0, 1000000], got -5"),
    ({"checkpoints": (10**12,)}, "checkpoints must be in [0, 1000000], got 1000000000000"),
    ({"checkpoints": ()}, "checkpoints must name at least one step"),
    ({"instances": 0}, "instances must be in [1, 1000], got 0"),
    ({"points": 60}, "digits-vae[latents=4,categories=8,hidden=128,batch=64,code_dim=8] has 297 evaluation images; "
                     "images 240 to 299 were asked for (fewer points or instances)"),
])
def test_bad_arguments_are_refused_before_training(kwargs, message, monkeypatch):
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(GumbenchError) as caught:
        elbo_gradient_study("st-gumbel", **kwargs)
    assert str(caught.value) == "elbo_gradient_study: " + message


def test_intervals_over_instances_respect_each_statistics_range():
    from gumbench.benchmarks.studies.instances import interval_over_instances

    spread = [0.001, 0.002, 0.5]  # a t interval of these would reach below 0
    for scale in ("zero-bounded", "log"):
        estimate = interval_over_instances(spread, scale)
        assert 0 <= estimate.low <= estimate.value <= estimate.high
    assert interval_over_instances(spread, "log").low > 0  # geometric: strictly positive
    assert interval_over_instances([0.0, 0.0, 0.1], "log").low == 0  # no log of 0: the clipped arithmetic interval
    cosines = interval_over_instances([0.99, 0.999, 0.9], "fisher")
    assert -1 < cosines.low <= cosines.value <= cosines.high < 1
    assert all(math.isnan(x) for x in interval_over_instances([0.5, math.nan], "log"))
