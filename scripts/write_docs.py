"""Write the numbers README.md and docs/*.md quote from the committed results:

    python scripts/write_docs.py           # rewrite every generated block of every page
    python scripts/write_docs.py --check   # exit 1, listing the blocks that differ from the results

A generated block is the text between the lines

    <!-- generated: NAME (python scripts/write_docs.py) -->
    <!-- end: NAME -->

and equals BLOCKS[NAME](root): Markdown computed from the files under results/ (and the shipped
speech corpus). tests/test_docs.py fails when a block differs from what its generator gives now.
A template's qualitative words are checked by ``claim``: when a result no longer supports them,
the generator stops, and the sentence is rewritten by hand instead of misquoted.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Callable

import typer

from docgen.common import BLOCK, END, MARKER, ROOT, START
from docgen.fashion import (
    fashion_agreement,
    fashion_gradients,
    fashion_sweep_study,
    fashion_tuned_agreement,
    fashion_tuned_study,
)
from docgen.newer import newer_findings
from docgen.paper import fashion_paper
from docgen.quantizers import headline_vq, quantizer_findings, vq_gradient_findings
from docgen.runs import kernel_bytes, kernel_rao_cost, kernel_sass, sweep_timing, sweep_verdict, throughput
from docgen.speech import (
    explain_step,
    headline_speech,
    speech_collapse,
    speech_corpus,
    speech_fairseq_values,
    speech_finding,
    speech_reference_error,
    speech_study_table,
    speech_training_table,
    vq_wav2vec_training,
)
from docgen.toys import (
    disarm_binary_toys,
    elbo_study,
    fashion_study,
    fashion_throughput,
    gradstats_beyond_card_table,
    gradstats_default_finding,
    gradstats_default_table,
    headline_toy,
    optimize_polynomial,
)
from gumbench.files import write_text

BLOCKS: dict[str, Callable[[Path], str]] = {
    "sweep-timing": sweep_timing,
    "quantizer-findings": quantizer_findings,
    "vq-gradient-findings": vq_gradient_findings,
    "newer-findings": newer_findings,
    "headline-vq": headline_vq,
    "throughput": throughput,
    "sweep-verdict": sweep_verdict,
    "headline-toy": headline_toy,
    "headline-speech": headline_speech,
    "gradstats-default-table": gradstats_default_table,
    "gradstats-default-finding": gradstats_default_finding,
    "gradstats-beyond-card-table": gradstats_beyond_card_table,
    "disarm-binary-toys": disarm_binary_toys,
    "optimize-polynomial": optimize_polynomial,
    "elbo-study": elbo_study,
    "fashion-throughput": fashion_throughput,
    "fashion-study": fashion_study,
    "fashion-sweep-study": fashion_sweep_study,
    "fashion-tuned-study": fashion_tuned_study,
    "fashion-gradients": fashion_gradients,
    "fashion-agreement": fashion_agreement,
    "fashion-tuned-agreement": fashion_tuned_agreement,
    "fashion-paper": fashion_paper,
    "speech-corpus": speech_corpus,
    "speech-fairseq-values": speech_fairseq_values,
    "speech-training-table": speech_training_table,
    "speech-collapse": speech_collapse,
    "speech-reference-error": speech_reference_error,
    "speech-study-table": speech_study_table,
    "speech-finding": speech_finding,
    "explain-step": explain_step,
    "vq-wav2vec-training": vq_wav2vec_training,
    "kernel-rao-cost": kernel_rao_cost,
    "kernel-bytes": kernel_bytes,
    "kernel-sass": kernel_sass,
}


# --- pages ---------------------------------------------------------------------------------------

def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def blocks(text: str) -> list[tuple[str, str]]:
    """(name, text) of each generated block of a page, its text without the final newline."""
    return [(m[1], m[2].removesuffix("\n")) for m in BLOCK.finditer(text)]


@functools.lru_cache(maxsize=None)
def generated(name: str, root: Path = ROOT) -> str:
    return BLOCKS[name](root)


def render(text: str, root: Path = ROOT) -> str:
    """The page with every generated block rewritten from the results."""
    def block(m):  # an unknown name is left as it is, for ``stale`` to report
        return "\n".join([START.format(m[1]), generated(m[1], root), END.format(m[1])]) if m[1] in BLOCKS else m[0]

    return BLOCK.sub(block, text)


def stale(page: Path, root: Path = ROOT, text: str | None = None) -> list[str]:
    """One line per block of the page whose text differs from its generator's, naming the first differing line."""
    text = page.read_text() if text is None else text
    found = blocks(text)
    out = (
        [] if len(MARKER.findall(text)) == 2 * len(found) else [f"{page.name}: a generated/end marker without its pair"]
    )
    for name, content in found:
        if name not in BLOCKS:
            out.append(f"{page.name}: {name}: no such block in scripts/write_docs.py")
        elif content != (expected := generated(name, root)):
            line, (old, new) = next((i, pair) for i, pair in enumerate(itertools.zip_longest(
                content.splitlines(), expected.splitlines(), fillvalue="<none>"), 1) if pair[0] != pair[1])
            out.append(f"{page.name}: {name}: line {line} reads {old!r}, the results give {new!r}")
    return out


def main(
    check: bool = typer.Option(False, "--check", help="Change nothing; exit 1 listing the blocks that differ."),
) -> None:
    for page in pages():
        text = page.read_text()
        if not check and render(text) != text:
            write_text(page, render(text))
            typer.echo(f"wrote {page.relative_to(ROOT)}")
    problems = [line for page in pages() for line in stale(page)]
    for line in problems:
        typer.echo(line, err=True)
    raise typer.Exit(1 if problems else 0)


if __name__ == "__main__":
    typer.run(main)
