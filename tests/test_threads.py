"""The thread policy: --threads, else $GUMBENCH_THREADS, else 1 per process (per worker in sweeps);
a sweep's results say which count ran each unit."""

import json

import pandas as pd
import pytest
import torch

from gumbench.benchmarks.sweep import run_sweep
from gumbench.benchmarks.sweep.store import read_metadata
from gumbench.errors import GumbenchError
from gumbench.threads import ENV, torch_threads, use_threads
from tests.benchmarks.sweep.sweeps import small_config
from tests.test_cli import run_main


@pytest.fixture(autouse=True)
def keep_torch_threads(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_option_then_environment_then_one(monkeypatch):
    assert torch_threads() == 1
    monkeypatch.setenv(ENV, " 3 ")
    assert torch_threads() == 3 and torch_threads(2) == 2
    assert use_threads() == 3 and torch.get_num_threads() == 3


@pytest.mark.parametrize("value", [0, -1, 10**9, "x", 2.0, True])
def test_bad_counts_are_refused(value, monkeypatch):
    with pytest.raises(GumbenchError, match=r"^threads must be an integer from 1 to 1024, got "):
        torch_threads(value)
    monkeypatch.setenv(ENV, str(value))
    with pytest.raises(GumbenchError, match=rf"^{ENV} must be an integer from 1 to 1024, got "):
        torch_threads()


def threads_of(run) -> tuple[int, set[int]]:
    """(the run metadata's thread count, the counts the rows say their units ran with)."""
    return read_metadata(run.results)["torch_threads"], set(pd.read_parquet(run.results)["torch_threads"])


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_sweep_records_one_thread_per_worker_by_default(jobs, tmp_path):
    torch.set_num_threads(2)  # what a worker would not inherit; in this process the policy resets it
    run = run_sweep(small_config(samples=100), out=tmp_path, jobs=jobs, progress=False)
    assert threads_of(run) == (1, {1})
    timing = json.loads(next((run.folder / "timings").glob("*.json")).read_text())
    assert (timing["jobs"], timing["torch_threads"]) == (jobs, 1)


def test_a_sweep_with_two_threads_in_workers_records_them(tmp_path):
    run = run_sweep(small_config(samples=100), out=tmp_path, jobs=2, threads=2, progress=False)
    assert threads_of(run) == (2, {2})  # the rows' count is torch's own, read in the workers


def test_the_cli_takes_threads_from_the_option_or_the_environment(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text(
        'name = "th"\nrepetitions = 1\n[gradstats]\ntasks = ["bernoulli"]\nestimators = ["st-gumbel"]\nsamples = 50\n'
    )

    def sweep(out, *extra):
        code, _, stderr = run_main("sweep", str(config), "--out", str(tmp_path / out), "--no-report", *extra)
        assert code == 0, stderr
        return next((tmp_path / out).glob("*/results.parquet"))

    monkeypatch.setenv(ENV, "2")
    assert read_metadata(sweep("env"))["torch_threads"] == 2
    assert set(pd.read_parquet(sweep("option", "--threads", "3"))["torch_threads"]) == {3}  # the option wins
    code, _, _ = run_main("gradstats", "-t", "bernoulli", "-e", "st-gumbel", "-s", "10", "--threads", "2")
    assert code == 0 and torch.get_num_threads() == 2


@pytest.mark.parametrize("argv, message", [
    (["--threads", "0"], "threads must be an integer from 1 to 1024, got 0"),
    (["--threads", "x"], "Invalid value for '--threads'"),
    ([], f"{ENV} must be an integer from 1 to 1024, got 'many'"),
])
def test_the_cli_names_a_bad_count_before_any_work(argv, message, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "many")
    code, stdout, stderr = run_main("gradstats", "-s", "10", "-o", str(tmp_path / "out.json"), *argv)
    assert code == 2 and stderr.startswith("gumbench: error: ") and message in stderr and stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_the_report_names_the_counts_and_reads_results_without_them():
    from gumbench.benchmarks.sweep.report import _threads

    assert _threads(pd.DataFrame({"torch_threads": [2, 1, 2]})) == "torch threads 1/2, "
    assert _threads(pd.DataFrame({"torch_threads": [None, 1.0]})) == "torch threads 1, "  # with older rows
    assert _threads(pd.DataFrame({"unit_id": ["u"]})) == ""  # like the committed reference run
