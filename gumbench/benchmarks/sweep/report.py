"""Reports from stored results only: a self-contained HTML page (figures embedded) and Markdown,
written to be read top-down in a minute.

1. The verdict (:mod:`gumbench.benchmarks.sweep.verdict`): per question the sweep answers, the
   best estimators with intervals across seeds, ties grouped, degenerate results named.
2. Figures (:mod:`gumbench.benchmarks.sweep.figures`), each captioned with what "better" means, at most
   1,300 px wide so they read at 100%:
   * per task, relative bias against total variance, with the Pareto front marked;
   * relative bias and total variance against the temperature, per task that varies one estimator's;
   * training loss and evaluation code perplexity per step;
   every point with its 95% t interval over instances or seeds, parts of at most six panels, legends beside;
   * the kernel profile, when a CSV from ``gumbench profile-kernel`` is given.
   Estimators are coloured by family (one hue each) with a shade per variant, the same in
   every figure.
3. Every estimator's full comparison, collapsed.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from gumbench.benchmarks.sweep.figures import draw_figures, set_style
from gumbench.benchmarks.sweep.store import load_results
from gumbench.benchmarks.sweep.verdict import compare, interval_text, outcomes, short_task, verdict
from gumbench.errors import GumbenchError
from gumbench.files import write_bytes, write_text

# --- kernel profile --------------------------------------------------------------------------

def read_kernel_profile(path: str | Path):
    """The rows of a kernel profile CSV (``gumbench profile-kernel``), checked: a one-line error for a
    file that is missing, not CSV text, empty, or without the profile's columns."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise GumbenchError(f"kernel profile {str(path)!r} does not exist")
    try:
        frame = pd.read_csv(path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise GumbenchError(f"{path} is not a kernel profile: not CSV text ({str(exc).splitlines()[0][:80]})") from None
    needed = {"provider", "metric", "x"}
    value = "median" if "median" in frame.columns else "value"
    if not needed | {value} <= set(frame.columns) or frame.empty:
        raise GumbenchError(
            f"{path} is not a kernel profile (needs rows and columns {', '.join(sorted(needed | {value}))})"
        )
    if not (pd.api.types.is_numeric_dtype(frame["x"]) and pd.api.types.is_numeric_dtype(frame[value])):
        raise GumbenchError(f"{path} is not a kernel profile: columns x and {value} must be numbers")
    return frame




# --- tables ----------------------------------------------------------------------------------

def full_tables(frame, compared):
    """(heading, DataFrame of strings) per kind: every estimator of every question, in rank order."""
    tables = []
    for kind, heading, extra in (("gradstats", "Gradient statistics: every estimator per toy",
                                  ("relative_bias", "total_variance", "cosine")),
                                 ("training", "Training: every estimator per task",
                                  ("eval_code_perplexity", "eval_used_fraction", "eval_nmi", "dead_codes", "collapse",
                                   "effective_bits", "code_bits", "joint_bits", "joint_max_bits"))):
        rows = compared[compared["kind"] == kind] if not compared.empty else compared
        if rows.empty:
            continue
        units = frame[frame["kind"] == kind]
        last = units[units["step"] == units.groupby("unit_id")["step"].transform("max")]
        extras = last[last["metric"].isin(extra)].assign(
            task=lambda f: f["task"].map({t: short_task(kind, t) for t in f["task"].unique()}))
        extras = extras.pivot_table(index=["task", "label"], columns="metric", values="value", aggfunc="mean")
        table = rows.join(extras, on=["task", "label"])
        table["value"] = [interval_text(m, lo, hi) for m, lo, hi in zip(table["mean"], table["low"], table["high"])]
        columns = ["task", "rank", "label", "standing", "measure", "value", "n", "warning"] + [
            c for c in extra if c in table
        ]
        out = table[columns].rename(columns={"n": "seeds"})
        for c in extra:
            if c in out:
                out[c] = out[c].map(lambda v: "" if v != v else f"{v:.3g}")
        tables.append((heading, out.astype(str)))
    return tables


# --- pages -----------------------------------------------------------------------------------

def build_report(
    results, out_dir: str | Path, *, kernel_csv: str | Path | None = None, title: str = "gumbench report"
) -> tuple[Path, Path]:
    """Write ``report.html`` (figures embedded) and ``report.md`` (+ figures/*.png) to ``out_dir``.

    ``results``: a run (see :func:`gumbench.benchmarks.sweep.run_sweep`), a results file or run
    folder, or a list of them. ``kernel_csv``: a kernel profile to draw (``gumbench profile-kernel``).
    """
    set_style()
    kernel = None if kernel_csv is None else (read_kernel_profile(kernel_csv), Path(kernel_csv).name)
    frame = load_results(results if isinstance(results, (list, tuple)) else [results])
    out_dir = Path(out_dir)
    compared = compare(outcomes(frame))
    answers = verdict(compared) if not compared.empty else None
    figures = draw_figures(frame[frame["kind"] == "gradstats"], frame[frame["kind"] == "training"], compared, kernel)
    for name, _, data in figures:
        write_bytes(out_dir / "figures" / f"{name}.png", data)
    tables = full_tables(frame, compared)
    meta = frame.iloc[0]
    provenance = (
        f"gumbench {meta['gumbench_version']}, commit {str(meta['git_commit'])[:10]}, "
        f"code {meta.get('code_hash', '?')}, "
        f"torch {meta['torch_version']}, device {meta['device']}, {_threads(frame)}base seed {meta['base_seed']}, "
        f"{frame['unit_id'].nunique()} units"
    )
    html_path = write_text(out_dir / "report.html", html_page(title, provenance, answers, figures, tables))
    md_path = write_text(out_dir / "report.md", markdown_page(title, provenance, answers, figures, tables))
    return html_path, md_path


def _threads(frame) -> str:
    """'torch threads 1, ' (the counts the units used, as 1/2 when mixed), or nothing for results that predate the
    column."""
    counts = sorted(frame["torch_threads"].dropna().astype(int).unique()) if "torch_threads" in frame else []
    return f"torch threads {'/'.join(map(str, counts))}, " if counts else ""


VERDICT_NOTE = (
    "Best: the healthy estimator with the lowest mean (95% t interval across seeds in brackets); tied with it: "
    "those whose Welch 95% interval of the difference reaches 0. Warnings name degenerate results "
    "(shrinks or misses the gradient, collapsed, diverged) that would otherwise rank first; "
    "they rank after every healthy one. "
    "In the HTML page each question is one line (hover a cell, or open the verdict in full below, for every name)."
)


def question(row) -> str:
    """A verdict row's question: 'gradient on TOY' or 'training on TASK'."""
    return f"{'gradient on' if row['kind'] == 'gradstats' else 'training on'} {row['task']}"


def html_page(title: str, provenance: str, answers, figures, tables) -> str:
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
        "body{font-family:sans-serif;font-size:14px;max-width:1300px;margin:0 auto;padding:6px 16px}"
        "h1{font-size:20px;margin:4px 0}h2{font-size:17px;margin:22px 0 6px}"
        ".provenance{color:#555;font-size:11px;margin:0 0 6px}"
        "table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
        "#verdict{font-size:11.5px}#verdict td,#verdict th{padding:1px 5px;line-height:1.2;white-space:nowrap}"
        ".tied{color:#555}.warning{color:#a30000}.note{font-size:11.5px;color:#444;margin:4px 0}"
        "figure{margin:10px 0 24px}figure img{max-width:100%;height:auto;display:block}"
        "figcaption{font-size:13px;color:#333;max-width:1000px;margin-top:4px}summary{cursor:pointer;font-weight:bold}"
        "</style></head><body>",
        f"<h1>{esc(title)}</h1><p class='provenance'>{esc(provenance)}</p>",
    ]
    if answers is not None:
        # one line per question, so that the whole verdict fits the first screen; the lists in full follow
        parts.append("<table id='verdict'><tr><th>question</th><th>measure (lower is better)</th><th>seeds</th>"
                     "<th>best (and how many tied with it)</th><th>warnings</th></tr>")
        for row in answers.to_dict("records"):
            best = (
                esc(row["best"][0]) + (f" <span class='tied'>+{row['tied']} tied</span>" if row["tied"] else "")
                if row["best"]
                else "no healthy result"
            )
            warn = "; ".join(
                part
                for part in (
                    "no estimator beats a zero estimate" if row.get("no_better_than_zero") else "",
                    f"{row['degenerate']} degenerate" if row.get("degenerate") else "",
                )
                if part
            )
            parts.append(f"<tr><td>{esc(question(row))}</td><td>{esc(row['measure'])}</td><td>{row['seeds']}</td>"
                         f"<td title='{esc(' / '.join(row['best']))}'>{best}</td>"
                         f"<td class='warning' title='{esc(' / '.join(row['warnings']))}'>{warn}</td></tr>")
        parts.append(f"</table><p class='note'>{esc(VERDICT_NOTE)}</p>")
        parts.append(
            "<details id='verdict-full'><summary>The verdict in full: every tied estimator and every warning</summary>"
            "<table><tr><th>question</th><th>best, then tied with it</th><th>warnings</th></tr>"
            + "".join(
                f"<tr><td>{esc(question(row))}</td>"
                f"<td>{'<br>'.join(esc(b) for b in row['best']) or 'no healthy result'}</td>"
                f"<td class='warning'>{'<br>'.join(esc(w) for w in row['warnings'])}</td></tr>"
                for row in answers.to_dict("records")
            )
            + "</table></details>"
        )
    for name, caption, data in figures:
        encoded = base64.b64encode(data).decode()
        parts.append(f"<figure id='{name}'><img alt='{name}' src='data:image/png;base64,{encoded}'>"
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    for heading, table in tables:
        parts.append(f"<details><summary>{esc(heading)}</summary>{table.to_html(index=False)}</details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def markdown_text(text) -> str:
    """Text that renders as itself in Markdown, whatever names it holds (an estimator's or a task's string
    parameters are the user's): backslashes escaped, '<' as '&lt;' (no tag, no autolink: both start with it) and
    every '](' broken as ']\\(' (no link, no image). Text without those characters is unchanged."""
    return str(text).replace("\\", "\\\\").replace("<", "&lt;").replace("](", "]\\(")


def markdown_cell(text) -> str:
    """Text safe in a Markdown table cell: :func:`markdown_text`, pipes escaped, line breaks as <br>."""
    return markdown_text(str(text).replace("\r", "")).replace("|", "\\|").replace("\n", "<br>")


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(markdown_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict_markdown(answers) -> str:
    """The verdict as a Markdown table (also what the README quotes)."""
    return markdown_table(
        ["question", "measure (lower is better)", "seeds", "best, then tied with it", "warnings"],
        [
            [
                question(r),
                r["measure"],
                r["seeds"],
                "\n".join(r["best"]) or "no healthy result",
                "\n".join(r["warnings"]),
            ]
            for r in answers.to_dict("records")
        ],
    )


def markdown_page(title: str, provenance: str, answers, figures, tables) -> str:
    md = [f"# {markdown_text(title)}", "", markdown_text(provenance), ""]
    if answers is not None:
        md += ["## Verdict", "", verdict_markdown(answers), "", VERDICT_NOTE, ""]
    if figures:
        md.append("## Figures\n")
    for name, caption, _ in figures:
        md += [f"![{name}](figures/{name}.png)", "", caption, ""]
    for heading, table in tables:
        md += [f"## {heading}", "", markdown_table(list(table.columns), table.values.tolist()), ""]
    return "\n".join(md) + "\n"
