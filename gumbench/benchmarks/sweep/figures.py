"""The report's figures, drawn from stored results, each captioned with what "better" means and at most
1,300 px wide so that it reads at 100%:

* per toy, total variance against relative bias, with the Pareto front marked;
* relative bias and total variance against the temperature, a small panel per toy;
* training loss and evaluation code perplexity per step, bands over seeds;
* the kernel profile, when a CSV from ``gumbench profile-kernel`` is given.

Estimators are coloured by family (one hue each) with a shade per variant, the same in every figure.
:func:`draw_figures` returns them as PNG bytes; :mod:`gumbench.benchmarks.sweep.report` lays them out.
"""

from __future__ import annotations

import io
import math

from gumbench.benchmarks.sweep.verdict import short_task
from gumbench.intervals import mean_interval

FAMILIES = (
    "st-gumbel",
    "soft-gumbel",
    "straight-through",
    "gumbel-rao",
    "gst",
    "reinmax",
    "reinforce",
    "disarm",
    "vq-commitment",
)
WIDTH_IN, DPI = 11.6, 110  # 1,276 px: readable at 100% in a 1,400 px window
LINESTYLES = ("-", "--", ":", "-.")


# --- colours ---------------------------------------------------------------------------------

def _hues() -> list[tuple]:
    """Distinct family colours: tab10, then Dark2 and Set1 for the families past the tenth (a sweep of
    every estimator has about twenty), so that two families share a colour only past 27."""
    import seaborn as sns

    return sns.color_palette("tab10", 10) + sns.color_palette("Dark2", 8) + sns.color_palette("Set1", 9)


def family_palette(pairs) -> dict[str, tuple]:
    """label -> RGB for rows with ``label``, ``estimator_name`` and ``tau``: one hue per family (:func:`_hues`),
    shades from light to dark across its variants (by temperature, then name)."""
    import numpy as np

    hues = _hues()
    known = list(FAMILIES) + sorted(set(pairs["estimator_name"]) - set(FAMILIES))
    palette = {}
    for family, group in pairs.drop_duplicates("label").groupby("estimator_name"):
        base = np.array(hues[known.index(family) % len(hues)])
        labels = group.sort_values(["tau", "label"], na_position="first")["label"].tolist()
        for label, t in zip(labels, np.linspace(-0.4, 0.4, len(labels)) if len(labels) > 1 else [0.0]):
            shade = base + (1 - base) * -t if t < 0 else base * (1 - t)
            palette[label] = tuple(float(c) for c in shade)
    return palette


