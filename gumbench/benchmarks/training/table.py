"""The text table of training runs that ``gumbench train`` prints (:func:`training_table`)."""

from __future__ import annotations

# the columns of :func:`training_table` that a run has, in this order; step_seconds is summed over the run
SUMMARY_COLUMNS = ("loss", "code_perplexity", "used_fraction", "dead_codes", "eval_code_perplexity", "eval_purity",
                   "eval_nmi", "eval_negative_elbo", "eval_nll_iw", "eval_collapse", "step_seconds")


def training_table(frame, task_spec: str, bits: dict[str, float] | None = None) -> str:
    """Text table of runs (rows of :func:`train`, one or more estimators on the task ``task_spec``): per estimator
    the last step's loss, utilization and evaluation figures, and the run's total seconds; with ``bits`` (by
    label: :func:`gumbench.benchmarks.training.bits.bits_per_frame`) a first column of bits per frame."""
    from gumbench.tables import render

    columns = [c for c in SUMMARY_COLUMNS if c in frame]
    rows = []
    for _, part in frame.groupby("estimator", sort=False):
        last = part.dropna(axis=1, how="all").iloc[-1]
        values = [part["step_seconds"].sum() if c == "step_seconds" else last.get(c) for c in columns]
        label = part["label"].iloc[0]
        first = () if bits is None else (f"{bits[label]:.3g}",)
        rows.append((label, *first, *("-" if v is None else f"{v:.3g}" for v in values)))
    headers = ["estimator", *(() if bits is None else ("bits per frame",)),
               *(c if c != "step_seconds" else "total seconds" for c in columns)]
    return render(f"{task_spec}: last step of {int(frame['step'].max())}", headers, rows)
