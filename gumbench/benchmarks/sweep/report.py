"""Reports from stored results only: a self-contained HTML page (figures embedded) and Markdown,
written to be read top-down in a minute.

1. The verdict (:mod:`gumbench.benchmarks.sweep.verdict`): per question the sweep answers, the
   best estimators with intervals across seeds, ties grouped, degenerate results named.
2. Figures (:mod:`gumbench.benchmarks.sweep.figures`), each captioned with what "better" means, at most
   1,300 px wide so they read at 100%:
   * per task, relative bias against total variance, with the Pareto front marked;
   * relative bias and total variance against the temperature, per task that varies one estimator's;
   * training loss and evaluation code perplexity per step;
   * the kernel profile, when a CSV from ``gumbench profile-kernel`` is given.
   Every point has its 95% t interval over instances or seeds; parts of at most six panels, legends beside.
   Estimators are coloured by family (one hue each) with a shade per variant, the same in
   every figure.
3. Every estimator's full comparison, collapsed.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from gumbench.benchmarks.sweep.figures import draw_figures, set_style
from gumbench.benchmarks.sweep.recommend import recommendations
from gumbench.benchmarks.sweep.store import load_results
from gumbench.benchmarks.sweep.verdict import answers as verdict_answers
from gumbench.benchmarks.sweep.verdict import interval_text, ladder_verdicts, replicates_text, short_task
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
        table["beat the best on"] = [f"{k} of {n}" if n and rank > 1 else "" for k, n, rank in
                                     zip(table["wins"], table["of"], table["rank"])]
        columns = ["task", "rank", "label", "standing", "measure", "value", "beat the best on", "n", "warning"]
        if kind == "gradstats":
            table["per estimate"] = [interval_text(*v) for v in zip(table["per_estimate_mean"],
                                                                    table["per_estimate_low"],
                                                                    table["per_estimate_high"])]
            table["equal wall time"] = [interval_text(*v) for v in zip(table["equal_time_mean"],
                                                                       table["equal_time_low"],
                                                                       table["equal_time_high"])]
            table["loss evaluations"] = table["cost"].map(lambda c: f"{c:.0f}")
            columns += ["per estimate", "equal wall time", "loss evaluations"]
        columns += [c for c in extra if c in table]
        out = table[columns].rename(columns={"n": "instances" if kind == "gradstats" else "seeds"})
        for c in extra:
            if c in out:
                out[c] = out[c].map(lambda v: "" if v != v else f"{v:.3g}")
        tables.append((heading, out.astype(str)))
    return tables


def ladder_tables(frame):
    """(heading, DataFrame of strings) of the budget ladders: per task and pair, the ordering at each rung and the
    verdict (settled only where the last two rungs agree); none without ladder units."""
    if "ladder" not in frame or frame["ladder"].isna().all():
        return []
    from gumbench.benchmarks.sweep.ladder import ladder_orderings

    rows = frame[(frame["kind"] == "training") & frame["ladder"].notna()]
    rungs = {t: tuple(int(s) for s in ladder.split(",")) for t, ladder in
             rows.drop_duplicates("task")[["task", "ladder"]].itertuples(index=False)}
    orders = ladder_orderings(rows, rungs)
    orders["task"] = orders["task"].map(lambda t: short_task("training", t))
    labels = dict(zip(rows["estimator"], rows["label"]))  # short names, in the pair and in its verdict
    for column in ("a", "b", "ordering", "verdict"):
        for spec, label in sorted(labels.items(), key=lambda item: -len(item[0])):
            orders[column] = orders[column].str.replace(spec, label, regex=False)
    orders["difference"] = [interval_text(*v) for v in zip(orders["difference"], orders["low"], orders["high"])]
    table = orders[["task", "a", "b", "rung", "difference", "ordering", "verdict"]].astype(str)
    return [("Budget ladders: every pair's ordering per rung (final eval reconstruction, a - b)", table)]


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
    outcome_rows, compared, answers = verdict_answers(frame)
    if answers is not None:
        answers.attrs["recommendations"] = recommendations(outcome_rows, compared, answers, ladder_verdicts(frame))
    figures = draw_figures(frame[frame["kind"] == "gradstats"], frame[frame["kind"] == "training"], compared, kernel)
    for name, _, data in figures:
        write_bytes(out_dir / "figures" / f"{name}.png", data)
    tables = full_tables(frame, compared) + ladder_tables(frame)
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


RECOMMENDATION_NOTE = (
    "Per use case, the estimator with the lowest mean rank over its gradient questions' instances at equal loss "
    "evaluations (autorank: Friedman test, Nemenyi critical difference); the training column names each task's "
    "best healthy candidate at the sweep's budget."
)
VERDICT_NOTE = (
    "Gradient questions rank by MSE / ‖grad‖² at equal loss evaluations (each estimator averages budget / cost "
    "estimates, the budget being the largest cost in the question); the best per estimate and at equal wall time "
    "are named beside it. Training questions rank by their final value. Values are geometric means over instances "
    "(seeds) with 95% t intervals of the mean log; tied: the interval of the log ratio to the best reaches 0 (paired "
    "over shared instances, else Welch). Warnings name degenerate results (shrinks or misses the gradient, collapsed, "
    "diverged), which rank after every healthy one, and instances whose exact gradient vanishes."
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
        "#verdict,#recommend{font-size:11.5px}#verdict td,#verdict th,#recommend td,#recommend th{padding:1px 5px;"
        "line-height:1.25}#recommend td:nth-child(2){font-weight:bold}"
        ".tied{color:#555}.warning{color:#a30000}.note{font-size:11.5px;color:#444;margin:4px 0}"
        "figure{margin:10px 0 24px}figure img{max-width:100%;height:auto;display:block}"
        "figcaption{font-size:13px;color:#333;max-width:1000px;margin-top:4px}summary{cursor:pointer;font-weight:bold}"
        "</style></head><body>",
        f"<h1>{esc(title)}</h1><p class='provenance'>{esc(provenance)}</p>",
    ]
    if answers is not None:
        parts.append(_recommendations_html(answers.attrs.get("recommendations")))
        parts.append("<h2>Every question</h2><table id='verdict'><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in VERDICT_HEADER) + "</tr>")
        for cells in verdict_cells(answers):
            parts.append("<tr>" + "".join(f"<td>{'<br>'.join(esc(line) for line in str(c).split(chr(10)))}</td>"
                                          for c in cells) + "</tr>")
        parts.append(f"</table><p class='note'>{esc(VERDICT_NOTE)}</p>")
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


VERDICT_HEADER = ["question", "ranked by (lower is better)", "replicates", "best, then tied with it",
                  "runner-up: the best beat it on", "best per estimate / at equal wall time", "warnings"]
RECOMMENDATION_HEADER = ["use case", "use", "evidence (equal loss evaluations)", "runner-up", "the answer changes on",
                         "training (best at the sweep's budget)"]


def verdict_cells(answers) -> list[list[str]]:
    """The per-question table's cells (text, line breaks as newlines), every name in full."""
    rows = []
    for r in answers.to_dict("records"):
        alternates = (" / ".join(dict.fromkeys([r["best_per_estimate"], r["best_equal_time"]]))
                      if r["kind"] == "gradstats" else "")
        rows.append([question(r), f"{r['measure']}, {r['view']}", replicates_text(r),
                     "\n".join(r["best"]) or "no healthy result", r["evidence"], alternates, "\n".join(r["warnings"])])
    return rows


