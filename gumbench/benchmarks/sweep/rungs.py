"""The evaluation rows a sweep run has reached so far, finished units or not (``gumbench rungs``).

A long training sweep (``configs/fashion-vae-paper.toml``: 96,000 steps a unit) spans sessions: its units
checkpoint every few minutes (:mod:`gumbench.benchmarks.training.checkpoint`), and the rows a unit has
logged live in its checkpoint until it finishes. :func:`rung_rows` gathers, from a run folder, the
evaluation rows (metrics ``eval_*``) of every finished unit (``units/*.parquet``) and of every unfinished
one (``checkpoints/*.pt``), in the sweep's long format (task, estimator, label, repetition, seed, unit_id,
step, metric, value) with ``source`` (``finished`` or ``checkpoint``) and ``reached`` (the last step the
unit has trained). Those rows are what :func:`gumbench.benchmarks.sweep.ladder.ladder_orderings` reads: a
rung no unit has reached yet is simply absent, and the ladder says the ordering is not settled.
"""

from __future__ import annotations

from pathlib import Path

from gumbench.errors import GumbenchError

IDENTITY = ("task", "estimator", "label", "repetition", "seed", "unit_id")


def rung_rows(folder):
    """The ``eval_*`` rows of a run folder's finished and checkpointed units (see the module docstring)."""
    import pandas as pd

    folder = Path(folder)
    if not (folder / "units").is_dir() and not (folder / "checkpoints").is_dir():
        raise GumbenchError(f"{folder} is not a sweep run folder (it has neither units/ nor checkpoints/)")
    parts = [_finished(path) for path in sorted((folder / "units").glob("*.parquet"))]
    done = {p["unit_id"].iloc[0] for p in parts if len(p)}
    parts += [_checkpointed(path) for path in sorted((folder / "checkpoints").glob("*.pt")) if path.stem not in done]
    columns = [*IDENTITY, "step", "metric", "value", "source", "reached"]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(parts, ignore_index=True)[columns]
    return frame.sort_values(["task", "estimator", "repetition", "step", "metric"]).reset_index(drop=True)


def _finished(path: Path):
    import pandas as pd

    rows = pd.read_parquet(path, columns=[*IDENTITY, "step", "metric", "value"])
    reached = int(rows["step"].max()) if len(rows) else 0
    return rows[rows["metric"].str.startswith("eval_")].assign(source="finished", reached=reached)


def _checkpointed(path: Path):
    from gumbench.benchmarks.training.checkpoint import checkpoint_rows

    wide = checkpoint_rows(path)
    if not len(wide):
        return wide
    # numbers only, as the sweep's rows (a flag such as eval_collapse is not a row there)
    metrics = [c for c in wide if c.startswith("eval_") and wide[c].dropna().infer_objects().dtype.kind in "iuf"]
    long = wide.melt(id_vars=[c for c in IDENTITY if c in wide] + ["step"], value_vars=metrics, var_name="metric",
                     value_name="value").dropna(subset=["value"])
    missing = [c for c in IDENTITY if c not in long]
    if missing:
        raise GumbenchError(f"checkpoint {path} lacks the sweep unit's {', '.join(missing)}: not a sweep's checkpoint")
    return long.assign(value=long["value"].astype(float), source="checkpoint", reached=int(wide["step"].max()))
