"""Checkpoint and resume of training runs: a run interrupted after a checkpoint and run again from it returns
the rows of an uninterrupted run bit for bit (all but the timing and memory columns), on several tasks and
estimators with state (EMA codebooks, a lazy k-means initialization, dead-code restarts, a temperature
schedule); a damaged or foreign checkpoint is refused with one line."""

import pandas as pd
import pytest
import torch

from gumbench.benchmarks.training import train
from gumbench.benchmarks.training.checkpoint import Checkpointing, checkpoint_rows, read_checkpoint
from gumbench.benchmarks.training.images import DEBIAN_DIR
from gumbench.errors import GumbenchError
from tests.conftest import require

TIMING = ["step_seconds", "peak_memory_mb"]


class Interrupted(Exception):
    pass


def stop_at(step):
    def callback(s, model):
        if s == step:
            raise Interrupted(s)

    return callback


def assert_same_rows(resumed, full):
    columns = [c for c in full.columns if c not in TIMING]
    assert list(resumed.columns) == list(full.columns)
    pd.testing.assert_frame_equal(resumed[columns], full[columns], check_exact=True)


RUNS = [
    ("digits-vae", "st-gumbel", {}),
    ("gmm-vq", "vq-commitment[ema=true]", {}),  # EMA statistics made lazily at the first step
    ("gmm-vq", "vq-commitment[init=kmeans]", {}),  # a codebook initialized from the first batch
    ("tones", "vq-commitment[restart=true]", {}),  # dead-code restarts drawing from the run's generator
    ("tones", "gumbel-rao", {"optimizer": "radam"}),
    ("logmel-vqvae", "reinforce[baseline=loo]", {}),
    ("fashion-vae[hidden=16,eval_images=20,iw_samples=4]", "reinmax[tau=1.3]", {}),
]


@pytest.mark.parametrize(("task", "estimator", "options"), RUNS, ids=[f"{t.split('[')[0]}-{e}" for t, e, _ in RUNS])
def test_an_interrupted_run_resumes_bit_identically(tmp_path, task, estimator, options):
    if task.startswith("fashion"):
        require(DEBIAN_DIR.is_dir(), f"needs Fashion-MNIST at {DEBIAN_DIR}: apt-get install dataset-fashion-mnist")
    torch.set_num_threads(1)
    settings = dict(steps=12, seed=5, eval_every=4, eval_steps=[3], **options)
    full = train(task, estimator, **settings)
    path = tmp_path / "run.pt"
    with pytest.raises(Interrupted):  # a checkpoint after every step; stopped during step 7's callback
        train(task, estimator, callback=stop_at(7), checkpoint=Checkpointing(path, every=0), **settings)
    assert read_checkpoint(path)["step"] == 6
    with pytest.raises(Interrupted):  # resumed, and stopped again
        train(task, estimator, callback=stop_at(10), checkpoint=Checkpointing(path, every=0), **settings)
    assert read_checkpoint(path)["step"] == 9
    seen = []
    resumed = train(task, estimator, callback=lambda s, m: seen.append(s), checkpoint=Checkpointing(path, every=0),
                    **settings)
    assert seen == [10, 11, 12]  # only the steps after the checkpoint ran
    assert_same_rows(resumed, full)
    assert full["eval_code_perplexity"].notna().tolist() == [s in (3, 4, 8, 12) for s in range(1, 13)]


def test_a_run_with_checkpoints_is_the_run_without_them(tmp_path):
    full = train("digits-vae", "reinmax", steps=6, seed=1)
    checkpointed = train("digits-vae", "reinmax", steps=6, seed=1, checkpoint=Checkpointing(tmp_path / "c.pt", 0))
    assert_same_rows(checkpointed, full)


def test_the_interval_bounds_how_often_it_writes(tmp_path):
    path = tmp_path / "c.pt"
    train("digits-vae", "st-gumbel", steps=5, seed=1, checkpoint=Checkpointing(path, every=3600))
    assert not path.exists()  # an hour never passed


def test_checkpoint_rows_are_the_rows_so_far_with_the_meta(tmp_path):
    path = tmp_path / "c.pt"
    meta = {"unit_id": "abc", "repetition": 3, "seed": 1}
    with pytest.raises(Interrupted):
        train("digits-vae", "st-gumbel", steps=8, seed=1, eval_every=2, callback=stop_at(6),
              checkpoint=Checkpointing(path, every=0, meta=meta))
    rows = checkpoint_rows(path)
    full = train("digits-vae", "st-gumbel", steps=8, seed=1, eval_every=2)
    assert rows["step"].tolist() == [1, 2, 3, 4, 5]
    assert (rows["unit_id"] == "abc").all() and (rows["repetition"] == 3).all()
    columns = [c for c in full.columns if c not in TIMING]
    pd.testing.assert_frame_equal(rows[columns], full[columns].iloc[:5], check_exact=True)


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_a_damaged_checkpoint_is_refused_with_one_line(tmp_path):
    path = tmp_path / "c.pt"
    with pytest.raises(Interrupted):
        train("digits-vae", "st-gumbel", steps=4, seed=1, callback=stop_at(3), checkpoint=Checkpointing(path, 0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GumbenchError) as exc:
        train("digits-vae", "st-gumbel", steps=4, seed=1, checkpoint=Checkpointing(path, 0))
    assert one_line(exc).startswith(f"checkpoint {path} does not read back")
    path.write_text("not a checkpoint")
    with pytest.raises(GumbenchError) as exc:
        train("digits-vae", "st-gumbel", steps=4, seed=1, checkpoint=Checkpointing(path, 0))
    assert "delete it to train this run from the start" in one_line(exc)
    torch.save({"weights": torch.zeros(2)}, path)  # a torch file, not ours
    with pytest.raises(GumbenchError) as exc:
        train("digits-vae", "st-gumbel", steps=4, seed=1, checkpoint=Checkpointing(path, 0))
    assert one_line(exc) == f"{path} is not a gumbench training checkpoint; delete it to train this run from the start"


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    with pytest.raises(Interrupted):
        train("digits-vae", "st-gumbel", steps=4, seed=1, callback=stop_at(3), checkpoint=Checkpointing(path, 0))
    with pytest.raises(GumbenchError) as exc:
        train("digits-vae", "st-gumbel", steps=4, seed=2, lr=1e-3, checkpoint=Checkpointing(path, 0))
    assert one_line(exc) == (f"checkpoint {path} is of another run (its lr, seed differ); delete it to train this run "
                             "from the start")


@pytest.mark.parametrize("every", [-1, float("nan"), "3", True])
def test_a_bad_interval_is_refused(tmp_path, every):
    with pytest.raises(GumbenchError, match="checkpoint interval must be a number of seconds >= 0"):
        Checkpointing(tmp_path / "c.pt", every)
