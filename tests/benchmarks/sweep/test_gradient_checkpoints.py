"""ELBO-gradient accuracy inside sweep units (gradient_checkpoints): the rows equal the study's, the
training run is the one without the probe, and configs that cannot be probed fail with one line."""

import pytest

from gumbench.benchmarks.studies.elbo import elbo_gradient_study
from gumbench.benchmarks.sweep import expand_units, run_sweep
from gumbench.benchmarks.sweep.config import GRADIENT_POINTS, GRADIENT_SAMPLES
from gumbench.errors import GumbenchError


def config(probes=None, tasks=("digits-vae",), estimators=("st-gumbel",), steps=4):
    section = {"tasks": list(tasks), "estimators": list(estimators), "steps": steps, "eval_every": steps}
    if probes is not None:
        section["gradient_checkpoints"] = probes
    return {"name": "probe", "repetitions": 1, "training": section}


def test_probed_rows_equal_the_elbo_study_and_training_is_unchanged(tmp_path):
    probed = run_sweep(config([0, 4]), out=tmp_path / "a", progress=False)
    plain = run_sweep(config(), out=tmp_path / "b", progress=False)
    (unit,) = probed.units
    assert unit.gradient_checkpoints == (0, 4) and unit.seed == plain.units[0].seed
    assert unit.unit_id != plain.units[0].unit_id
    a, b = probed.frame(), plain.frame()
    loss = lambda f: f[f["metric"] == "loss"].sort_values("step")["value"].tolist()  # noqa: E731
    assert loss(a) == loss(b), "the probe must not change the training run"
    grad = a[a["metric"].str.startswith("elbo_gradient_")].pivot_table(index="step", columns="metric", values="value")
    assert list(grad.index) == [0, 4]
    study = elbo_gradient_study("st-gumbel", task="digits-vae", checkpoints=(0, 4), points=GRADIENT_POINTS,
                                samples=GRADIENT_SAMPLES, seed=unit.seed, instances=1)  # the unit: one instance
    means = study.groupby("step")[["relative_bias", "relative_std", "cosine"]].mean()
    for metric in ("relative_bias", "relative_std", "cosine"):
        assert grad[f"elbo_gradient_{metric}"].tolist() == pytest.approx(means[metric].tolist(), rel=1e-9)
    assert ((grad["elbo_gradient_cosine"] > -1) & (grad["elbo_gradient_cosine"] <= 1)).all() and (
        grad["elbo_gradient_relative_std"] > 0
    ).all()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"probes": [0, 5]}, "gradient_checkpoints must be steps from 0 to the section's 4 steps, got 5"),
    ({"probes": []}, "gradient_checkpoints must be a non-empty list of steps (integers), got []"),
    ({"probes": ["0"]}, "gradient_checkpoints must be a non-empty list of steps (integers), got ['0']"),
    ({"probes": [-1]}, "gradient_checkpoints must be steps from 0 to 1,000,000, got [-1]"),
    ({"probes": 3}, "gradient_checkpoints must be a non-empty list of steps (integers), got 3"),
    ({"probes": [0], "tasks": ["tones"]}, "task must be one of digits-vae, fashion-vae (a categorical VAE)"),
    ({"probes": [0], "estimators": ["vq-commitment"]}, "needs a categorical estimator"),
])
def test_unprobeable_configs_fail_with_one_line(kwargs, fragment):
    with pytest.raises(GumbenchError) as info:
        expand_units(config(**kwargs))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_without_probes_units_are_as_before():
    (unit,), _ = expand_units(config())
    assert unit.gradient_checkpoints == ()
