"""Reports: drawn from stored results only, the verdict first, degenerate results never ranked
above healthy ones, and the HTML read as a person sees it, in headless Chromium at 1280 x 800."""

import html
import json
import re
import subprocess
from pathlib import Path

import pytest

from gumbench.benchmarks.sweep import run_sweep
from gumbench.benchmarks.sweep.report import build_report, markdown_cell, markdown_table
from gumbench.benchmarks.sweep.verdict import compare, outcomes
from gumbench.errors import GumbenchError
from tests.conftest import require_program

ROOT = Path(__file__).resolve().parents[3]
FIGURES = ("bias-variance", "relative-bias", "total-variance", "training-loss", "training-eval-code-perplexity")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = {
        "name": "report",
        "repetitions": 3,
        "gradstats": {
            "tasks": ["bernoulli", "categorical[groups=2,categories=3]"],
            "estimators": ["st-gumbel[tau=[0.5,1]]", "gst[tau=0.1]", "reinforce[baseline=[none,loo]]"],
            "samples": 300,
        },
        "training": {"tasks": ["gmm-vq"], "estimators": ["st-gumbel", "vq-commitment"], "steps": 30, "eval_every": 10},
    }
    return run_sweep(config, out=tmp_path_factory.mktemp("runs"), progress=False)


