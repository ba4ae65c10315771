"""Reports from stored results only: a self-contained HTML page (figures embedded) and Markdown.

Figures (seaborn):
  * relative bias, total variance and cosine against the temperature per estimator and toy,
    log scales, 95% confidence bands; estimators without a temperature as horizontal bands;
  * a bias-variance map (total variance against relative bias) per toy;
  * training loss, codebook perplexity and used-code fraction per step and estimator;
  * the kernel profile, when a ``results/kernel/*.csv`` from ``gumbench profile-kernel`` is given.
Tables: per toy, estimators ranked by MSE against the exact gradient (with MSE / ||e||^2, which
is 1 for a zero gradient: an estimator near 1 "wins" only by shrinking the gradient away); per training task,
estimators ranked by the final evaluation reconstruction (training loss where a task has none,
as wav2vec 2.0), with their final code perplexity.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from gumbench.benchmarks.sweep.store import load_results, write_bytes, write_text
from gumbench.errors import GumbenchError


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _temperature_figure(frame, metric: str, title: str, log: bool = True):
    import matplotlib.pyplot as plt
    import seaborn as sns

    tasks = sorted(frame["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    palette = dict(zip(sorted(frame["estimator_name"].unique()), sns.color_palette("tab10")))
    for ax, task in zip(axes[0], tasks):
        rows = frame[(frame["task"] == task) & (frame["metric"] == metric)]
        for name, group in rows.groupby("estimator_name"):
            # repetitions: mean of the values, widest of the intervals
            with_tau = group.dropna(subset=["tau"])
            if len(with_tau):
                agg = with_tau.groupby("tau").agg(value=("value", "mean"), low=("low", "min"), high=("high", "max")).reset_index()
                ax.plot(agg["tau"], agg["value"], marker="o", label=name, color=palette[name])
                ax.fill_between(agg["tau"], agg["low"], agg["high"], alpha=0.2, color=palette[name])
            for label, single in group[group["tau"].isna()].groupby("label"):
                value, low, high = single["value"].mean(), single["low"].min(), single["high"].max()
                style = {"none": ":", "ema": "--"}.get(label.split("baseline=")[-1].rstrip("]"), "-.")
                ax.axhline(value, linestyle=style, color=palette[name], label=label)
                ax.axhspan(low, high, alpha=0.1, color=palette[name])
        ax.set_xscale("log")
        if log:
            if (rows["low"] <= 0).any():  # intervals reaching 0 (unbiased estimators): linear near zero
                ax.set_yscale("symlog", linthresh=1e-3)
                ax.set_ylim(bottom=0)
            else:
                ax.set_yscale("log")
        ax.set_xlabel("temperature tau")
        ax.set_title(task, fontsize=8)
    axes[0][0].set_ylabel(title)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"{title} against temperature (95% CI bands)")
    return fig


def _bias_variance_map(frame):
    import seaborn as sns

    wide = frame[frame["metric"].isin(["relative_bias", "total_variance"])].pivot_table(
        index=["task", "label"], columns="metric", values="value", aggfunc="mean").reset_index()
    grid = sns.relplot(data=wide, x="total_variance", y="relative_bias", hue="label", col="task", col_wrap=4,
                       height=3.2, facet_kws={"sharex": False, "sharey": False})
    for ax in grid.axes.flat:
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-2)
    grid.figure.suptitle("bias-variance map: lower left is better", y=1.02)
    return grid.figure


def _training_figure(frame, metric: str, title: str, log: bool = False):
    import seaborn as sns

    rows = frame[frame["metric"] == metric]
    if rows.empty:
        return None
    grid = sns.relplot(data=rows, x="step", y="value", hue="label", col="task_name", kind="line", height=3.2,
                       facet_kws={"sharey": False}, errorbar=("pi", 100))
    if log:
        for ax in grid.axes.flat:
            ax.set_yscale("log")
    grid.set_axis_labels("step", title)
    grid.figure.suptitle(f"{title} during training (band: spread over repetitions)", y=1.03)
    return grid.figure


def _kernel_figure(kernel_csv: Path):
    import pandas as pd
    import seaborn as sns

    frame = pd.read_csv(kernel_csv)
    needed = {"provider", "metric", "x"}
    if not needed <= set(frame.columns):
        raise GumbenchError(f"{kernel_csv} is not a kernel profile (needs columns {', '.join(sorted(needed))})")
    metric = "GB/s" if "GB/s" in set(frame["metric"]) else frame["metric"].iloc[0]
    value = "median" if "median" in frame.columns else "value"
    rows = frame[frame["metric"] == metric]
    grid = sns.relplot(data=rows, x="x", y=value, hue="provider", col="mode" if "mode" in rows else None,
                       kind="line", marker="o", height=3.2)
    grid.figure.suptitle(f"kernel profile: {metric} ({kernel_csv.name})", y=1.03)
    return grid.figure


def gradstats_ranking(frame):
    """Per toy, estimators by MSE (mean over repetitions), with bias and variance."""
    import pandas as pd

    if frame.empty:
        return pd.DataFrame()
    wide = frame.pivot_table(index=["task", "label"], columns="metric", values="value", aggfunc="mean").reset_index()
    wide["rank"] = wide.groupby("task")["mse"].rank(method="min").astype(int)
    if "exact_norm" in wide:
        # MSE / ||e||^2: 1 is what a zero gradient scores; at or above it an estimator only shrinks the signal
        wide["relative_mse"] = wide["mse"] / wide["exact_norm"].pow(2)
    cols = ["task", "rank", "label", "mse", "relative_mse", "relative_bias", "total_variance", "cosine"]
    return wide.sort_values(["task", "rank"])[[c for c in cols if c in wide]]


def training_ranking(frame):
    """Per training task, estimators by the last evaluation's reconstruction/loss, with utilization."""
    import pandas as pd

    if frame.empty:
        return pd.DataFrame()
    last_step = frame.groupby(["task", "label", "repetition"])["step"].transform("max")
    last = frame[frame["step"] == last_step]
    wide = last.pivot_table(index=["task_name", "label"], columns="metric", values="value", aggfunc="mean").reset_index()
    # tasks with a reconstruction rank by it on the evaluation batch; others (wav2vec 2.0) by training loss
    key = "eval_reconstruction" if "eval_reconstruction" in wide else "loss"
    wide["score"] = wide[key].fillna(wide["loss"]) if key != "loss" else wide["loss"]
    wide["rank"] = wide.groupby("task_name")["score"].rank(method="min").astype("Int64")
    cols = ["task_name", "rank", "label", "score", key, "loss", "eval_code_perplexity", "eval_used_fraction", "eval_nmi", "dead_codes"]
    return wide.sort_values(["task_name", "rank"])[[c for c in dict.fromkeys(cols) if c in wide]]


