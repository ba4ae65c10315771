"""Shared by the sweep tests: a small gradstats config, rows made comparable across runs (no timing, no commit),
and the check that a bad training-section key fails with one line before anything is written."""

import pytest

TIMING = ["step_seconds", "peak_memory_mb", "seconds_per_estimate"]  # wall-clock: differs run to run


def small_config(name="t", samples=400, estimators=("st-gumbel[tau=[0.5,1]]", "reinforce[baseline=loo]")):
    return {
        "name": name,
        "repetitions": 2,
        "gradstats": {
            "tasks": ["bernoulli", "categorical[groups=2,categories=3]"],
            "estimators": list(estimators),
            "samples": samples,
        },
    }


def comparable(frame):
    drop = [c for c in ("git_commit",) if c in frame]
    frame = frame[~frame["metric"].isin(TIMING)].drop(columns=drop)
    return frame.sort_values(["unit_id", "step", "metric"]).reset_index(drop=True)


def assert_training_key_refused(tmp_path, text: str, message: str) -> None:
    """A [training] section with ``text`` (e.g. 'lr = 0') fails with exactly ``message``, one line, and writes
    nothing."""
    from gumbench.benchmarks.sweep import load_config, run_sweep
    from gumbench.errors import GumbenchError

    path = tmp_path / "c.toml"
    path.write_text(f'[training]\ntasks = ["digits-vae"]\nestimators = ["st-gumbel"]\n{text}\n')
    with pytest.raises(GumbenchError) as info:
        run_sweep(load_config(path), out=tmp_path / "runs", progress=False)
    assert str(info.value) == message and "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()