def legend_columns(labels, fontsize: float, most: int) -> int:
    """Legend columns that keep the legend within the figure's width: about 0.6 em per character plus the
    marker and the gap, at DPI, at most ``most``."""
    char = 0.6 * fontsize / 72 * DPI
    widest = max((len(str(label)) for label in labels), default=1) * char + 4 * char
    return max(1, min(most, int(WIDTH_IN * DPI * 0.95 // widest)))


def _family_handles(pairs):
    """Legend handles: one mid shade per family."""
    from matplotlib.lines import Line2D

    hues = _hues()
    known = list(FAMILIES) + sorted(set(pairs["estimator_name"]) - set(FAMILIES))
    return [Line2D([], [], color=hues[known.index(f) % len(hues)], marker="o", linestyle="", label=f)
            for f in known if f in set(pairs["estimator_name"])]


# --- figures ---------------------------------------------------------------------------------

def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _panels(count: int, height: float):
    import matplotlib.pyplot as plt

    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _wide_gradstats(grad):
    """One row per unit: short task, label, family, tau, series (label without tau) and the metrics."""
    from gumbench.registry import format_spec, parse_spec

    wide = grad.pivot_table(index=["unit_id", "task", "label", "estimator_name", "estimator"], columns="metric",
                            values="value", aggfunc="first").reset_index()
    for metric in grad["metric"].unique():  # a metric with no finite value (blanked, finite_rows) keeps its column
        if metric not in wide:
            wide[metric] = float("nan")
    wide["tau"] = grad.drop_duplicates("unit_id").set_index("unit_id").loc[wide["unit_id"], "tau"].to_numpy()
    order = {t: i for i, t in enumerate(grad["task"].unique())}  # the config's order, not the pivot's
    wide = wide.sort_values("task", key=lambda t: t.map(order), kind="stable")
    wide["task"] = wide["task"].map({t: short_task("gradstats", t) for t in wide["task"].unique()})

    def series(label):
        parsed = parse_spec(label)
        return format_spec(parsed.name, {k: v for k, v in parsed.params.items() if k != "tau"})

    wide["series"] = wide["label"].map({s: series(s) for s in wide["label"].unique()})
    return wide


def _axis_range(values, decades: float = 8.0):
    """(low, high) of a log axis covering the values, at most ``decades`` below the largest."""
    import numpy as np

    positive = np.asarray(values, dtype=float)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if not len(positive):
        return 1e-3, 1.0
    high = positive.max() * 2
    return max(positive.min() / 2, high / 10 ** decades), high


def bias_variance_figure(wide, compared, palette):
    """Per toy, total variance (log x) against relative bias, Pareto front of the healthy estimators.
    Points beyond an axis (a variance of 0, a bias far off the healthy ones) sit on its edge."""
    import numpy as np

    means = wide.groupby(["task", "label", "estimator_name"], as_index=False)[
        ["total_variance", "relative_bias"]
    ].mean()
    standing = compared.set_index(["task", "label"])["standing"].to_dict() if not compared.empty else {}
    means["degenerate"] = [standing.get((t, label)) == "degenerate" for t, label in zip(means["task"], means["label"])]
    tasks = list(dict.fromkeys(wide["task"]))
    fig, axes = _panels(len(tasks), 3.4)
    for ax, task in zip(axes, tasks):
        rows = means[means["task"] == task]
        healthy = rows[~rows["degenerate"]]
        x_low, x_high = _axis_range(rows["total_variance"])
        highest = healthy["relative_bias"].max() if len(healthy) else rows["relative_bias"].max()
        y_high = max(1.05, 1.1 * highest) if math.isfinite(highest) else 1.05
        for row in rows.itertuples():
            x, y = np.clip(row.total_variance, x_low, x_high), min(row.relative_bias, y_high)
            ax.scatter(x, y, s=26, color=palette[row.label], marker="x" if row.degenerate else "o", linewidths=1.2,
                       zorder=3, clip_on=False)
        front, best_bias = [], math.inf
        for row in healthy.sort_values(["total_variance", "relative_bias"]).itertuples():
            if row.relative_bias < best_bias:
                front.append(row)
                best_bias = row.relative_bias
        if front:
            xs = [float(np.clip(r.total_variance, x_low, x_high)) for r in front]
            ax.step(xs, [r.relative_bias for r in front], where="post", color="black", linewidth=0.8, zorder=2)
            for i, (x, r) in enumerate(zip(xs, front)):
                ax.annotate(r.label, (x, r.relative_bias), fontsize=6.5, xytext=(4, 3 + 7 * (i % 2)),
                            textcoords="offset points").set_in_layout(False)
        ax.set_xscale("log")
        ax.set_xlim(x_low, x_high)
        ax.set_ylim(0, y_high)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("total variance tr(Σ) (log)")
        ax.set_ylabel("relative bias ‖E[x]−e‖/‖e‖")
    handles = _family_handles(wide)
    fig.legend(handles=handles, loc="outside lower center", ncol=legend_columns([h.get_label() for h in handles], 8, 9),
               fontsize=8, frameon=False)
    return fig


def temperature_figure(wide, metric: str, label: str, palette, log: bool):
    """``metric`` against the temperature, a panel per toy that was run at more than one temperature (the quantizer
    problems run the categorical estimators at one: the bias-variance panels show them); estimators without one as
    dashed levels."""
    import numpy as np

    spread = wide.groupby("task")["tau"].nunique()
    tasks = [t for t in dict.fromkeys(wide["task"]) if spread.get(t, 0) > 1] or list(dict.fromkeys(wide["task"]))
    wide = wide[wide["task"].isin(tasks)]
    fig, axes = _panels(len(tasks), 3.0)
    styles = {}
    for family, group in wide.groupby("estimator_name"):
        for i, s in enumerate(sorted(group["series"].unique())):
            styles[s] = LINESTYLES[i % len(LINESTYLES)]
    handles = {}
    for ax, task in zip(axes, tasks):
        rows = wide[wide["task"] == task]
        if not np.isfinite(rows[metric].astype(float)).any():  # all infinite (finite_rows) or missing: no scale to set
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(task, fontsize=9)
            continue
        taus = rows["tau"].dropna()
        for series, group in rows.groupby("series"):
            labels = sorted(group["label"].unique())
            color = palette[labels[len(labels) // 2]]  # the family's middle shade
            points = [(tau, *mean_interval(g[metric])) for tau, g in group.groupby("tau")]
            if points:
                tau, mean, low, high = map(np.array, zip(*points))
                (line,) = ax.plot(
                    tau, mean, marker="o", markersize=3, color=color, linestyle=styles[series], label=series
                )
                ax.fill_between(tau, low, high, color=color, alpha=0.15, linewidth=0)
            else:
                mean, low, high = mean_interval(group[metric])
                line = ax.axhline(mean, color=color, linestyle=(0, (4, 2)) if styles[series] == "-" else styles[series],
                                  linewidth=1.2, label=series)
                if not math.isnan(low) and len(taus):
                    ax.fill_between([taus.min(), taus.max()], low, high, color=color, alpha=0.1, linewidth=0)
            handles.setdefault(series, line)
        ax.set_xscale("log")
        if log and (rows[metric] > 0).any():  # a log axis needs a positive value to show
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("temperature τ (log)")
        ax.set_ylabel(label)
    fig.legend(
        handles=list(handles.values()),
        loc="outside lower center",
        ncol=legend_columns(handles, 8, 6),
        fontsize=8,
        frameon=False,
    )
    return fig


def training_figure(training, metric: str, label: str, palette):
    """``metric`` per step, a panel per training task: mean over seeds, band from the lowest to the highest seed."""
    rows = training[training["metric"] == metric]
    if rows.empty:
        return None
    rows = rows.assign(task=rows["task"].map({t: short_task("training", t) for t in rows["task"].unique()}))
    tasks = list(dict.fromkeys(rows["task"]))
    fig, axes = _panels(len(tasks), 3.0)
    handles = {}
    for ax, task in zip(axes, tasks):
        for i, (name, group) in enumerate(rows[rows["task"] == task].groupby("label")):
            stats = group.groupby("step")["value"].agg(["mean", "min", "max"])
            family = group["estimator_name"].iloc[0]
            variants = sorted(rows[rows["estimator_name"] == family]["label"].unique())
            line, = ax.plot(stats.index, stats["mean"], color=palette[name], linewidth=1.1,
                            linestyle=LINESTYLES[variants.index(name) % len(LINESTYLES)], label=name)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=palette[name], alpha=0.12, linewidth=0)
            handles.setdefault(name, line)
        if metric == "loss" and (rows[rows["task"] == task]["value"] > 0).all():
            ax.set_yscale("log")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
    fig.legend(
        handles=list(handles.values()),
        loc="outside lower center",
        ncol=legend_columns(handles, 7.5, 5),
        fontsize=7.5,
        frameon=False,
    )
    return fig


def kernel_figure(frame, name: str):
    import seaborn as sns

    metric = "GB/s" if "GB/s" in set(frame["metric"]) else frame["metric"].iloc[0]
    value = "median" if "median" in frame.columns else "value"
    rows = frame[frame["metric"] == metric]
    grid = sns.relplot(data=rows, x="x", y=value, hue="provider", col="mode" if "mode" in rows else None,
                       kind="line", marker="o", height=3.2, aspect=1.0)
    grid.figure.set_size_inches(min(WIDTH_IN, grid.figure.get_size_inches()[0]), 3.4)
    grid.figure.suptitle(f"kernel profile: {metric} ({name})", y=1.03)
    return grid.figure


def finite_rows(rows):
    """(the rows with non-finite values blanked to NaN, a caption note counting them: '' when there are none).
    Figures draw finite values only; the tables keep every value."""
    import numpy as np

    values = rows["value"].to_numpy(dtype=float)
    finite = np.isfinite(values)
    dropped = int((~finite & ~np.isnan(values)).sum())
    note = f" {dropped:,} infinite value{'s' if dropped > 1 else ''} not drawn." if dropped else ""
    return (rows.assign(value=np.where(finite, values, np.nan)) if dropped else rows), note


def draw_figures(grad, training, compared, kernel=None) -> list[tuple[str, str, bytes]]:
    """(name, caption, PNG bytes) of every figure the rows allow (see the module docstring)."""
    import pandas as pd

    figures: list[tuple[str, str, bytes]] = []
    both = pd.concat([grad, training])[["label", "estimator_name", "tau"]]
    grad, grad_note = finite_rows(grad)
    training, training_note = finite_rows(training)
    palette = family_palette(both) if not both.empty else {}
    if not grad.empty:
        wide = _wide_gradstats(grad)
        seeds = int(wide.groupby(["task", "label"]).size().max())
        figures.append(
            (
                "bias-variance",
                BIAS_VARIANCE.format(seeds=seeds) + grad_note,
                _png(bias_variance_figure(wide, compared, palette)),
            )
        )
        for what, metric, log in (
            ("Relative bias ‖E[x]−e‖/‖e‖ of the mean estimate", "relative_bias", False),
            ("Total variance tr(Σ) of one estimate (log scale)", "total_variance", True),
        ):
            caption = TEMPERATURE.format(what=what, better="lower", seeds=seeds) + grad_note
            figure = temperature_figure(wide, metric, metric.replace("_", " "), palette, log=log)
            figures.append((metric.replace("_", "-"), caption, _png(figure)))
    for metric, label, caption in (
        ("loss", "training loss", LOSS),
        ("eval_code_perplexity", "eval code perplexity", PERPLEXITY),
    ):
        fig = training_figure(training, metric, label, palette)
        if fig is not None:
            seeds = int(training.drop_duplicates("unit_id").groupby(["task", "label"]).size().max())
            name = f"training-{metric.replace('_', '-')}"
            figures.append((name, caption.format(seeds=seeds) + training_note, _png(fig)))
    if kernel is not None:
        frame, name = kernel
        figures.append(
            ("kernel-profile", "Kernel throughput by provider (higher is better).", _png(kernel_figure(frame, name)))
        )
    return figures


BIAS_VARIANCE = (
    "Bias against variance, per toy: each point is one estimator (mean of {seeds} seeds), the total variance of "
    "one gradient estimate (log) against its bias relative to the exact gradient's norm. Lower left is better. "
    "The black steps join the Pareto front (no other healthy estimator has both less variance and less bias); "
    "✕ marks degenerate results; points beyond an axis sit on its edge. Colour: family; shade: variant, "
    "darker at higher temperature."
)
TEMPERATURE = (
    "{what} against the temperature, per toy run at several temperatures; {better} is better. "
    "Lines: mean over {seeds} seeds, band: 95% "
    "t interval across seeds; estimators without a temperature are dashed levels across the plot."
)
LOSS = ("Training loss per step, per task; lower is better (tasks differ in their loss, so compare within a panel). "
        "Line: mean over {seeds} seeds; band: from the lowest to the highest seed.")
PERPLEXITY = ("Evaluation code perplexity per step (exp of the entropy of hard code usage, summed over groups): higher "
              "means more codes in use, up to the codebook size; at most 2 in a group is collapse. Line: mean over "
              "{seeds} seeds; band: lowest to highest seed.")

