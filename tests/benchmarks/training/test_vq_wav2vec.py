"""vq-wav2vec: the encoder's frames, a causal context network on the quantized sequence, wav2vec's
future-prediction loss by hand, Gumbel and k-means variants, deterministic training, bad input refused."""

import math

import pytest
import torch
from torch.nn import functional as F

from gumbench.benchmarks.training import registry, train
from gumbench.benchmarks.training.vq_wav2vec import encoder_frames
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.benchmarks.speech import TIMING, gen, task_of

SMALL = "vq-wav2vec[batch=2,crop=0.25,channels=16,context_layers=2,steps_ahead=3,negatives=4,codes=16]"


def model_of(task, estimator="st-gumbel", seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return task.build(make_estimator(estimator))


def test_registered_with_wav2vecs_frame_rate():
    assert "vq-wav2vec" in registry.names()
    # 16000 -> (16000 - 10)//5 + 1 = 3199 -> (3199 - 8)//4 + 1 = 798 -> 398 -> 198 -> 98, then three 1 x 1 layers
    assert encoder_frames(16000) == 98
    assert encoder_frames(4000) == 23
    task = task_of(SMALL)
    model = model_of(task)
    assert model.feature_encoder(task.batch(1, gen(0))).shape == (2, 23, 16)


def test_context_convolutions_are_causal_and_the_group_norm_spans_the_crop():
    """As fairseq's aggregator: left-padded convolutions, and GroupNorm(1, C) whose statistics cover the
    channels and all frames, so a later frame moves earlier ones only through the normalization."""
    import copy

    from torch import nn

    task = task_of(SMALL)
    model = model_of(task)
    x = torch.randn(2, 23, 16, generator=gen(1))
    y = x.clone()
    y[:, 10] += 1.0
    a, b = model.context(x), model.context(y)
    assert not torch.equal(a[:, :10], b[:, :10]) and not torch.equal(a[:, 10:], b[:, 10:])
    convolutions_only = copy.deepcopy(model.context)
    for block in convolutions_only.blocks:
        block[2] = nn.Identity()
    a, b = convolutions_only(x), convolutions_only(y)
    assert torch.equal(a[:, :10], b[:, :10]) and not torch.equal(a[:, 10:], b[:, 10:])


def test_negatives_are_other_frames_of_the_same_crop():
    task = task_of(SMALL)
    negatives = task.draw_negatives(2, gen(0))
    assert negatives.shape == (2, 23, 4)
    frames = torch.arange(2 * 23).reshape(2, 23, 1)
    assert (negatives != frames).all()
    assert ((negatives // 23) == (frames // 23)).all()


@pytest.mark.parametrize("offset", [1, 3])
def test_future_prediction_loss_by_hand(offset):
    """sum_k -log sigma(z_{i+k} . h_k(c_i)) - sum_n log sigma(-z_n . h_k(c_i)), averaged over the (i, k) pairs,
    k = offset .. offset + K - 1 (the j-th map of the ConvTranspose2d predicts offset + j frames ahead)."""
    task = task_of(SMALL.replace("]", f",offset={offset}]"))
    model = model_of(task)
    q = torch.randn(2, 23, 16, generator=gen(2))
    negatives = task.draw_negatives(2, gen(3))
    out = task.predict(model, q, q, negatives)
    context = model.context(q)
    weight, bias = model.predict.weight[:, :, 0, :], model.predict.bias  # (C_in, C_out, K), (C_out,)
    flat = q.reshape(-1, 16)
    terms = []
    for b in range(2):
        for i in range(23):
            for j in range(3):
                k = offset + j
                if i + k >= 23:
                    continue
                h = context[b, i] @ weight[:, :, j] + bias
                loss = -F.logsigmoid(q[b, i + k] @ h) - F.logsigmoid(-(flat[negatives[b, i + k]] @ h)).sum()
                terms.append(loss)
    assert out.pairs == len(terms) == 2 * sum(23 - k for k in range(offset, offset + 3))
    torch.testing.assert_close(out.loss.mean(), torch.stack(terms).mean())


@pytest.mark.parametrize("estimator", ["st-gumbel", "vq-commitment"])
def test_terms_of_the_gumbel_and_kmeans_variants(estimator):
    task = task_of(SMALL)
    model = model_of(task, estimator)
    terms = task.quantize(model, task.prepare(model, task.batch(1, gen(0)), gen(0)), gen(0))
    if estimator == "st-gumbel":  # no diversity loss, no quantizer loss: the total is the contrastive term
        assert terms.bottleneck.logits.shape == (2, 23, 2, 16)
        assert float(terms.quantizer) == 0 and torch.equal(terms.total, terms.contrastive)
        assert len(model.quantizer_hidden) == 0  # fairseq's default vq_depth 1: the logits layer reads z directly
    else:  # k-means: ||sg(z) - z^||^2 + 0.25 ||z - sg(z^)||^2 beside the contrastive term
        aux = terms.bottleneck.aux
        assert set(aux) == {"codebook", "commitment"}
        torch.testing.assert_close(aux["commitment"], 0.25 * aux["codebook"])
        torch.testing.assert_close(terms.total, terms.contrastive + aux["codebook"].mean() + aux["commitment"].mean())
        assert len(model.quantizer_hidden) == 0


def test_default_quantizer_depth_is_fairseqs_vq_depth_default():
    assert registry.get("vq-wav2vec").defaults["quantizer_depth"] == 1
    assert task_of(SMALL).params["quantizer_depth"] == 1


def _default_linear_init(layer):
    """nn.Linear's own init: weight and bias U(-1/sqrt(in), 1/sqrt(in)), std bound/sqrt(3)."""
    bound = 1 / layer.in_features ** 0.5
    for tensor in (layer.weight.detach(), layer.bias.detach()):
        assert tensor.abs().max() <= bound
        assert 0.8 < float(tensor.std()) / (bound / 3 ** 0.5) < 1.2, float(tensor.std())


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_gumbel_inits_follow_fairseq(depth):
    """fairseq's GumbelVectorQuantizer: vars ~ U(0, 1); weight_proj N(0, 1) with zero bias only when
    weight_proj_depth == 1, otherwise every Linear keeps its default init."""
    from torch import nn

    model = model_of(task_of(SMALL.replace("]", f",quantizer_depth={depth}]")))
    codebook = model.bottleneck.codebook.detach()
    assert codebook.shape == (2, 16, 8)
    assert codebook.min() >= 0 and codebook.max() < 1
    assert abs(float(codebook.mean()) - 0.5) < 0.05 and abs(float(codebook.std()) - 12 ** -0.5) < 0.03
    project = model.bottleneck.project
    hidden = [layer for layer in model.quantizer_hidden if isinstance(layer, nn.Linear)]
    assert len(hidden) == depth - 1 and len(model.quantizer_hidden) == 2 * (depth - 1)
    assert project.in_features == (16 if depth == 1 else 32) and project.out_features == 2 * 16
    if depth == 1:
        assert torch.equal(project.bias.detach(), torch.zeros(32))
        weight = project.weight.detach()
        assert 0.9 < float(weight.std()) < 1.1 and weight.abs().max() > 2
    else:
        for layer in hidden + [project]:
            _default_linear_init(layer)


def test_kmeans_linear_projection_keeps_the_bottlenecks_init():
    """``kmeans_projection=linear``: DiscreteBottleneck's codebook N(0, 1/d) (not the Gumbel variant's U(0, 1))
    and nn.Linear's init for its projection."""
    model = model_of(task_of(SMALL.replace("]", ",kmeans_projection=linear]")), "vq-commitment")
    codebook = model.bottleneck.codebook.detach()
    assert codebook.shape == (2, 16, 8)
    assert 0.8 < float(codebook.std()) * 8 ** 0.5 < 1.2 and abs(float(codebook.mean())) < 0.1
    _default_linear_init(model.bottleneck.project)


@pytest.mark.parametrize("std", [1.0, 0.01])
def test_kmeans_groupnorm_projection_is_fairseqs(std):
    """The default k-means projection, fairseq's: a grouped 1 x 1 convolution without bias (block diagonal: a
    group's output reads only its own channels), then GroupNorm(G, C) over a group's channels and frames; the
    codebook N(0, std^2) (default 1, the GroupNorm's scale; fairseq's 0.01 selectable)."""
    from gumbench.benchmarks.training.vq_wav2vec import GroupNormProjection

    spec = SMALL if std == 1.0 else SMALL.replace("]", f",kmeans_codebook_std={std}]")
    model = model_of(task_of(spec), "vq-commitment")
    project = model.bottleneck.project
    assert isinstance(project, GroupNormProjection) and project.conv.bias is None and project.conv.groups == 2
    codebook = model.bottleneck.codebook.detach()
    assert 0.85 < float(codebook.std()) / std < 1.15
    x = torch.randn(3, 23, 16, generator=gen(8))
    y = project(x)
    assert y.shape == x.shape
    for g in range(2):
        part = y[..., 8 * g : 8 * (g + 1)]
        torch.testing.assert_close(part.mean((-2, -1)), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(part.var((-2, -1), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    moved = x.clone()
    moved[..., 8:] += torch.randn(3, 23, 8, generator=gen(9))
    assert torch.equal(project(moved)[..., :8], y[..., :8])  # group 0 does not read group 1's channels
    assert project(torch.zeros(1, 16)).shape == (1, 16)  # the preflight's row of zeros


@pytest.mark.parametrize("estimator", ["st-gumbel", "vq-commitment"])
def test_trains_deterministically_with_eval_metrics(estimator):
    a = train(SMALL, estimator, steps=3, seed=0, eval_every=3)
    b = train(SMALL, estimator, steps=3, seed=0, eval_every=3)
    assert a.drop(columns=TIMING).equals(b.drop(columns=TIMING))
    for column in (
        "loss_contrastive",
        "loss_accuracy",
        "code_perplexity",
        "sampled_code_perplexity",
        "eval_contrastive",
        "eval_accuracy",
        "eval_code_perplexity",
    ):
        assert column in a, column
    assert a["loss"].notna().all()


@pytest.mark.parametrize("spec, message", [
    ("vq-wav2vec[channels=15]", "channels .15. must be a multiple of groups .2."),
    ("vq-wav2vec[crop=0.1]", r"gives 8 frames; predicting steps_ahead=12 from offset=3 \(up to 14 frames ahead\) "
                             "needs at least 16"),
    ("vq-wav2vec[crop=0.15,offset=1]", r"gives 13 frames; .*up to 12 frames ahead\) needs at least 14"),
    ("vq-wav2vec[warmup=5,lr_schedule=constant]", "warmup only applies with lr_schedule=cosine"),
    ("vq-wav2vec[tau_decay=0.9]", "tau_decay only applies with tau_schedule=exponential"),
    ("vq-wav2vec[tau_anneal=0]", "tau_anneal must be"),
    ("vq-wav2vec[lr_schedule=linear]", "lr_schedule"),
    ("vq-wav2vec[tau_min=3]", r"tau_min \(3.0\) must not exceed tau_max \(2.0\)"),
    ("vq-wav2vec[negatives=0]", "negatives"),
])
def test_bad_parameters(spec, message):
    with pytest.raises(GumbenchError, match=message):
        registry.create(spec)


def test_collapsed_codes_make_every_distractor_a_tie_and_no_pair_correct():
    task = task_of(SMALL)
    model = model_of(task)
    q = torch.randn(16, generator=gen(4)).expand(2, 23, 16)  # one vector everywhere: codes collapsed
    out = task.predict(model, q, q, task.draw_negatives(2, gen(5)))
    assert float(out.identical) == 1 and float(out.accuracy) == 0
    distinct = task.predict(model, torch.randn(2, 23, 16, generator=gen(6)), torch.randn(2, 23, 16, generator=gen(7)),
                            task.draw_negatives(2, gen(5)))
    assert float(distinct.identical) == 0


# --- fairseq's recipe: offset, learning-rate and temperature schedules -------------------------------------------

def test_offset_is_fairseqs_auto_from_the_receptive_field():
    """fairseq's offset=auto: receptive field 10 + 7*5 + 3*20 + 3*40 + 3*80 = 465 samples over a hop of
    5*4*2*2*2 = 160: ceil(465 / 160) = 3; the default predicts k = 3 .. 14."""
    from gumbench.benchmarks.training.vq_wav2vec import auto_offset

    assert auto_offset() == 3 == registry.get("vq-wav2vec").defaults["offset"]
    assert auto_offset(((10, 5),)) == 2  # one layer: ceil(10 / 5)
    assert auto_offset(((10, 5), (3, 2))) == 2  # (10 + 2*5) / 10
    assert auto_offset(((4, 2), (4, 2))) == 3  # (4 + 3*2) / 4 = 2.5


def test_cosine_learning_rate_follows_fairseqs_formula():
    from gumbench.benchmarks.training.vq_wav2vec import cosine_lr_factor

    f = lambda step: cosine_lr_factor(step, 1000, 100, 0.01, 1e-4)  # noqa: E731
    assert f(1) == 0.01  # fairseq's update 0: warmup_init_lr
    assert f(51) == pytest.approx(0.01 + 0.99 * 50 / 100)
    assert f(101) == pytest.approx(1.0)  # warm-up done: the peak
    assert f(551) == pytest.approx(1e-4 + (1 - 1e-4) * 0.5)  # half the cosine period
    assert f(326) == pytest.approx(1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert f(1001) == pytest.approx(1e-4) and f(5000) == pytest.approx(1e-4)  # held at the floor, no restart
    assert cosine_lr_factor(1, 10, 0, 0.01, 0.0) == 1.0  # no warm-up: the peak first


def test_linear_temperature_anneals_over_seventy_percent():
    from gumbench.benchmarks.training.vq_wav2vec import linear_temperature

    assert linear_temperature(0, 1000, 2.0, 0.5, 0.7) == 2.0
    assert linear_temperature(350, 1000, 2.0, 0.5, 0.7) == pytest.approx(1.25)
    assert linear_temperature(700, 1000, 2.0, 0.5, 0.7) == pytest.approx(0.5)
    assert linear_temperature(900, 1000, 2.0, 0.5, 0.7) == 0.5


def test_schedules_span_the_run_and_reach_the_optimizer():
    """``updates=0``: the schedules' length is the run's steps (the rows' task names it); each step's learning
    rate is the peak times the cosine factor, and its temperature the linear one; fairseq's exponential
    temperature and a constant rate stay selectable."""
    from gumbench.benchmarks.training.vq_wav2vec import cosine_lr_factor, linear_temperature

    spec = SMALL.replace("]", ",warmup=2]")
    rows = train(spec, "st-gumbel", steps=6, seed=0, lr=1e-3, eval_every=6)
    assert "updates=6" in rows.task.iloc[0]
    for step, lr, tau in zip(rows.step, rows.lr, rows.tau):
        assert lr == pytest.approx(1e-3 * cosine_lr_factor(step, 6, 2, 0.01, 1e-4))
        assert tau == pytest.approx(linear_temperature(step, 6, 2.0, 0.5, 0.7))
    fixed = task_of(SMALL.replace("]", ",updates=100]"))
    assert fixed.for_budget(6) is fixed and fixed.temperature(35) == pytest.approx(2 - 1.5 * 35 / 70)
    old = task_of(SMALL.replace("]", ",lr_schedule=constant,tau_schedule=exponential]"))
    assert old.lr_factor(3) is None and old.temperature(10) == pytest.approx(2 * 0.999995**10)
    assert "lr" not in train(old, "vq-commitment", steps=2, seed=0, eval_every=2)


def test_the_unranked_marker_is_what_the_committed_runs_give():
    """``VqWav2Vec.unranked`` names exactly the variants that learning_check finds not learning in the committed
    5-seed runs, so a ranking that reads the marker leaves out what the results say it should."""
    import pathlib

    import pandas as pd

    from gumbench.benchmarks.training.learning import GRADIENT_PATH_ONLY, learning_check

    root = pathlib.Path(__file__).resolve().parents[3]
    frame = pd.read_csv(root / "results" / "speech" / "training-vq-wav2vec.csv")
    check = learning_check(frame, negatives=10, codes=640)
    assert set(check.runs) == {5}
    unranked = registry.get("vq-wav2vec").unranked
    assert set(unranked) == set(check.label[~check.learns])
    assert all(reason.startswith(GRADIENT_PATH_ONLY) for reason in unranked.values())
