"""The CLI as a user runs it: the installed entry point in a subprocess."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

CODE = "import sys; from gumbench.cli import main; sys.exit(main(sys.argv[1:]))"


def run_main(*args):
    """The console script's main() in this process; returns (exit code, stdout, stderr)."""
    import contextlib
    import io

    from gumbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "250"  # rich wraps tables at 80 columns when not on a terminal
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return code, out.getvalue(), err.getvalue()


def gumbench(*args, timeout=300, columns=200, env=()):
    """The CLI in a subprocess, stdout piped (not a terminal: $COLUMNS sets the width)."""
    return subprocess.run([sys.executable, "-c", CODE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": str(columns), **dict(env)})


def assert_readable(text, width, labels, headers):
    """Nothing cut short, no line wider than ``width``, each row label whole (a table cell or a line of its own), each
    header a whole word."""
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width, text
    cells = {cell.strip() for line in text.splitlines() for cell in re.split("[│┃]", line)}
    for label in labels:
        assert label in cells, (label, text)
    for header in headers:
        assert re.search(rf"(?<!\w){re.escape(header)}(?!\w)", text), (header, text)


def test_help_is_fast_and_imports_no_torch():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from gumbench.cli import main; main(['--help']); print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0
    assert out.stdout.strip().endswith("False"), "gumbench --help must not import torch"
    for command in ("list", "gradstats", "optimize"):
        assert command in out.stdout
    start = time.perf_counter()
    assert gumbench("--help").returncode == 0
    # generous: measured ~0.4 s here; torch alone takes ~3 s
    assert time.perf_counter() - start < 2.0


def test_version_prints_version_and_commit_without_torch(tmp_path):
    from gumbench import __version__
    from gumbench.provenance import code_hash

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(__file__)).stdout.strip()
    out = gumbench("--version")
    assert out.returncode == 0 and out.stdout == f"gumbench {__version__} (commit {commit}, code {code_hash()})\n", out
    out = gumbench("--version", env={"GIT_DIR": str(tmp_path)})  # no repository there: as outside a git checkout
    assert out.returncode == 0 and out.stdout == f"gumbench {__version__} (commit unknown, code {code_hash()})\n", out
    out = subprocess.run([sys.executable, "-c", "import sys; from gumbench.cli import main; main(['--version']); "
                          "print('torch' in sys.modules)"], capture_output=True, text=True)
    assert out.stdout.splitlines()[-1] == "False", "gumbench --version must not import torch"


@pytest.mark.parametrize("width", [*range(30, 131, 5), 200])
def test_tables_are_whole_or_vertical_at_every_width(width):
    from gumbench.tables import render

    columns = ("estimator", "bias / ||grad||", "cosine", "description")
    rows = [(f"reinforce[baseline={b}]", "0.132 [0, 0.317]", "0.949 [0.909, 0.989]", "a few words of prose " * 3)
            for b in ("none", "ema", "loo")]
    text = render("a title", columns, rows, text=["description"], width=width)
    assert_readable(text, width, [row[0] for row in rows], columns[1:])
    # the whole table exactly when it fits: borders, labels and numbers on one line, prose at its longest word
    natural = 4 * 3 + 1 + len(rows[0][0]) + len("bias / ||grad||") + len(rows[0][2]) + len("description")
    assert ("┏" in text) == (width >= natural)


def test_list_shows_names_parameters_and_descriptions():
    code, stdout, _ = run_main("list", "estimators")
    assert code == 0
    for name in (
        "st-gumbel",
        "soft-gumbel",
        "straight-through",
        "reinforce",
        "vq-commitment",
        "baseline=none (none|ema|loo)",
    ):
        assert name in stdout
    _, stdout, _ = run_main("list", "tasks")
    for name in ("categorical", "polynomial", "bernoulli", "0.45"):
        assert name in stdout


def test_gradstats_json_has_every_field():
    code, stdout, stderr = run_main(
        "gradstats",
        "--task",
        "categorical[groups=2,categories=3]",
        "-e",
        "st-gumbel[tau=0.5]",
        "-e",
        "reinforce[baseline=loo]",
        "--samples",
        "200",
        "--seed",
        "1",
        "--json",
    )
    assert code == 0, stderr
    rows = json.loads(stdout)
    assert [r["estimator"] for r in rows] == ["st-gumbel[tau=0.5]", "reinforce[baseline=loo,samples=4,decay=0.9]"]
    for key in (
        "exact_gradient",
        "mean_gradient",
        "bias",
        "relative_bias",
        "total_variance",
        "coordinate_variance",
        "mse",
        "cosine",
        "snr",
    ):
        assert key in rows[0]
    for key in ("value", "low", "high"):
        assert rows[0]["bias"][key] >= 0
    assert len(rows[0]["exact_gradient"]) == 2 and len(rows[0]["exact_gradient"][0]) == 3


def test_gradstats_table_default_runs_every_estimator(tmp_path):
    target = tmp_path / "stats.json"
    out = gumbench("gradstats", "--samples", "100", "-o", str(target))
    assert out.returncode == 0, out.stderr
    for label in ("st-gumbel", "soft-gumbel", "straight-through", "reinforce[baseline=loo]", "reinforce[baseline=ema]"):
        assert label in out.stdout
    from gumbench.benchmarks.gradstats import default_estimators

    assert len(json.loads(target.read_text())) == len(default_estimators())


def test_gradstats_at_80_columns_keeps_labels_whole():
    baselines = [a for b in ("none", "ema", "loo") for a in ("-e", f"reinforce[baseline={b}]")]
    out = gumbench("gradstats", *baselines, "--samples", "100", columns=80)
    assert out.returncode == 0, out.stderr
    # baseline=none is the default, so its label is plain "reinforce"
    headers = ("bias / ||grad||", "total variance", "MSE", "cosine", "SNR")
    assert_readable(out.stdout, 80, ["reinforce", "reinforce[baseline=ema]", "reinforce[baseline=loo]"], headers)
    wide = gumbench("gradstats", *baselines, "--samples", "100", columns=200).stdout
    assert_readable(wide, 200, ["reinforce", "reinforce[baseline=ema]", "reinforce[baseline=loo]"], headers)
    assert any(all(h in line for h in ("estimator", *headers)) for line in wide.splitlines()), (
        "a wide terminal gets the table"
    )


def test_train_at_80_columns_keeps_labels_and_headers_whole():
    out = gumbench("train", "--steps", "2", columns=80)
    assert out.returncode == 0, out.stderr
    headers = (
        "loss",
        "code_perplexity",
        "used_fraction",
        "dead_codes",
        "eval_code_perplexity",
        "eval_purity",
        "eval_nmi",
        "eval_collapse",
        "total seconds",
    )
    assert_readable(out.stdout, 80, ["st-gumbel", "vq-commitment"], headers)


def test_optimize_writes_a_per_step_csv(tmp_path):
    import pandas as pd

    target = tmp_path / "opt.csv"
    code, _, stderr = run_main(
        "optimize", "-t", "bernoulli", "-e", "reinforce[baseline=loo]", "--steps", "20", "-o", str(target)
    )
    assert code == 0, stderr
    frame = pd.read_csv(target)
    assert list(frame["step"]) == list(range(21))
    assert {"expected_loss", "sampled_loss", "estimator", "task"} <= set(frame.columns)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("gradstats", "-e", "bogus"), "unknown estimator 'bogus'; available: "),
        (("gradstats", "-t", "bogus"), "unknown task 'bogus'; available: bernoulli, categorical, polynomial"),
        (("gradstats", "-e", "st-gumbel[tau=0]"), "tau must be a finite number in [0.01, 100]"),
        (("gradstats", "-e", "reinforce", "--tau", "2"), "has no temperature"),
        (("gradstats", "--samples", "many"), "--samples"),
        (("gradstats", "--samples", "2"), "samples must be in [4, 100000000]"),
        (("gradstats", "-t", "categorical[groups=9,categories=8]"), "at most 65536"),
        (("gradstats", "-e", "vq-commitment"), "VQ estimator"),
        (("list", "things"), "allowed: estimators, tasks, training"),
        (("optimize", "--steps", "0"), "optimize: steps must be in [1, 1000000]"),
        (("frobnicate",), "No such command"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args, fragment):
    code, stdout, stderr = run_main(*args)
    assert code == 2
    assert fragment in stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stdout == ""