@pytest.fixture(scope="module")
def report(run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    return folder, *build_report(run, folder)


def test_report_opens_with_the_verdict_then_figures_then_tables(report):
    folder, html_path, md_path = report
    md = md_path.read_text()
    assert md.index("## Verdict") < md.index("## Figures") < md.index("## Gradient statistics: every estimator")
    verdict = md[md.index("## Verdict"):md.index("## Figures")]
    for question in ("gradient on bernoulli |", "gradient on categorical[groups=2,categories=3] |",
                     "training on gmm-vq @ 5 bits/frame |"):  # a training question is a task at its bits per frame
        assert f"| {question}" in verdict
    for name in FIGURES:
        assert (folder / "figures" / f"{name}.png").stat().st_size > 5000
        assert f"figures/{name}.png" in md
    page = html_path.read_text()
    assert page.index("id='verdict'") < page.index("<figure") < page.index("<details>")
    assert page.count("data:image/png;base64,") == len(FIGURES)
    assert page.count("<figcaption>") == len(FIGURES)
    assert all(
        re.search(r"is better|higher\s+means", caption)
        for caption in re.findall(r"<figcaption>(.*?)</figcaption>", page)
    )
    assert "src='figures/" not in page, "the HTML must be self-contained"
    assert ", torch threads 1, base seed 0, " in md, "the provenance names the thread count the units ran with"


def test_a_degenerate_result_never_ranks_above_a_healthy_one(run):
    compared = compare(outcomes(run.frame()))
    for _, group in compared.groupby(["kind", "task"]):
        flags = group.sort_values("rank")["standing"].eq("degenerate").tolist()
        assert flags == sorted(flags), "degenerate rows come after every healthy one"
    gst = compared[(compared["task"] == "bernoulli") & (compared["label"] == "gst[tau=0.1]")].iloc[0]
    assert gst["warning"] == "shrinks the gradient" and gst["standing"] == "degenerate"


def test_markdown_cells_are_escaped():
    assert markdown_cell("a|b\\c\nd") == "a\\|b\\\\c<br>d"
    table = markdown_table(["x|y", "z"], [["1|2", "3"]])
    assert table.splitlines()[0] == "| x\\|y | z |" and table.splitlines()[2] == "| 1\\|2 | 3 |"


def test_report_rejects_what_is_not_results(tmp_path):
    with pytest.raises(GumbenchError, match="not a results file"):
        build_report(tmp_path / "missing", tmp_path / "out")


PROBE = """<script>window.addEventListener('load', () => {
  const images = [...document.images], verdict = document.getElementById('verdict').getBoundingClientRect();
  const recommend = document.getElementById('recommend');
  const lineHeight = el => parseFloat(getComputedStyle(el).lineHeight);
  // rendered text lines of the recommendations: per row, its tallest cell over that cell's line height
  const lines = recommend ? [...recommend.rows].slice(1).map(row => Math.max(...[...row.cells].map(
    c => Math.round((c.clientHeight - parseFloat(getComputedStyle(c).paddingTop)
                     - parseFloat(getComputedStyle(c).paddingBottom)) / lineHeight(c))))) : [];
  const cells = [...document.querySelectorAll('#verdict td, #recommend td')];
  document.body.dataset.probe = JSON.stringify({
    viewport: [innerWidth, innerHeight], verdictTop: verdict.top + scrollY, verdictBottom: verdict.bottom + scrollY,
    recommendBottom: recommend ? recommend.getBoundingClientRect().bottom + scrollY : null,
    recommendLines: lines.reduce((a, b) => a + b, 0),
    hidden: cells.filter(c => c.scrollWidth > c.clientWidth + 1 || c.hasAttribute('title')).length,
    figures: images.length, decoded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    widest: Math.max(...images.map(i => i.getBoundingClientRect().width)),
    widestNatural: Math.max(...images.map(i => i.naturalWidth)),
    scrollWidth: document.documentElement.scrollWidth});
});</script>"""


def reference_run() -> Path:
    """The committed reference run of the default sweep (what the README quotes)."""
    runs = sorted((ROOT / "results" / "reference").glob("default-*/results.parquet"))
    assert len(runs) == 1, f"expected one committed reference run of the default sweep, found {runs}"
    return runs[0].parent


@pytest.mark.parametrize("which", ["small run", "reference run"])
def test_report_as_seen_in_headless_chromium_at_1280_by_800(which, report, tmp_path):
    chromium = require_program("chromium", "chromium")
    html_path = report[1] if which == "small run" else build_report(reference_run(), tmp_path / "report")[0]
    page = tmp_path / "probe.html"  # the report plus a script that measures it; the report itself carries no test code
    page.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    out = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,800",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'data-probe="([^"]*)"', out.stdout)
    assert found, out.stderr[-2000:]
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["viewport"][0] == 1280  # (headless Chromium takes its window frame off the 800 px height)
    assert probe["recommendBottom"] is not None and probe["recommendBottom"] <= 800, "recommendations on screen one"
    assert probe["recommendLines"] <= 12, "the recommendations read in at most 12 lines"
    assert probe["verdictTop"] < probe["verdictBottom"], "the per-question table follows"
    assert probe["hidden"] == 0, "every name in the tables is visible without hovering"
    figures = len(FIGURES) if which == "small run" else html_path.read_text().count("<figure id=")  # parts, split
    assert probe["figures"] == figures and probe["decoded"] == probe["figures"], "every figure decodes"
    assert probe["widest"] <= 1280, "no figure wider than the window"
    assert probe["scrollWidth"] <= 1280, "nothing scrolls sideways"


def test_kernel_profile_is_drawn_when_given(run, tmp_path):
    import pandas as pd

    rows = [
        {
            "kernel": "gumbel_softmax",
            "provider": p,
            "mode": m,
            "metric": metric,
            "x": x,
            "value": v * x,
            "q20": v * x,
            "q80": v * x,
            "device": "synthetic",
        }
        for p, v in (("eager", 1.0), ("fused_recompute", 3.0))
        for m in ("forward", "full")
        for x in (1024, 4096)
        for metric in ("ms", "GB/s")
    ]
    csv = tmp_path / "profile.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    _, md_path = build_report(run, tmp_path / "out", kernel_csv=csv)
    assert "figures/kernel-profile.png" in md_path.read_text()
    assert (tmp_path / "out" / "figures" / "kernel-profile.png").stat().st_size > 5000
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(GumbenchError, match="not a kernel profile"):
        build_report(run, tmp_path / "out2", kernel_csv=bad)


def test_no_two_texts_overlap_in_the_small_runs_figures(run):
    """The overlap check of tests/benchmarks/sweep/test_figures.py on a run of two toys and one training task (one
    part per figure, fewer panels than a row holds)."""
    import matplotlib.pyplot as plt

    from gumbench.benchmarks.sweep.figures import figure_objects, set_style
    from gumbench.benchmarks.sweep.store import load_results
    from tests.benchmarks.sweep.test_figures import overlapping_texts

    set_style()
    frame = load_results([run])
    figures = figure_objects(frame[frame["kind"] == "gradstats"], frame[frame["kind"] == "training"],
                             compare(outcomes(frame)))
    assert [name for name, _, _ in figures] == list(FIGURES)
    for name, _, fig in figures:
        assert overlapping_texts(fig) == [], name
        plt.close(fig)
