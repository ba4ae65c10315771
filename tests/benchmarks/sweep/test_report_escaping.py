"""Names reach report.md as text: injection strings in a user's estimator parameters go through a real sweep
and its report, and the Markdown, rendered by markdown-it (CommonMark), holds no tag and no link of theirs."""

import re

import pytest
from markdown_it import MarkdownIt

from gumbench.benchmarks.sweep import run_sweep
from gumbench.benchmarks.sweep.report import build_report, markdown_text
from gumbench.estimators import registry
from gumbench.estimators.straight_through import StraightThrough

INJECTIONS = [
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "![img](javascript:alert(2))",
    "<javascript:alert(3)>",
    "<script>alert(4)</script>",
    "[x]: javascript:alert(5)",
    "\\<b>escaped</b>",
]


class NotedStraightThrough(StraightThrough):
    """straight-through with a free-text parameter: what a user's plugin may carry into names."""

    name = "noted-st"
    defaults = {**StraightThrough.defaults, "note": ""}


@pytest.fixture()
def noted(monkeypatch):
    monkeypatch.setattr(registry, "_classes", dict(registry._classes))
    registry.register(NotedStraightThrough)


def rendered_tags(markdown: str) -> tuple[set[str], list[str]]:
    """(the HTML tag names the Markdown renders to, the hrefs/srcs of its links and images)."""
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    tags = {t.lower() for t in re.findall(r"<([A-Za-z][A-Za-z0-9]*)", html)}
    links = re.findall(r"(?:href|src)=\"([^\"]*)\"", html)
    return tags, links


def test_injection_strings_in_names_render_as_text_in_report_md(tmp_path, noted):
    estimators = [f"noted-st[note={text}]" for text in INJECTIONS]
    config = {"name": "inject", "repetitions": 2,
              "gradstats": {"tasks": ["bernoulli"], "estimators": estimators + ["st-gumbel"], "samples": 20}}
    run = run_sweep(config, out=tmp_path / "runs", progress=False)
    _, md_path = build_report(run, tmp_path / "report")
    markdown = md_path.read_text()
    assert all(text.split("(")[0][:6] in markdown or markdown_text(text)[:6] in markdown for text in INJECTIONS)
    tags, links = rendered_tags(markdown)
    assert not tags & {"script", "a", "b"}, tags
    figures = sorted(f"figures/{p.name}" for p in (tmp_path / "report" / "figures").glob("*.png"))
    assert sorted(links) == figures, "the only images are the report's own figures, and there are no links"
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    for text in ("onerror=alert(1)", "javascript:alert(1)", "alert(4)"):
        assert text in html, "the names are still there, as text"


def test_plain_names_are_unchanged_by_escaping():
    for text in ("st-gumbel[tau=0.5]", "gradient on polynomial[p=1.5]", "MSE / ‖grad‖² >= 1", "5 degenerate (shrinks)"):
        assert markdown_text(text) == text
    tags, links = rendered_tags(markdown_text("[a](javascript:x) <img src=y onerror=z>"))
    assert not tags - {"p"} and not links
