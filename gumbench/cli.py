"""The ``gumbench`` command: a thin typer shell over library functions.

This module holds the app, its global options, the entry point (one-line errors, exit codes), the
commands over the whole catalog and runs (list, sweep, report), and the table of every command in
``--help`` order; the others live by area in :mod:`gumbench.commands` (toys, training, studies,
kernel). Heavy modules (torch, scipy, pandas) are imported inside the commands so that
``gumbench --help`` answers fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from gumbench.commands import kernel, studies, toys, training
from gumbench.commands.options import MAX_MEMORY, THREADS, writable_file, writable_folder
from gumbench.errors import GumbenchError

app = typer.Typer(
    help="gumbench: measure gradient estimators through discrete choices (bias, variance, cosine to the exact "
    "gradient).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

LIST_KINDS = ("estimators", "tasks", "training")


def _kernel(value: Optional[Path]) -> Optional[Path]:
    """A kernel profile CSV option, read and checked before the command's work starts."""
    if value is not None:
        from gumbench.benchmarks.sweep.report import read_kernel_profile

        read_kernel_profile(value)
    return value


def _version(value: bool) -> None:
    if value:
        from gumbench import __version__
        from gumbench.provenance import code_hash, git_commit

        typer.echo(f"gumbench {__version__} (commit {git_commit(short=True)}, code {code_hash()})")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_version,
        help="Print the version, git commit and code hash (run folders are named by it), then exit.",
    ),
    debug: bool = typer.Option(
        False, "--debug", help="On an error, show the Python traceback too (anywhere on the command line)."
    ),
) -> None:
    pass


def list_command(
    kind: Optional[str] = typer.Argument(
        None, help="What to list: estimators, tasks (toys) or training (default: all)."
    ),
) -> None:
    """List registered estimators or tasks with their parameters and a one-line description."""
    from gumbench.catalog import describe
    from gumbench.tables import render

    kinds = LIST_KINDS if kind is None else (kind,)
    for k in kinds:
        if k not in LIST_KINDS:
            raise GumbenchError(f"cannot list {k!r}; allowed: {', '.join(LIST_KINDS)}")
    for k in kinds:
        second = {"estimators": "family; cost", "tasks": "formula", "training": "default steps"}[k]
        columns = ("name", second, "parameters (defaults)", "description")
        typer.echo(render(k, columns, describe(k), text=columns[1:]))  # all but the name is prose that may wrap