def recommendation_cells(table) -> list[list[str]]:
    if table is None or table.empty:
        return []
    return [[r["use case"], r["recommended"], r["evidence"], r["runner_up"], r["changes"], r["training"]]
            for r in table.to_dict("records")]


def _recommendations_html(table) -> str:
    esc = html.escape
    rows = recommendation_cells(table)
    if not rows:
        return ""
    return ("<h2>Which estimator to use</h2><table id='recommend'><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in RECOMMENDATION_HEADER) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>" for cells in rows)
            + f"</table><p class='note'>{esc(RECOMMENDATION_NOTE)}</p>")


def verdict_markdown(answers) -> str:
    """The per-question verdict as a Markdown table (also what the README quotes)."""
    return markdown_table(VERDICT_HEADER, verdict_cells(answers))


def recommendations_markdown(table) -> str:
    """The use-case recommendations as a Markdown table (the README's verdict section quotes it)."""
    return markdown_table(RECOMMENDATION_HEADER, recommendation_cells(table))


def markdown_page(title: str, provenance: str, answers, figures, tables) -> str:
    md = [f"# {markdown_text(title)}", "", markdown_text(provenance), ""]
    if answers is not None:
        md += ["## Which estimator to use", "", recommendations_markdown(answers.attrs.get("recommendations")), "",
               RECOMMENDATION_NOTE, "", "## Verdict", "", verdict_markdown(answers), "", VERDICT_NOTE, ""]
    if figures:
        md.append("## Figures\n")
    for name, caption, _ in figures:
        md += [f"![{name}](figures/{name}.png)", "", caption, ""]
    for heading, table in tables:
        md += [f"## {heading}", "", markdown_table(list(table.columns), table.values.tolist()), ""]
    return "\n".join(md) + "\n"
