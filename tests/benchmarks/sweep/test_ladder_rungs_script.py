"""scripts/ladder_rungs.py: the rungs of a laddered run and their orderings as files, refused for another config."""

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from gumbench.benchmarks.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[3]
CONFIG = """name = "rungs"
repetitions = 2
[[training]]
tasks = ["gmm-vq"]
estimators = ["st-gumbel", "reinmax"]
ladder = [2, 4, 6]
eval_every = 6
"""


def script():
    spec = importlib.util.spec_from_file_location("ladder_rungs", ROOT / "scripts" / "ladder_rungs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_writes_the_rungs_the_orderings_and_a_note(tmp_path):
    from gumbench.benchmarks.sweep import load_config

    config = tmp_path / "rungs.toml"
    config.write_text(CONFIG)
    run = run_sweep(load_config(config), out=tmp_path / "runs", progress=False)
    script().main(str(config), str(run.folder), str(tmp_path / "out"))
    rows = pd.read_csv(tmp_path / "out" / "rungs.csv")
    orderings = pd.read_csv(tmp_path / "out" / "orderings.csv")
    note = json.loads((tmp_path / "out" / "rungs.json").read_text())
    frame = run.frame()
    expected = frame[frame["metric"] == "eval_reconstruction"].sort_values(["estimator", "repetition", "step"])
    ours = rows[rows["metric"] == "eval_reconstruction"].sort_values(["estimator", "repetition", "step"])
    assert ours["value"].tolist() == expected["value"].tolist() and set(rows["source"]) == {"finished"}
    assert orderings["rung"].tolist() == [2, 4, 6] and orderings["paired"].tolist() == [2, 2, 2]
    assert note["command"].startswith("python scripts/ladder_rungs.py") and len(note["reached"]) == 4
    other = tmp_path / "other.toml"
    other.write_text(CONFIG.replace("repetitions = 2", "repetitions = 3"))
    with pytest.raises(SystemExit, match="is not a run of"):
        script().main(str(other), str(run.folder), str(tmp_path / "out2"))
