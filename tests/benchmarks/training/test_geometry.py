"""Quantizers own their geometry: a quantizer with an implicit code space (fsq, lfq, bsq, residual stages of
fsq) sizes the bottleneck of every training task that takes a VQ bottleneck, unless the task's spec sets
the codes or the code dimension; a conflict is one line naming the task in use and settings that work,
and those settings train."""

import math
import re

import pytest

from gumbench.benchmarks.training import make_training_task, registry, train
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator

# every training task with a VQ bottleneck (fashion-vae follows the ReinMax protocol: categorical only), small
SMALL = {
    "digits-vae": "digits-vae[batch=16,hidden=16]",
    "gmm-vq": "gmm-vq[batch=32,hidden=16]",
    "tones": "tones[frames=200,batch=16,hidden=16]",
    "logmel-vqvae": "logmel-vqvae[batch=4,frames=8,hidden=16]",
    "wav2vec2": "wav2vec2[batch=2,crop=0.25,channels=16,dim=16,layers=1,heads=2,negatives=4]",
    "vq-wav2vec": "vq-wav2vec[batch=2,crop=0.25,context_layers=2,steps_ahead=3,negatives=4]",
}
# (codes per group, code dimension) of each quantizer's own code space: FSQ's default levels 8-5-5-5, LFQ and
# BSQ at their default 10 bits, four residual stages of FSQ's 1,000 codes
SPACES = {"fsq": (1000, 4), "lfq": (1024, 10), "bsq": (1024, 10), "residual-vq[quantizer=fsq]": (4000, 4)}
# per task, a spec setting sizes that fsq's 1,000 codes of dimension 4 do not fit
CONFLICTS = {
    "digits-vae": "digits-vae[batch=16,hidden=16,code_dim=8]",
    "gmm-vq": "gmm-vq[batch=32,hidden=16,codes=32]",
    "tones": "tones[frames=200,batch=16,hidden=16,codes=16,code_dim=8]",
    "logmel-vqvae": "logmel-vqvae[batch=4,frames=8,hidden=16,code_dim=16]",
    "wav2vec2": "wav2vec2[batch=2,crop=0.25,channels=16,dim=16,layers=1,heads=2,negatives=4,final_dim=64]",
    "vq-wav2vec": "vq-wav2vec[batch=2,crop=0.25,context_layers=2,steps_ahead=3,negatives=4,channels=64]",
}


def test_the_list_covers_every_task_with_a_vq_bottleneck():
    assert set(SMALL) == set(registry.names()) - {"fashion-vae"}


def sizes_when_trained(task, estimator):
    """(rows, (groups, codes, code_dim) of the bottleneck the run built)."""
    seen = {}

    def keep(step, model):
        if step == 0:
            seen["sizes"] = (model.bottleneck.groups, model.bottleneck.codes, model.bottleneck.code_dim)

    rows = train(task, estimator, steps=2, seed=0, eval_every=2, callback=keep)
    return rows, seen["sizes"]


@pytest.mark.parametrize("estimator", list(SPACES))
@pytest.mark.parametrize("task", list(SMALL))
def test_the_quantizer_sizes_the_bottleneck(task, estimator):
    spec = SMALL[task]
    rows, (groups, codes, code_dim) = sizes_when_trained(spec, estimator)
    assert (codes, code_dim) == SPACES[estimator]
    assert groups == make_training_task(spec).groups  # the task's groups stay
    resolved = make_training_task(rows["task"].iloc[0])  # the rows record the task as trained
    assert resolved.bottleneck_sizes() == SPACES[estimator] and len(rows) == 2
    assert rows["loss"].notna().all() and (rows["eval_code_perplexity"].dropna() >= 1).all()
    if estimator in ("fsq", "lfq", "bsq"):  # the implicit codes' per-dimension columns
        bits = math.log2(codes)  # log2 of the product of the levels: 10 for 2^10 codes, 9.97 for FSQ's 1,000
        assert rows["code_bits"].iloc[-1] == pytest.approx(bits)


@pytest.mark.parametrize("task", list(SMALL))
def test_a_conflicting_explicit_size_names_the_task_and_settings_that_train(task):
    spec = CONFLICTS[task]
    built = make_training_task(spec)
    with pytest.raises(GumbenchError) as error:
        built.check_estimator(make_estimator("fsq"))
    message = str(error.value)
    named = spec  # the task as given, with the sizes it sets
    assert "\n" not in message and message.startswith(f"{named}: fsq ")
    assert "1000 codes of dimension 4" in message
    working = re.search(r"use (\S+) \(", message).group(1)
    assert working.startswith(f"{task}[")
    with pytest.raises(GumbenchError, match=re.escape(named)):
        train(spec, "fsq", steps=1)  # train() refuses it the same way, before any step
    rows, (_, codes, code_dim) = sizes_when_trained(working, "fsq")
    # the rows name the task as trained: a task whose schedules span the run names their length (for_budget)
    assert (codes, code_dim) == (1000, 4)
    assert rows["task"].iloc[0] == make_training_task(working).for_budget(len(rows)).spec


@pytest.mark.parametrize("spec, estimator, working", [
    ("gmm-vq[batch=32,hidden=16,codes=1000]", "lfq", "codes=1024,code_dim=10"),  # not a power of 2
    ("gmm-vq[batch=32,hidden=16,code_dim=20]", "bsq", "code_dim=10,codes=1024"),  # over 16 bits
    ("gmm-vq[batch=32,hidden=16,codes=1000]", "residual-vq[quantizer=fsq]", "codes=4000,code_dim=4"),  # 250 a stage
    ("gmm-vq[batch=32,hidden=16,code_dim=5,codes=100]", "lfq", "code_dim=5,codes=32"),  # keeps code_dim
])
def test_conflicts_of_the_other_quantizers(spec, estimator, working):
    with pytest.raises(GumbenchError, match=re.escape(f"use gmm-vq[batch=32,hidden=16,{working}]")):
        make_training_task(spec).check_estimator(make_estimator(estimator))
    train(f"gmm-vq[batch=32,hidden=16,{working}]", estimator, steps=1)


@pytest.mark.parametrize("spec, estimator", [
    ("gmm-vq[batch=32,hidden=16,code_dim=4]", "fsq"),  # the sizes set agree: kept as given
    ("gmm-vq[batch=32,hidden=16,codes=256]", "lfq"),  # code_dim follows: log2(256) = 8
    ("gmm-vq[batch=32,hidden=16,code_dim=5]", "bsq"),  # codes follow: 2^5 (as the default sweep's)
])
def test_explicit_sizes_that_fit_are_kept(spec, estimator):
    task = make_training_task(spec)
    sized = task.sized_for(make_estimator(estimator))
    expected = {"fsq": (1000, 4), "lfq": (256, 8), "bsq": (32, 5)}[estimator]
    assert sized.bottleneck_sizes() == expected


def test_estimators_with_codebook_rows_keep_the_tasks_sizes():
    task = make_training_task("gmm-vq")
    for name in ("vq-commitment", "residual-vq", "simvq", "st-gumbel"):
        assert task.sized_for(make_estimator(name)) is task
    # the default sweep's implicit-codebook units set code_dim: their tasks are kept as they were
    for spec, estimator in (("gmm-vq[code_dim=5]", "lfq"), ("gmm-vq[code_dim=2]", "fsq[levels=8-4]"),
                            ("digits-vae[code_dim=1]", "fsq[levels=8]"), ("tones[code_dim=4]", "bsq")):
        task = make_training_task(spec)
        assert task.sized_for(make_estimator(estimator)) is task