def test_bad_input_through_the_real_process():
    out = gumbench("gradstats", "-e", "st-gumbel[tau=abc]")
    assert out.returncode == 2
    assert out.stderr.strip() == "gumbench: error: st-gumbel: tau must be a number, got 'abc'"


def test_elbo_study_writes_its_table_and_rows(tmp_path):
    code, stdout, stderr = run_main(
        "elbo-study",
        "-e",
        "reinforce[baseline=loo]",
        "--checkpoints",
        "0",
        "--points",
        "2",
        "--samples",
        "400",
        "--instances",
        "2",
        "-o",
        str(tmp_path / "elbo"),
    )
    assert code == 0, stderr
    import pandas as pd

    rows = pd.read_csv(tmp_path / "elbo.csv")
    assert len(rows) == 4 and set(rows["step"]) == {0} and (rows["samples"] == 400).all()
    assert list(rows["instance"]) == [0, 0, 1, 1] and list(rows["image"]) == [0, 1, 2, 3]
    assert (tmp_path / "elbo.txt").read_text().strip() == stdout.strip()
    assert stdout.startswith("Over 2 instances (independently seeded models, 2 evaluation images each")
    assert json.loads((tmp_path / "elbo.json").read_text())["settings"]["instances"] == 2


def test_speech_study_writes_rows_text_and_settings(tmp_path):
    code, stdout, stderr = run_main(
        "speech-study",
        "--task",
        "logmel-vqvae[batch=4]",
        "-e",
        "st-gumbel",
        "--checkpoints",
        "0",
        "--crops",
        "1",
        "--samples",
        "200",
        "--instances",
        "2",
        "-o",
        str(tmp_path / "study"),
    )
    assert code == 0, stderr
    import pandas as pd

    rows = pd.read_csv(tmp_path / "study.csv")
    assert list(rows["role"]) == ["reference", "estimator"] * 2 and rows["reference_error"].iloc[0] == 0  # exact
    assert list(rows["instance"]) == [0, 0, 1, 1] and list(rows["seed"]) == [0, 0, 1, 1]
    settings = json.loads((tmp_path / "study.json").read_text())
    assert settings["settings"]["task"] == "logmel-vqvae[batch=4]" and settings["wall_seconds"] > 0
    assert settings["torch_threads"] == int(os.environ.get("GUMBENCH_THREADS", 1))  # the thread policy's count
    assert "logmel-vqvae[batch=4] at step 0, over 2 instances" in stdout


