"""Sweep configs: seeds are hashes of what a unit is, bad configs fail before anything is written, CLI flags win, the
default grid is valid."""

import pytest

from gumbench.benchmarks.sweep import apply_overrides, derive_seed, expand_units, load_config, run_sweep
from gumbench.errors import GumbenchError
from tests.benchmarks.sweep.sweeps import small_config


def test_seeds_are_hashes_not_positions():
    a, _ = expand_units(small_config())
    b, _ = expand_units(small_config(estimators=("reinforce[baseline=loo]", "st-gumbel[tau=[1,0.5]]")))
    assert {u.unit_id: u.seed for u in a} == {u.unit_id: u.seed for u in b}
    assert len({u.seed for u in a}) == len(a)
    assert derive_seed(0, "gradstats", "bernoulli", "st-gumbel[tau=1]", 0) != derive_seed(
        1, "gradstats", "bernoulli", "st-gumbel[tau=1]", 0
    )


@pytest.mark.parametrize(
    "text, suffix, fragment",
    [
        ("bogus = 1", ".toml", "unknown config key 'bogus'; valid keys: name"),
        (
            "[gradstats]\nsampels = 3",
            ".toml",
            "unknown key 'sampels' in [gradstats]; valid keys: tasks, estimators, samples",
        ),
        ("gradstats: {tasks: [bernoulli], estimators: [nope], samples: 10}", ".yaml", "unknown estimator 'nope'"),
        ("gradstats: {tasks: [bernoulli], estimators: [vq-commitment]}", ".yml", "grid is empty"),
        ("gradstats: [unclosed", ".yaml", "not valid YAML"),
        ("name = ", ".toml", "not valid TOML"),
        ("[gradstats]\nsamples = 0", ".toml", "samples must be from 4 to 100,000,000, got 0"),
        ("[gradstats]\nsamples = 3", ".toml", "samples must be from 4 to 100,000,000, got 3"),
        ("name: x", ".json", "use a .toml, .yaml or .yml file"),
        ('[training]\ntasks = ["tones"]\nestimators = ["st-gumbel[tau=[]]"]', ".toml", "empty list"),
    ],
)
def test_bad_configs_fail_before_writing(tmp_path, text, suffix, fragment):
    path = tmp_path / f"config{suffix}"
    path.write_text(text)
    with pytest.raises(GumbenchError, match=fragment.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        run_sweep(load_config(path), out=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


def test_cli_flags_override_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[gradstats]\ntasks = ["bernoulli"]\nestimators = ["st-gumbel"]\nsamples = 100\n')
    config = apply_overrides(load_config(path), samples=50, repetitions=3, estimators=["reinforce"])
    assert config["gradstats"] == {"tasks": ["bernoulli"], "estimators": ["reinforce"], "samples": 50}
    assert config["repetitions"] == 3


def test_default_sweep_grid_is_valid():
    units, _ = expand_units(load_config(None))
    kinds = {u.kind for u in units}
    assert kinds == {"gradstats", "training"}
    assert len({u.unit_id for u in units}) == len(units)


@pytest.mark.parametrize("name", ["../../x", "/abs/path", "a/b", "a\\b", "", ".hidden", "-flag", "sp ace", "é"])
def test_sweep_names_that_are_not_one_plain_folder_name_are_refused(tmp_path, name):
    with pytest.raises(GumbenchError, match="sweep name .* is not allowed: use letters, digits"):
        run_sweep(apply_overrides(small_config(), name=name), out=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["default", "my_sweep.v2", "A-1"])
def test_plain_sweep_names_are_accepted(name):
    assert apply_overrides(small_config(), name=name)["name"] == name


def test_default_sweep_measures_5_instances_of_every_gradient_question_and_3_seeds_of_every_training_run():
    units, _ = expand_units(load_config(None))
    repetitions = {}
    for u in units:
        repetitions.setdefault((u.kind, u.task, u.estimator), set()).add(u.repetition)
    for (kind, _, _), reps in repetitions.items():
        assert reps == set(range(5 if kind == "gradstats" else 3)), (kind, reps)
    plain = [u for u in units if not u.ladder]
    assert len({u.seed for u in plain}) == len(plain), "independent seeds"
    # the budget ladder's units are the same runs as the first training section's, evaluated at more steps
    seeds = {(u.task, u.estimator, u.repetition, u.budget): u.seed for u in plain}
    laddered = [u for u in units if u.ladder]
    assert laddered and all(seeds[u.task, u.estimator, u.repetition, u.ladder[0]] == u.seed for u in laddered)
