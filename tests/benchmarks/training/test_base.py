"""train(): deterministic from a seed with any task and estimator, bad input refused, temperature schedules through
with_params."""

import pytest

from gumbench.benchmarks.training import make_training_task, registry, train
from gumbench.benchmarks.training.synthetic import GaussianMixtureVQ
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator

SYNTHETIC = ["digits-vae", "gmm-vq", "tones"]


@pytest.mark.parametrize("task", SYNTHETIC)
@pytest.mark.parametrize("estimator", ["st-gumbel", "vq-commitment", "reinforce[baseline=loo]", "soft-gumbel"])
def test_runs_deterministically_with_any_estimator(task, estimator):
    a = train(task, estimator, steps=4, seed=3, eval_every=2)
    b = train(task, estimator, steps=4, seed=3, eval_every=2)
    assert list(a["step"]) == [1, 2, 3, 4]
    timing = ["step_seconds", "peak_memory_mb"]
    assert a.drop(columns=timing).equals(b.drop(columns=timing))
    for column in (
        "loss",
        "code_perplexity",
        "used_fraction",
        "dead_codes",
        "grad_norm_model",
        "step_seconds",
        "peak_memory_mb",
        "eval_churn",
    ):
        assert column in a, column
    assert (a["code_perplexity"] >= 1).all()
    c = train(task, estimator, steps=4, seed=4, eval_every=2)
    assert not a["loss"].equals(c["loss"])


def test_bad_training_input():
    with pytest.raises(GumbenchError, match="unknown training task"):
        make_training_task("nope")
    with pytest.raises(GumbenchError, match="steps"):
        train("gmm-vq", "st-gumbel", steps=0)
    with pytest.raises(GumbenchError, match="allowed"):
        make_training_task("gmm-vq[clusterz=3]")
    assert {"digits-vae", "gmm-vq", "tones"} <= set(registry.names())


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 10**12}, "steps must be in [1, 1000000], got 1000000000000"),  # used to run until killed
    ({"steps": 1.5}, "steps must be an integer in [1, 1000000], got 1.5"),
    ({"seed": -1}, "seed must be in [0, 9223372036854775807], got -1"),
    ({"seed": 0.5}, "seed must be an integer in [0, 9223372036854775807], got 0.5"),
    ({"lr": float("inf")}, "lr must be a finite number in (0, 1000], got inf"),
    ({"eval_every": 0}, "eval_every must be in [1, 1000000], got 0"),
    ({"dead_window": 10**12}, "dead_window must be in [1, 10000], got 1000000000000"),
    ({"device": "gpu9"}, "device must be a torch device such as 'cpu' or 'cuda:0', got 'gpu9'"),
])
def test_bad_settings_are_refused_before_the_model_is_built(kwargs, message):
    task = CoolingMixture(batch=8)
    with pytest.raises(GumbenchError) as caught:
        train(task, "st-gumbel", **{"steps": 2, **kwargs})
    assert str(caught.value) == "train: " + message
    assert task.built == 0


class CoolingMixture(GaussianMixtureVQ):
    """gmm-vq with a temperature schedule 2 / (1 + step): 1, 2/3, 1/2, 2/5, ... (not registered)."""

    built = 0

    def temperature(self, step):
        return 2.0 / (1 + step)

    def build(self, estimator):
        self.built += 1
        return super().build(estimator)


def test_temperature_schedule_reaches_the_estimator_through_with_params():
    task = CoolingMixture(batch=32)
    configured = make_estimator("st-gumbel[tau=0.7]")
    seen = []
    frame = train(task, configured, steps=4, seed=0, eval_every=4,
                  callback=lambda step, model: seen.append((step, model.bottleneck.estimator.params["tau"])))
    schedule = [2.0 / (1 + step) for step in (1, 2, 3, 4)]
    assert frame["tau"].tolist() == schedule
    # the model's estimator is a new object per temperature; what was configured is never changed
    assert seen == [(0, 0.7)] + list(zip((1, 2, 3, 4), schedule))
    assert configured.params == {"tau": 0.7} and configured.spec == "st-gumbel[tau=0.7]"
    assert set(frame["estimator"]) == {"st-gumbel[tau=0.7]"} and set(frame["label"]) == {"st-gumbel[tau=0.7]"}
    # estimators without a temperature keep theirs: the tau column is NaN
    assert train(task, "reinforce[baseline=loo]", steps=2, seed=0)["tau"].isna().all()


def test_a_schedule_below_reinmax_range_is_refused_before_the_first_step():
    task = CoolingMixture(batch=32)  # tau = 1 at step 1, 2/3 at step 2
    calls = []
    with pytest.raises(GumbenchError, match="tau must be >= 1"):
        train(task, "reinmax", steps=3, seed=0, callback=lambda step, model: calls.append(step))
    assert calls == [] and task.built == 0, "refused before building the model or calling back"
    # one step stays at tau = 1: allowed
    frame = train(task, "reinmax", steps=1, seed=0, callback=lambda step, model: calls.append(step))
    assert frame["tau"].tolist() == [1.0] and calls == [0, 1]


@pytest.mark.parametrize("estimator", ["st-gumbel[tau=2]", "vq-commitment"])
def test_code_perplexity_is_the_noiseless_argmax_and_the_sampled_codes_have_their_own_column(estimator):
    """fairseq's code_perplexity is of argmax(logits) even in training; the codes the forward used are
    sampled_code_perplexity. The hook sees what the bottleneck gave the step."""
    import torch

    from gumbench.benchmarks.utilization import code_perplexity

    seen = []

    def hook(step, model):
        if step == 0:
            model.bottleneck.register_forward_hook(lambda module, args, out: seen.append(out))

    frame = train("gmm-vq", estimator, steps=3, seed=0, callback=hook)
    size = make_training_task("gmm-vq").codes
    assert len(seen) == 3
    for row, out in zip(frame.to_dict("records"), seen):
        noiseless = out.logits.argmax(-1) if out.logits is not None else out.indices
        assert row["code_perplexity"] == float(code_perplexity(noiseless, size).sum())
        assert row["sampled_code_perplexity"] == float(code_perplexity(out.indices, size).sum())
    if estimator.startswith("st-gumbel"):  # at tau = 2 on fresh logits the samples differ from the argmax
        assert (frame["code_perplexity"] != frame["sampled_code_perplexity"]).any()
        assert not torch.equal(seen[0].logits.argmax(-1), seen[0].indices)
    else:  # VQ draws nothing
        assert frame["code_perplexity"].equals(frame["sampled_code_perplexity"])