@pytest.mark.parametrize("args, fragment", [
    (("elbo-study", "--checkpoints", "0,x"), "--checkpoints takes steps separated by commas"),
    (("elbo-study", "--checkpoints", "-5"), "--checkpoints takes at most 20 distinct steps from 0 to 100,000"),
    (("speech-study", "--task", "tones"), "has no quantizer problem"),
    (("audit-kernel",), "nothing to do"),
    (("report", "runs", "--kernel", "missing.csv"), "kernel profile 'missing.csv' does not exist"),
])
def test_study_and_kernel_commands_refuse_bad_input_in_one_line(args, fragment):
    code, stdout, stderr = run_main(*args)
    assert code == 2 and fragment in stderr and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_sweep_ends_with_the_verdict_and_writes_only_under_out(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('name = "v"\nrepetitions = 2\n[gradstats]\ntasks = ["bernoulli"]\n'
                      'estimators = ["st-gumbel", "reinforce[baseline=loo]"]\nsamples = 200\n')
    out = gumbench("sweep", str(config), "--out", str(tmp_path / "runs"), "--no-report", columns=80)
    assert out.returncode == 0, out.stderr
    text = out.stdout[out.stdout.index("verdict (lower is better)"):]
    assert "gradient on bernoulli" in text and "MSE / ‖grad‖²" in text
    assert re.search(r"best\s+(st-gumbel|reinforce\[baseline=loo,samples=4\]) [\d.e-]+ \[", text)
    assert max(map(len, text.splitlines())) <= 80
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "runs"]


def test_an_internal_error_is_one_line_with_a_hint_and_debug_shows_the_traceback(monkeypatch, capsys):
    from gumbench.cli import main

    def broken(kind):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("gumbench.catalog.describe", broken)
    assert main(["list", "estimators"]) == 1
    err = capsys.readouterr().err
    assert err == "gumbench: internal error: RuntimeError: boom second line (rerun with --debug for the traceback)\n"
    assert main(["list", "estimators", "--debug"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "RuntimeError: boom" in err
    assert err.splitlines()[-1].startswith("gumbench: internal error: RuntimeError: boom")
    assert main(["--debug", "list", "bogus"]) == 2, "--debug keeps the exit status of bad input"
    err = capsys.readouterr().err
    assert (
        "Traceback" in err
        and err.splitlines()[-1] == "gumbench: error: cannot list 'bogus'; allowed: estimators, tasks, training"
    )


def test_train_sizes_the_bottleneck_from_an_implicit_quantizer():
    code, stdout, stderr = run_main("train", "-t", "gmm-vq[batch=32,hidden=16]", "-e", "fsq",
                                    "-e", "residual-vq[quantizer=fsq]", "--steps", "2", "--eval-every", "2")
    assert code == 0, stderr
    assert "fsq sized the bottleneck from its code space: gmm-vq[" in stdout and "codes=1000," in stdout
    assert "residual-vq[quantizer=fsq] sized the bottleneck from its code space:" in stdout and "codes=4000," in stdout


def test_train_refuses_explicit_sizes_an_implicit_quantizer_does_not_fit_in_one_line():
    code, stdout, stderr = run_main("train", "-t", "gmm-vq[code_dim=8]", "-e", "fsq", "--steps", "2")
    assert code == 2 and stdout == ""
    assert stderr.strip() == ("gumbench: error: gmm-vq[code_dim=8]: fsq quantizes to implicit codes that code_dim=8 "
                              "do not fit; use gmm-vq[code_dim=4,codes=1000] (1000 codes of dimension 4), or leave "
                              "code_dim out to size the bottleneck from the quantizer")
