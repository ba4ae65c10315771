"""Reports: drawn from stored results only, and the HTML's figures really load in a browser."""

import re
import shutil
import subprocess

import pytest

from gumbench.benchmarks.sweep.report import build_report
from gumbench.benchmarks.sweep import run_sweep
from gumbench.errors import GumbenchError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = {"name": "report", "repetitions": 2,
              "gradstats": {"tasks": ["bernoulli"], "estimators": ["st-gumbel[tau=[0.5,1]]", "reinforce[baseline=[none,loo]]"], "samples": 300},
              "training": {"tasks": ["gmm-vq"], "estimators": ["st-gumbel", "vq-commitment"], "steps": 30, "eval_every": 10}}
    return run_sweep(config, out=tmp_path_factory.mktemp("runs"), progress=False)


@pytest.fixture(scope="module")
def report(run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    return folder, *build_report(run, folder)


def test_report_files_tables_and_figures(report):
    tmp_path, html_path, md_path = report
    md = md_path.read_text()
    assert "ranked by MSE" in md and "ranked by final evaluation loss" in md
    for name in ("relative-bias", "total-variance", "cosine", "bias-variance-map", "training-loss", "training-code-perplexity"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 5000
        assert f"figures/{name}.png" in md
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") >= 6
    assert "src='figures/" not in page, "the HTML must be self-contained"


def test_report_rejects_what_is_not_results(tmp_path):
    (tmp_path / "x.txt").write_text("no")
    with pytest.raises(GumbenchError, match="not a results file"):
        build_report(tmp_path / "missing", tmp_path / "out")


def test_figures_load_in_headless_chromium(report, tmp_path):
    assert CHROMIUM, "Chromium is needed for this test: apt-get install chromium (.ci/run installs it)"
    html_path = report[1]
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", html_path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    figures = re.search(r'data-figures="(\d+)"', out.stdout)
    loaded = re.search(r'data-loaded="(\d+)"', out.stdout)
    assert figures and loaded, out.stderr[-2000:]
    assert int(figures.group(1)) >= 6
    assert loaded.group(1) == figures.group(1), "some figures did not decode in the browser"


def test_kernel_profile_is_drawn_when_given(run, tmp_path):
    import pandas as pd

    rows = [{"kernel": "gumbel_softmax", "provider": p, "mode": m, "metric": metric, "x": x, "value": v * x, "q20": v * x, "q80": v * x,
             "device": "synthetic"}
            for p, v in (("eager", 1.0), ("fused_recompute", 3.0)) for m in ("forward", "full")
            for x in (1024, 4096) for metric in ("ms", "GB/s")]
    csv = tmp_path / "profile.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    _, md_path = build_report(run, tmp_path / "out", kernel_csv=csv)
    assert "figures/kernel-profile.png" in md_path.read_text()
    assert (tmp_path / "out" / "figures" / "kernel-profile.png").stat().st_size > 5000
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(GumbenchError, match="not a kernel profile"):
        build_report(run, tmp_path / "out2", kernel_csv=bad)