def build_report(results, out_dir: str | Path, *, kernel_csv: str | Path | None = None, title: str = "gumbench report") -> tuple[Path, Path]:
    """Write ``report.html`` (figures embedded) and ``report.md`` (+ figures/*.png) to ``out_dir``.

    ``results``: a run (see :func:`gumbench.benchmarks.sweep.run_sweep`), a results file or run
    folder, or a list of them. ``kernel_csv``: a kernel profile to draw (``gumbench profile-kernel``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", font_scale=0.8)
    frame = load_results(results if isinstance(results, (list, tuple)) else [results])
    out_dir = Path(out_dir)
    grad = frame[frame["kind"] == "gradstats"]
    training = frame[frame["kind"] == "training"]
    figures = draw_figures(grad, training, kernel_csv)
    for name, data in figures:
        write_bytes(out_dir / "figures" / f"{name}.png", data)
    tables = [("Gradient statistics: estimators ranked by MSE against the exact gradient", gradstats_ranking(grad)),
              ("Training: estimators ranked by final evaluation loss", training_ranking(training))]
    tables = [(heading, table) for heading, table in tables if not table.empty]
    meta = frame.iloc[0]
    provenance = (f"gumbench {meta['gumbench_version']}, commit {str(meta['git_commit'])[:10]}, torch {meta['torch_version']}, "
                  f"triton {meta['triton_version']}, device {meta['device']}, base seed {meta['base_seed']}, "
                  f"{frame['unit_id'].nunique()} units")
    html_path = write_text(out_dir / "report.html", _html_page(title, provenance, tables, figures))
    md_path = write_text(out_dir / "report.md", _markdown_page(title, provenance, tables, figures))
    return html_path, md_path


def draw_figures(grad, training, kernel_csv=None) -> list[tuple[str, bytes]]:
    """(name, PNG bytes) of every figure the rows allow (see the module docstring)."""
    figures: list[tuple[str, bytes]] = []
    if not grad.empty:
        figures.append(("relative-bias", _png(_temperature_figure(grad, "relative_bias", "relative bias ||E[x]-e||/||e||"))))
        figures.append(("total-variance", _png(_temperature_figure(grad, "total_variance", "total variance tr(Sigma)"))))
        figures.append(("cosine", _png(_temperature_figure(grad, "cosine", "cosine of mean to exact", log=False))))
        figures.append(("bias-variance-map", _png(_bias_variance_map(grad))))
    for metric, label, log in (("loss", "training loss", True), ("code_perplexity", "code perplexity", False),
                               ("used_fraction", "used code fraction", False), ("eval_code_perplexity", "eval code perplexity", False)):
        fig = _training_figure(training, metric, label, log)
        if fig is not None:
            figures.append((f"training-{metric.replace('_', '-')}", _png(fig)))
    if kernel_csv is not None:
        figures.append(("kernel-profile", _png(_kernel_figure(Path(kernel_csv)))))
    return figures


def _html_page(title: str, provenance: str, tables, figures) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1300px;margin:auto}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p>{html.escape(provenance)}</p>"]
    for heading, table in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>" + table.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    for name, data in figures:
        encoded = base64.b64encode(data).decode()
        parts.append(f"<h2>{html.escape(name)}</h2><img class='figure' alt='{name}' src='data:image/png;base64,{encoded}'>")
    # lets a browser test count the figures that really decoded
    parts.append("<script>window.addEventListener('load',()=>{const imgs=[...document.images];"
                 "document.body.dataset.figures=imgs.length;"
                 "document.body.dataset.loaded=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;});</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown_page(title: str, provenance: str, tables, figures) -> str:
    md = [f"# {title}", "", provenance, ""]
    for heading, table in tables:
        md += [f"## {heading}", "", table.to_markdown(index=False, floatfmt=".4g"), ""]
    md.append("## Figures\n")
    md += [f"![{name}](figures/{name}.png)" for name, _ in figures]
    return "\n".join(md) + "\n"
