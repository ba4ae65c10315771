"""``explain``: one wav2vec 2.0 step on real speech, per-term gradients and the quantizer's forward/backward."""

import json

import pytest

from gumbench.errors import GumbenchError
from gumbench.benchmarks.studies.explain import TARGETS, TERMS, explain, format_explanation


@pytest.fixture(scope="module")
def report():
    return explain(seed=0, variant="both")


def test_per_term_gradients_sum_to_the_total(report):
    for variant in report["variants"].values():
        for target in TARGETS:
            check = variant["sum_check"][target]
            assert check["total_norm"] > 0, target
            assert check["max_abs_difference"] <= 1e-5 * check["total_norm"], target


def test_contrastive_gradient_reaches_the_logits_and_each_term_only_where_it_should(report):
    for name, variant in report["variants"].items():
        norms = variant["gradient_norms"]
        assert norms["contrastive"]["logits"] > 0 and norms["contrastive"]["codebook"] > 0 and norms["contrastive"]["encoder"] > 0
        assert variant["backward"]["contrastive_gradient_norm_at_logits"] == pytest.approx(norms["contrastive"]["logits"])
        # the feature penalty acts on the encoder's output only; the diversity term never touches the codebook
        assert norms["feature_penalty"]["logits"] == 0 and norms["feature_penalty"]["codebook"] == 0
        assert norms["feature_penalty"]["encoder"] > 0
        assert norms["diversity"]["codebook"] == 0
        if name == "wav2vec2":
            assert norms["diversity"]["logits"] > 0 and norms["diversity"]["encoder"] > 0
        else:
            assert all(norms["diversity"][t] == 0 for t in TARGETS) and variant["values"]["diversity"] == 0
    # the two variants share the step up to the diversity term
    a, b = report["variants"]["wav2vec2"], report["variants"]["vq-wav2vec"]
    assert a["values"]["contrastive"] == b["values"]["contrastive"]


def test_forward_is_a_sample_and_backward_uses_the_same_noise(report):
    for variant in report["variants"].values():
        forward, backward = variant["forward"], variant["backward"]
        assert forward["max_abs_difference_from_one_hot"] == 0 and forward["indices_equal_argmax_logits_plus_g"]
        assert 0 < forward["share_differing_from_noiseless_argmax"] < 1
        assert backward["relative_error_same_noise"] < 1e-5
        assert backward["relative_error_without_noise"] > 0.1 and backward["relative_error_fresh_noise"] > 0.1


def test_diversity_uses_the_noiseless_softmax_averaged_over_frames(report):
    div = report["variants"]["wav2vec2"]["diversity"]
    assert div["weight"] == 0.1 and div["frames_averaged"] == report["variants"]["wav2vec2"]["masked_frames"]
    assert div["abs_difference"] < 1e-7 and div["gradient_relative_difference"] < 1e-5
    assert abs(div["by_hand_noisy_softmax"] - div["value"]) > 1e-3
    assert report["variants"]["vq-wav2vec"]["diversity"]["weight"] == 0


def test_text_and_json(report):
    text = format_explanation(report)
    for phrase in ("wav2vec 2.0 quantizer", "vq-wav2vec Gumbel quantizer", "contrastive", "feature penalty",
                   "argmax(logits + g)", "softmax((logits + g)/tau)", "add up to the total"):
        assert phrase in text
    assert json.loads(json.dumps(report)) == report
    assert set(report["variants"]["wav2vec2"]["values"]) == {*TERMS, "total"}


def test_bad_input(tmp_path):
    with pytest.raises(GumbenchError, match="variant"):
        explain(variant="hubert")
    with pytest.raises(GumbenchError, match="no .wav or .flac files"):
        explain(audio_dir=tmp_path, variant="wav2vec2")
