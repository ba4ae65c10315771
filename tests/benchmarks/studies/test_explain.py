"""``explain``: the four sub-questions answered on wav2vec 2.0 and vq-wav2vec, each answer pinned to the
measurement that shows it (a test fails when a measurement stops supporting its answer).

Tolerances: float32 gradients against a float64 recomputation agree to 1e-5 relative (about 100
float32 roundings); the wrong noise is off by more than 10%; values that must not depend on
something (the contrastive loss on tau, the forward value on the soft term) are compared exactly."""

import json

import pytest

from gumbench.benchmarks.studies.explain import QUESTIONS, TARGETS, TERMS, explain, format_explanation
from gumbench.errors import GumbenchError

SAME, WRONG = 1e-5, 0.1


@pytest.fixture(scope="module")
def report():
    return explain(seed=0, variant="both")


def each(report):
    return report["variants"].items()


def test_every_answer_is_given_and_supported_on_both_architectures(report):
    assert set(report["variants"]) == {"wav2vec2", "vq-wav2vec"}
    for name, v in each(report):
        assert set(v["answers"]) == {*QUESTIONS, "eval"}
        for key, answer in v["answers"].items():
            assert answer["holds"], (name, key)
            assert answer["answer"] and answer["proof"], (name, key)


def test_1_noise_is_drawn_once_per_frame_group_and_code_and_reused_in_the_backward(report):
    for name, v in each(report):
        f, b = v["forward"], v["backward"]
        assert v["answers"]["noise"]["answer"].startswith("yes")
        assert f["max_abs_difference_from_one_hot"] == 0 and f["indices_equal_argmax_logits_plus_g"]
        assert f["noise_draws"] == v["quantized_rows"] * v["groups"] * v["codes"]  # per frame, group and code
        assert 0 < f["share_differing_from_noiseless_argmax"] < 1  # a sample, not the mode
        assert b["relative_error_same_noise"] < SAME
        assert b["relative_error_without_noise"] > WRONG and b["relative_error_fresh_noise"] > WRONG


def test_2_the_contrastive_value_is_of_the_hard_rows_and_its_gradient_goes_through_the_softmax(report):
    for name, v in each(report):
        t, h, b = v["temperature"], v["hard_rows"], v["backward"]
        assert v["answers"]["contrastive"]["answer"].startswith("its value, yes")
        assert h["abs_difference"] == 0  # the codebook rows alone give the loss
        assert t["same_codes"] and t["contrastive_abs_difference"] == 0  # the value does not depend on tau
        assert b["contrastive_gradient_norm_at_logits"] > 0  # ... but the gradient reaches the logits
        assert b["contrastive_gradient_norm_at_logits"] == pytest.approx(v["gradient_norms"]["contrastive"]["logits"])
        # and depends on tau: the softmax Jacobian is 1/tau-scaled and flatter at a higher temperature
        assert t["gradient_norm_at_logits_other_tau"] < (1 - WRONG) * t["gradient_norm_at_logits"]


def test_3_only_the_diversity_term_is_a_function_of_the_probabilities(report):
    w = report["variants"]["wav2vec2"]
    d, norms = w["diversity"], w["gradient_norms"]
    assert w["answers"]["diversity"]["answer"].startswith("in the loss value, yes")
    assert d["weight"] == 0.1 and d["frames_averaged"] == w["quantized_rows"]
    assert d["value"] == pytest.approx(d["weight"] * d["unweighted"])
    assert d["abs_difference"] < SAME * d["value"] and d["gradient_relative_difference"] < SAME
    assert w["temperature"]["diversity_abs_difference"] == 0  # no tau, no g in it
    assert abs(d["by_hand_noisy_softmax"] - d["value"]) > WRONG * d["value"]  # it is the noiseless softmax
    assert norms["feature_penalty"]["logits"] == 0 and norms["feature_penalty"]["codebook"] == 0
    assert norms["diversity"]["codebook"] == 0 and norms["diversity"]["logits"] > 0
    vq = report["variants"]["vq-wav2vec"]
    assert vq["answers"]["diversity"]["answer"].startswith("there is no diversity loss")
    assert vq["weights"] == {"contrastive": 1.0} and vq["values"]["total"] == vq["values"]["contrastive"]


def test_4_in_vq_wav2vec_the_probabilities_enter_through_the_context_input_and_the_targets(report):
    vq = report["variants"]["vq-wav2vec"]["paths"]
    assert vq["value_abs_difference"] == 0
    assert vq["context_input_norm_at_logits"] > 0 and vq["targets_norm_at_logits"] > 0
    assert vq["sum_relative_error"] < SAME and vq["upstream_split_relative_error"] < SAME
    w2v = report["variants"]["wav2vec2"]["paths"]  # wav2vec 2.0's context network never reads them
    assert w2v["context_input_norm_at_logits"] == 0 and w2v["sum_relative_error"] < SAME


def test_eval_takes_the_noiseless_argmax_draws_nothing_and_passes_no_gradient(report):
    for name, v in each(report):
        e = v["eval"]
        assert e["indices_equal_noiseless_argmax"] and e["generator_untouched"] and e["gradient_norm_at_logits"] == 0
        assert e["share_differing_from_training_sample"] == v["forward"]["share_differing_from_noiseless_argmax"]


def test_per_term_gradients_sum_to_the_total(report):
    for name, v in each(report):
        for target in TARGETS:
            check = v["sum_check"][target]
            assert check["total_norm"] > 0, target
            assert check["max_abs_difference"] <= SAME * check["total_norm"], target


def test_text_answers_first_then_proofs_and_json_carries_the_answers(report):
    text = format_explanation(report)
    answers, proofs = text.index("Answers"), text.index("Proof, wav2vec 2.0")
    assert answers < proofs < text.index("Proof, vq-wav2vec")
    flat = " ".join(text.split())  # paragraphs are wrapped
    for phrase in ("hard + soft - stop_gradient(soft)", "(x0.1)", "context network", "targets and distractors",
                   "noiseless argmax", *QUESTIONS.values()):
        assert phrase in flat, phrase
    assert "NOT SUPPORTED" not in text
    for name, v in each(report):
        for key in (*QUESTIONS, "eval"):
            assert v["answers"][key]["answer"] in flat and v["answers"][key]["proof"] in flat
    assert json.loads(json.dumps(report)) == report
    assert set(report["variants"]["wav2vec2"]["values"]) == {*TERMS["wav2vec2"], "total"}


def test_an_answer_without_its_measurement_is_flagged(report):
    from gumbench.benchmarks.studies.explain_answers import answers as answer

    fake = json.loads(json.dumps(report["variants"]["vq-wav2vec"]))
    fake["temperature"]["contrastive_abs_difference"] = 1e-3  # as if the contrastive value depended on tau
    answers = answer(fake)
    assert not answers["contrastive"]["holds"] and not answers["where"]["holds"]
    text = format_explanation({**report, "variants": {"vq-wav2vec": {**fake, "answers": answers}}})
    assert "NOT SUPPORTED" in text


def test_bad_input(tmp_path):
    with pytest.raises(GumbenchError, match="variant"):
        explain(variant="hubert")
    with pytest.raises(GumbenchError, match="no .wav or .flac files"):
        explain(audio_dir=tmp_path, variant="vq-wav2vec")


def test_the_package_gives_the_module_not_the_function():
    import gumbench.benchmarks.studies
    import gumbench.benchmarks.studies.explain as module

    assert type(module).__name__ == "module" and module.explain is explain
    assert gumbench.benchmarks.studies.explain is module
