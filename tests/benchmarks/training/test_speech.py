"""Speech training tasks (wav2vec2, logmel-vqvae): parts by hand, deterministic training, any audio folder, exact
gradient by brute force;
parameters out of range refused before the audio loads."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from gumbench.benchmarks.problems.enumeration import exact_gradient
from gumbench.benchmarks.training import make_training_task, registry, speech, train
from gumbench.benchmarks.training.logmel_vqvae import LogMelVQVAETask
from gumbench.benchmarks.training.speech import (
    Wav2Vec2,
    frames_of,
    info_nce,
    sample_negatives,
    span_mask,
)
from gumbench.benchmarks.utilization import diversity_loss
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.benchmarks.speech import TIMING, _logmel_model, gen, task_of


def test_tasks_are_registered():
    assert {"wav2vec2", "logmel-vqvae"} <= set(registry.names())


def test_frames_per_crop_by_hand():
    # (16000 - 10) // 5 + 1 = 3199 -> 1599 -> 799 -> 399 -> 199 -> 99 -> 49 (kernel 2, stride 2)
    assert frames_of(16000) == 49
    assert frames_of(400) == 1


def test_temperature_schedule_is_fairseqs():
    task = task_of("wav2vec2")
    assert task.temperature(0) == 2.0
    assert task.temperature(10) == pytest.approx(2 * 0.999995**10)
    assert task.temperature(300_000) == 0.5  # 2 exp(-1.5) = 0.446 < 0.5
    fast = make_training_task("wav2vec2[tau_max=1,tau_min=0.1,tau_decay=0.5]")
    assert fast.temperature(2) == 0.25 and fast.temperature(10) == 0.1


def test_info_nce_by_hand():
    context = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # cosine ignores the norm
    negatives = torch.tensor([[1], [0]])
    out = info_nce(context, targets, negatives, temperature=1.0)
    # logits [cos = 1, cos = 0]: loss = log(e + 1) - 1 = log(1 + 1/e)
    torch.testing.assert_close(out.loss, torch.full((2,), math.log(1 + math.exp(-1))))
    assert out.correct.all() and (out.identical == 0).all()
    half = info_nce(context, targets, negatives, temperature=0.5)
    torch.testing.assert_close(half.loss, torch.full((2,), math.log(1 + math.exp(-2))))
    # a leading sample dimension is carried through
    stacked = info_nce(context, torch.stack([targets, targets.flip(0)]), negatives, 1.0)
    assert stacked.loss.shape == (2, 2)
    torch.testing.assert_close(stacked.loss[1], torch.full((2,), math.log(1 + math.exp(1))))
    # a distractor equal to the positive (same code) is excluded: loss 0, as in fairseq
    same = info_nce(context, torch.tensor([[1.0, 1.0], [1.0, 1.0]]), negatives, 1.0)
    torch.testing.assert_close(same.loss, torch.zeros(2))
    assert (same.identical == 1).all()


def test_span_mask_and_distractors():
    mask = span_mask(4, 10, prob=0.5, length=3, generator=gen(0))
    assert mask.shape == (4, 10)
    for row in mask.int().tolist():
        runs = [len(r) for r in "".join(map(str, row)).split("0") if r]
        # int(0.5 * 10 / 3 + u) = 1 or 2 spans of 3 frames, which may overlap or touch
        assert 3 <= sum(row) <= 6 and min(runs) >= 3
    negatives = sample_negatives(mask, 50, gen(1))
    crop = torch.repeat_interleave(torch.arange(4), mask.sum(1))
    own = torch.arange(len(crop)).unsqueeze(1)
    assert negatives.shape == (len(crop), 50)
    assert (negatives != own).all(), "a frame is never its own distractor"
    assert (crop[negatives] == crop.unsqueeze(1)).all(), "distractors come from the same crop"
    with pytest.raises(GumbenchError, match="at least 2 masked frames"):
        sample_negatives(torch.tensor([[True, False, False]]), 3, gen(0))


def test_wav2vec2_terms_add_up_and_rows_are_masked_frames():
    task = task_of("wav2vec2[batch=4]")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = task.build(make_estimator("st-gumbel"))
    masked = task.prepare(model, task.batch(1, gen(0)), gen(1))
    terms = task.quantize(model, masked, gen(2))
    out = terms.bottleneck
    assert out.indices.shape == (int(masked.mask.sum()), 2) and out.logits.shape == (int(masked.mask.sum()), 2, 320)
    torch.testing.assert_close(terms.contrastive, out.loss.mean())
    torch.testing.assert_close(terms.diversity, 0.1 * diversity_loss(out.logits))
    torch.testing.assert_close(terms.feature_penalty, 0.01 * masked.feature_penalty)
    torch.testing.assert_close(terms.total, terms.contrastive + terms.diversity + terms.feature_penalty)


def test_vq_wav2vec_variant_has_no_diversity_loss():
    task = make_training_task("wav2vec2[variant=vq-wav2vec,batch=2]")
    assert task.params["diversity"] == 0
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = task.build(make_estimator("st-gumbel"))
    terms = task.quantize(model, task.prepare(model, task.batch(1, gen(0)), gen(1)), gen(2))
    assert float(terms.diversity) == 0 and not terms.diversity.requires_grad
    with pytest.raises(GumbenchError, match="no diversity loss"):
        make_training_task("wav2vec2[variant=vq-wav2vec,diversity=0.1]")


@pytest.mark.parametrize("task", ["wav2vec2[batch=4]", "logmel-vqvae"])
@pytest.mark.parametrize("estimator", ["st-gumbel", "vq-commitment", "reinforce[baseline=loo]"])
def test_speech_tasks_run_deterministically_from_a_seed(task, estimator):
    spec, task = task, task_of(task)
    a = train(task, estimator, steps=3, seed=3, eval_every=2)
    b = train(task, estimator, steps=3, seed=3, eval_every=2)
    assert list(a["step"]) == [1, 2, 3]
    assert a.drop(columns=TIMING).equals(b.drop(columns=TIMING))
    for column in ("loss", "code_perplexity", "used_fraction", "dead_codes", "eval_code_perplexity", "eval_churn"):
        assert column in a, column
    c = train(task, estimator, steps=3, seed=4, eval_every=2)
    assert not a["loss"].equals(c["loss"])
    if spec.startswith("wav2vec2"):
        assert {"loss_contrastive", "loss_accuracy", "loss_identical_distractors", "loss_feature_penalty"} <= set(
            a.columns
        )
        if estimator == "st-gumbel":
            assert a["tau"].tolist() == pytest.approx([2 * 0.999995**s for s in (1, 2, 3)])


def test_tasks_take_any_audio_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(str(tmp_path / f"{i}.flac"), 0.1 * rng.standard_normal(24000), 16000)  # 1.5 s of noise each
    frame = train(Wav2Vec2(audio_dir=str(tmp_path), batch=2), "st-gumbel", steps=2, seed=0)
    assert len(frame) == 2
    frame = train(LogMelVQVAETask(audio_dir=str(tmp_path), batch=2), "vq-commitment", steps=2, seed=0)
    assert len(frame) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GumbenchError, match="no .wav or .flac files"):
        Wav2Vec2(audio_dir=str(empty))
    with pytest.raises(GumbenchError, match="does not exist"):
        LogMelVQVAETask(audio_dir=str(tmp_path / "nowhere"))


def test_bad_speech_parameters():
    with pytest.raises(GumbenchError, match="mask_length"):
        make_training_task("wav2vec2[mask_length=1]")
    with pytest.raises(GumbenchError, match="multiple of groups"):
        make_training_task("wav2vec2[groups=3]")
    with pytest.raises(GumbenchError, match="variant"):
        make_training_task("wav2vec2[variant=hubert]")
    with pytest.raises(GumbenchError, match="fmax"):
        make_training_task("logmel-vqvae[fmax=9000]")


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            "wav2vec2[max_seconds=nan]",
            "wav2vec2: max_seconds (seconds of audio read) must be a finite number in (0, 14400], got nan",
        ),
        (
            "logmel-vqvae[max_seconds=inf]",
            "logmel-vqvae: max_seconds (seconds of audio read) must be a finite number in (0, 14400], got inf",
        ),
        ("wav2vec2[crop=inf]", "wav2vec2: crop (seconds) must be a finite number in (0, 30], got inf"),
        ("wav2vec2[layers=10000]", "wav2vec2: layers must be in [1, 24], got 10000"),
        ("wav2vec2[batch=128,crop=2]", "wav2vec2: batch x crop must be <= 128 (memory), got 128 x 2 = 256"),
        (
            "wav2vec2[dim=2048,layers=2]",
            "wav2vec2: layers x dim x dim must be <= 4,194,304 (memory), got 2 x 2048 x 2048 = 8388608",
        ),
        ("logmel-vqvae[frames=1000000000]", "logmel-vqvae: frames must be in [1, 100000], got 1000000000"),
        (
            "logmel-vqvae[batch=1024,frames=1024,hidden=128]",
            "logmel-vqvae: batch x frames x hidden must be <= 67,108,864 (memory), got 1024 x 1024 x 128 = 134217728",
        ),
    ],
)
def test_speech_parameters_are_refused_before_the_audio_loads(spec, message, monkeypatch):
    monkeypatch.setattr(speech, "load_corpus", lambda *a, **k: pytest.fail("the corpus was loaded"))
    with pytest.raises(GumbenchError) as caught:
        make_training_task(spec)
    assert str(caught.value) == message


def test_logmel_exact_gradient_matches_brute_force_enumeration():
    task = make_training_task("logmel-vqvae[groups=2,codes=3]")
    model = _logmel_model(task)
    batch = task.eval_batch()[:1, :2]  # 2 frames x 2 groups: 3^4 = 81 joint configurations
    problem = task.quantizer_problem(model, batch, gen(0))
    assert problem.logits.shape == (4, 3)
    brute, _ = exact_gradient(problem.logits, problem.loss_fn)
    torch.testing.assert_close(problem.exact_gradient(), brute)
