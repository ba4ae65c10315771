"""The speech quantizer gradient study: an honest sampled reference, RLOO unbiased and Gumbel biased, clear refusals."""

import pytest
import torch

from gumbench.benchmarks import training
from gumbench.benchmarks.studies.speech_quantizers import (
    format_study,
    measure,
    quantizer_gradient_study,
    reference_gradient,
)
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.benchmarks.speech import _logmel_model, gen, task_of


def test_sampled_reference_error_bar_is_honest():
    """The RLOO reference lies at its stated distance from the exact gradient (logmel-vqvae)."""
    task = task_of("logmel-vqvae")
    model = _logmel_model(task)
    problem = task.quantizer_problem(model, task.eval_batch()[:1], gen(0))  # 32 frames x 128 codes
    exact = problem.exact_gradient()
    reference, figures = reference_gradient(problem.logits, problem.loss_fn, samples=300, seed=0)
    distance = float((reference - exact).norm())
    # ||mean - exact||^2 sums 4,096 coordinates' squared errors: it concentrates near tr(Sigma)/M
    assert 0.8 * figures["reference_error"] < distance < 1.2 * figures["reference_error"]


def test_logmel_study_finds_reinforce_unbiased_and_gumbel_biased_on_every_instance():
    frame = quantizer_gradient_study(
        "logmel-vqvae", ["st-gumbel", "reinforce[baseline=loo]"], checkpoints=(0, 2), crops=1, samples=500,
        instances=2,
    )
    assert sorted(frame["step"].unique()) == [0, 2]
    assert sorted(frame["instance"].unique()) == [0, 1] and sorted(frame["seed"].unique()) == [0, 1]
    ref = frame[frame.role == "reference"]
    assert (ref["reference_error"] == 0).all() and (ref["rows"] == 32).all()
    # independently seeded instances: their own model and crop, so their exact gradients differ
    norms = ref.set_index(["step", "instance"]).reference_norm
    assert norms[(0, 0)] != norms[(0, 1)] and norms[(2, 0)] != norms[(2, 1)]
    est = frame[frame.role == "estimator"].set_index(["instance", "step", "label"])
    for instance in (0, 1):
        for step in (0, 2):
            rloo, gumbel = (est.loc[(instance, step, label)] for label in ("reinforce[baseline=loo]", "st-gumbel"))
            assert rloo.relative_bias_low == 0  # unbiased: CI reaches 0
            assert gumbel.relative_bias_low > 0.05  # biased
            assert rloo.total_variance > 10 * gumbel.total_variance
            # MSE = bias^2 + variance exactly where the debiased squared bias is positive (not clipped at 0)
            assert gumbel.relative_mse == pytest.approx(gumbel.relative_bias ** 2 + gumbel.relative_std ** 2, rel=1e-9)
    text = format_study(frame)
    assert "exact" in text and "over 2 instances" in text
    assert "st-gumbel below reinforce[baseline=loo] on every instance (2 of 2)" in text


def test_wav2vec2_study_against_a_sampled_reference():
    task = task_of("wav2vec2")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = task.build(make_estimator("st-gumbel"))
    problem = task.quantizer_problem(model, task.eval_batch()[:1], gen(0))
    rows = measure(["st-gumbel", "reinforce[baseline=loo]"], problem.logits, problem.loss_fn, samples=300,
                   reference_samples=400, seed=0, tau=task.temperature(1))
    ref, gumbel, rloo = rows
    assert ref["role"] == "reference" and 0 < ref["reference_relative_error"] < 0.5
    assert gumbel["label"] == "st-gumbel[tau=1.99999]"  # the schedule's temperature at step 1
    # the Gumbel bias is resolved: far above the reference's own error bar
    assert gumbel["relative_bias_low"] > 2 * ref["reference_relative_error_high"]
    # RLOO is unbiased: what it shows as bias is within the reference's error (plus its own noise)
    assert rloo["relative_bias_low"] <= ref["reference_relative_error_high"]


def test_study_rejects_what_it_cannot_measure():
    with pytest.raises(GumbenchError, match="categorical"):
        quantizer_gradient_study("logmel-vqvae", trained_with="vq-commitment", checkpoints=(0,))
    with pytest.raises(GumbenchError, match="quantizer problem"):
        quantizer_gradient_study("gmm-vq", checkpoints=(0,))


@pytest.mark.parametrize("kwargs, message", [
    ({"crops": 9}, "crops must be in [1, 8], got 9"),
    ({"instances": 9}, "instances must be in [1, 8], got 9"),
    ({"crops": 2, "instances": 5}, "instances must be in [1, 4], got 5"),  # every instance its own crops
    ({"samples": 10**9}, "samples must be in [4, 100000000], got 1000000000"),
    ({"reference_samples": 2.5}, "reference_samples must be an integer in [4, 100000000], got 2.5"),
    ({"confidence": 1.0}, "confidence must be a finite number in (0, 1), got 1.0"),
    ({"checkpoints": ("a",)}, "checkpoints must be an integer in [0, 1000000], got 'a'"),
])
def test_bad_arguments_are_refused_before_training(kwargs, message, monkeypatch):
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(GumbenchError) as caught:
        quantizer_gradient_study("logmel-vqvae", **{"checkpoints": (0,), **kwargs})
    assert str(caught.value) == "quantizer_gradient_study: " + message