def sweep_command(
    config: Optional[Path] = typer.Argument(
        None, help="TOML or YAML sweep config; default: the built-in default sweep."
    ),
    out: Path = typer.Option(
        Path("runs"),
        "--out",
        callback=writable_folder,
        help="Folder of runs; each run gets <name>-<config hash>-<code hash>/.",
    ),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Parallel workers (local processes or Dask workers)."),
    backend: str = typer.Option("local", "--backend", help="local (joblib), dask or slurm (submitit)."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Dask scheduler address; default: a local cluster."
    ),
    partition: Optional[str] = typer.Option(None, "--partition", help="SLURM partition (--backend slurm)."),
    time_limit: Optional[int] = typer.Option(None, "--time", show_default=False,
                                             help="SLURM time limit per unit, minutes (--backend slurm; default 60)."),
    connect_timeout: Optional[float] = typer.Option(None, "--connect-timeout", show_default=False,
                                                    help="Seconds for a Dask scheduler or sbatch to answer (10)."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (overrides the config's)."),
    repetitions: Optional[int] = typer.Option(None, "--repetitions", "--seeds", help="Repetitions (seeds) per unit."),
    base_seed: Optional[int] = typer.Option(None, "--base-seed", help="Base seed hashed into every unit's seed."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Gradient estimates per gradstats unit."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Steps per training unit."),
    estimator: Optional[List[str]] = typer.Option(
        None, "--estimator", "-e", help="Replace the estimator lists (repeatable)."
    ),
    report: bool = typer.Option(
        True, "--report/--no-report", help="Write report.html and report.md into the run folder."
    ),
    kernel: Optional[Path] = typer.Option(
        None,
        "--kernel",
        callback=_kernel,
        help="Kernel profile CSV (from `gumbench profile-kernel`) to draw in the report.",
    ),
    threads: int = THREADS,
    max_memory: Optional[str] = MAX_MEMORY,
    checkpoint_every: float = typer.Option(180.0, "--checkpoint-every", help="Seconds between a training unit's "
                                           "checkpoints (a rerun resumes unfinished units from them)."),
) -> None:
    """Run or resume a sweep (tasks x estimators x parameters x seeds); results as parquet, then a report."""
    from gumbench.benchmarks.sweep import apply_overrides, load_config, run_sweep
    from gumbench.footprint import use_limit

    resolved = apply_overrides(load_config(config), name=name, repetitions=repetitions, base_seed=base_seed,
                               samples=samples, steps=steps, estimators=estimator)
    with use_limit(max_memory) as limit:  # workers inherit the limit
        run = run_sweep(resolved, out=out, backend=backend, jobs=jobs, scheduler=scheduler, slurm_partition=partition,
                        slurm_time=time_limit, threads=threads, connect_timeout=connect_timeout, max_memory=limit,
                        checkpoint_every=checkpoint_every)
    typer.echo(f"results: {run.results}")
    from gumbench.benchmarks.sweep.report import build_report, question

    if report:
        html_path, md_path = build_report(run, run.folder, kernel_csv=kernel)
        typer.echo(f"report: {html_path} and {md_path}")
    typer.echo(_verdict_table(run.frame(), question))


def _verdict_table(frame, question) -> str:
    """The sweep's verdict as a text table: per question the best, those tied with it, and warnings."""
    from gumbench.benchmarks.sweep.verdict import answers as verdict_answers
    from gumbench.benchmarks.sweep.verdict import replicates_text
    from gumbench.tables import render

    answers = verdict_answers(frame)[2]
    rows = [(question(r), f"{r['measure']}, {r['view']} ({replicates_text(r)})",
             "; ".join(r["best"]) or "no healthy result", r["evidence"], "; ".join(r["warnings"]))
            for r in answers.to_dict("records")]
    return render("verdict (lower is better): the best, then those tied with it; warnings name degenerate results",
                  ("question", "measure", "best", "evidence", "warnings"), rows, text=("best", "evidence", "warnings"))


def report_command(
    runs: List[Path] = typer.Argument(..., help="Run folders or results.parquet files."),
    out: Path = typer.Option(
        Path("results/report"),
        "--out",
        "-o",
        callback=writable_folder,
        help="Folder for report.html, report.md and figures/.",
    ),
    kernel: Optional[Path] = typer.Option(
        None, "--kernel", callback=_kernel, help="Kernel profile CSV (from `gumbench profile-kernel`) to draw."
    ),
) -> None:
    """Draw an HTML report (figures embedded) and a Markdown summary from stored results."""
    from gumbench.benchmarks.sweep.report import build_report

    html_path, md_path = build_report(list(runs), out, kernel_csv=kernel)
    typer.echo(f"report: {html_path} and {md_path}")


def rungs_command(
    run: Path = typer.Argument(..., help="A sweep run folder (<out>/<name>-<config hash>-<code hash>)."),
    output: Path = typer.Option(..., "--output", "-o", callback=writable_file, help="CSV of the evaluation rows."),
) -> None:
    """Export the evaluation rows a sweep run has reached, from finished units and from checkpoints of unfinished
    ones (a budget ladder's rungs of a run still training)."""
    from gumbench.benchmarks.sweep.rungs import rung_rows
    from gumbench.files import write_csv

    frame = rung_rows(run)
    write_csv(frame, output)
    reached = frame.groupby("unit_id")["reached"].first() if len(frame) else frame["reached"]
    typer.echo(f"{output}: {len(frame)} rows of {len(reached)} units (steps reached: "
               f"{', '.join(f'{int(s):,}' for s in sorted(reached)) or 'none'})")


# every command, in the order of `gumbench --help`
COMMANDS = (
    ("list", list_command),
    ("gradstats", toys.gradstats_command),
    ("optimize", toys.optimize_command),
    ("train", training.train_command),
    ("sweep", sweep_command),
    ("report", report_command),
    ("rungs", rungs_command),
    ("explain", studies.explain_command),
    ("elbo-study", studies.elbo_study_command),
    ("speech-study", studies.speech_study_command),
    ("profile-kernel", kernel.profile_kernel_command),
    ("audit-kernel", kernel.audit_kernel_command),
)
for _name, _command in COMMANDS:
    app.command(_name)(_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point. Bad input prints one line ``gumbench: error: ...`` and exits 2; an unexpected
    internal error prints one line with a hint and exits 1; ``--debug`` adds the traceback."""

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="gumbench", standalone_mode=False)
    except GumbenchError as exc:
        return _fail(f"error: {exc}", 2, debug)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, debug)
    except MemoryError:
        return _fail("error: out of memory; use smaller sizes (samples, batch, steps)", 2, debug)
    except Exception as exc:
        # typer's vendored Click raises UsageError/BadParameter (with exit_code and format_message).
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            return _fail(f"error: {exc.format_message()}", int(exc.exit_code), debug)
        if isinstance(exc, OSError) and exc.filename is not None:  # a file the user named or the system refused
            return _fail(f"error: {exc.filename}: {exc.strerror or exc}", 2, debug)
        detail = " ".join(str(exc).split())[:300]
        return _fail(f"internal error: {type(exc).__name__}: {detail} (rerun with --debug for the traceback)", 1, debug)
    return result if isinstance(result, int) else 0


def _fail(message: str, code: int, debug: bool) -> int:
    import traceback

    if debug:
        traceback.print_exc()
    typer.echo(f"gumbench: {message}", err=True)
    return code


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
