"""The ``gumbench`` command: a thin typer shell over library functions.

Heavy modules (torch, scipy, pandas) are imported inside the commands so that
``gumbench --help`` answers fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from gumbench.errors import GumbenchError
from gumbench.threads import torch_threads, use_threads

app = typer.Typer(
    help="gumbench: measure gradient estimators through discrete choices (bias, variance, cosine to the exact gradient).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

LIST_KINDS = ("estimators", "tasks", "training")


def _file(value: Optional[Path]) -> Optional[Path]:
    """An output file option, checked before the command's work starts."""
    if value is None:
        return None
    from gumbench.files import check_writable

    return check_writable(value)


def _kernel(value: Optional[Path]) -> Optional[Path]:
    """A kernel profile CSV option, read and checked before the command's work starts."""
    if value is not None:
        from gumbench.benchmarks.sweep.report import read_kernel_profile

        read_kernel_profile(value)
    return value


def _folder(value: Optional[Path]) -> Optional[Path]:
    """An output folder option, checked before the command's work starts."""
    from gumbench.files import check_writable

    return None if value is None else check_writable(value, folder=True)


# --threads, else $GUMBENCH_THREADS, else 1: checked before a command's work starts, applied in it
THREADS = typer.Option(None, "--threads", callback=torch_threads, show_default=False,
                       help="Torch threads per process (per worker in a sweep); default: $GUMBENCH_THREADS, else 1.")
MAX_MEMORY = typer.Option(None, "--max-memory", show_default=False,
                          help="Refuse, before it starts, a run whose estimated peak memory exceeds this size "
                               "(like 8G or 512M); default: $GUMBENCH_MAX_MEMORY, else half the memory available.")
DATA_DIR_HELP = ("Folder of the four IDX files (train/t10k images and labels, gzipped or not) for fashion-vae "
                 "(default: /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist).")


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


@app.command("list")
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
        second = {"estimators": "family", "tasks": "formula", "training": "default steps"}[k]
        columns = ("name", second, "parameters (defaults)", "description")
        typer.echo(render(k, columns, describe(k), text=columns[1:]))  # all but the name is prose that may wrap


@app.command("gradstats")
def gradstats_command(
    task: str = typer.Option(
        "categorical", "--task", "-t", help="Toy task, e.g. 'categorical[loss=linear]' (see `gumbench list tasks`)."
    ),
    estimator: Optional[List[str]] = typer.Option(
        None,
        "--estimator",
        "-e",
        help="Estimator name, repeatable; default: every non-VQ estimator (see `gumbench list estimators`).",
    ),
    tau: Optional[float] = typer.Option(None, "--tau", help="Temperature, applied to every estimator that has one."),
    samples: int = typer.Option(10_000, "--samples", "-s", help="Independent gradient estimates per estimator."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the estimator noise (the task's own seed is a task parameter)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON with every field instead of a table."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", callback=_file, help="Also write the JSON to this file."
    ),
    threads: int = THREADS,
    max_memory: Optional[str] = MAX_MEMORY,
) -> None:
    """Gradient statistics against the exact gradient (by enumeration) on a toy task."""
    from gumbench.benchmarks.gradstats import gradstats_table, run_gradstats
    from gumbench.footprint import use_limit

    use_threads(threads)
    with use_limit(max_memory) as limit:
        results = run_gradstats(task, estimator or None, tau=tau, samples=samples, seed=seed, max_memory=limit)
    payload = [r.to_dict() | {"task": results.task} for r in results.statistics]
    if output is not None:
        from gumbench.files import write_json

        write_json(output, payload, indent=1)
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        typer.echo(gradstats_table(results))


@app.command("optimize")
def optimize_command(
    task: str = typer.Option("polynomial[L=128]", "--task", "-t", help="Toy task whose logits are optimized."),
    estimator: Optional[List[str]] = typer.Option(
        None, "--estimator", "-e", help="Estimator, repeatable; default: every non-VQ estimator."
    ),
    steps: int = typer.Option(200, "--steps", help="Optimizer steps."),
    lr: float = typer.Option(0.1, "--lr", help="Adam learning rate."),
    batch: int = typer.Option(16, "--batch", help="Samples (estimates) averaged per step."),
    seed: int = typer.Option(0, "--seed"),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", callback=_file, help="Write the per-step losses as CSV."
    ),
    threads: int = THREADS,
) -> None:
    """Minimize the expected loss of a toy by gradient descent with each estimator; print the final exact losses."""
    from gumbench.benchmarks.optimize import optimize_many
    from gumbench.tables import render

    use_threads(threads)
    frame = optimize_many(task, estimator or None, steps=steps, lr=lr, batch=batch, seed=seed)
    if output is not None:
        from gumbench.files import write_csv

        write_csv(frame, output)
    rows = []
    for _, part in frame.groupby("estimator", sort=False):
        exact = part["expected_loss"]
        rows.append((part["label"].iloc[0], f"{exact.iloc[0]:.5f}", f"{exact.iloc[-1]:.5f}", f"{exact.min():.5f}"))
    typer.echo(
        render(
            f"{frame['task'].iloc[0]}: exact expected loss, {steps} steps",
            ("estimator", "start", "final", "best"),
            rows,
        )
    )


@app.command("train")
def train_command(
    task: str = typer.Option("gmm-vq", "--task", "-t", help="Training task (see `gumbench list training`)."),
    estimator: Optional[List[str]] = typer.Option(
        None, "--estimator", "-e", help="Estimator, repeatable; default: st-gumbel and vq-commitment."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: the task's)."),
    seed: int = typer.Option(0, "--seed"),
    eval_every: int = typer.Option(25, "--eval-every", help="Evaluate every N steps (and at the last step)."),
    audio_dir: Optional[Path] = typer.Option(
        None, "--audio-dir", help="Folder of WAV/FLAC for the speech tasks (default: the vendored corpus)."
    ),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", callback=_file, help="Write the per-step rows as CSV."
    ),
    threads: int = THREADS,
    max_memory: Optional[str] = MAX_MEMORY,
) -> None:
    """Train a model with a discrete bottleneck; per-step loss terms, utilization, gradient norms, time."""
    import pandas as pd

    from gumbench.benchmarks.training import make_training_task, train
    from gumbench.estimators import make_estimator
    from gumbench.registry import parse_spec
    from gumbench.tables import render

    use_threads(threads)
    spec = parse_spec(task)
    if audio_dir is not None:
        spec.params["audio_dir"] = str(audio_dir)
    if data_dir is not None:
        spec.params["data_dir"] = str(data_dir)
    built_task = make_training_task(spec)
    built = [make_estimator(e) for e in (estimator or ["st-gumbel", "vq-commitment"])]
    from gumbench.footprint import check_training, use_limit

    with use_limit(max_memory) as limit:
        check_training(built_task, built, limit)  # refused before the first run starts
        frame = pd.concat(
            [train(built_task, est, steps=steps, seed=seed, eval_every=eval_every) for est in built], ignore_index=True
        )
    if output is not None:
        from gumbench.files import write_csv

        write_csv(frame, output)
    columns = [
        "loss",
        "code_perplexity",
        "used_fraction",
        "dead_codes",
        "eval_code_perplexity",
        "eval_purity",
        "eval_nmi",
        "eval_negative_elbo",
        "eval_nll_iw",
        "eval_collapse",
        "step_seconds",
    ]
    columns = [c for c in columns if c in frame]
    rows = []
    for _, part in frame.groupby("estimator", sort=False):
        last = part.dropna(axis=1, how="all").iloc[-1]
        values = [part["step_seconds"].sum() if c == "step_seconds" else last.get(c) for c in columns]
        rows.append((part["label"].iloc[0], *("-" if v is None else f"{v:.3g}" for v in values)))
    headers = ["estimator", *(c if c != "step_seconds" else "total seconds" for c in columns)]
    typer.echo(render(f"{built_task.spec}: last step of {int(frame['step'].max())}", headers, rows))
    for (label, trained), _ in frame.groupby(["label", "task"], sort=False):
        if trained != built_task.spec:  # a quantizer with an implicit code space sized the bottleneck
            typer.echo(f"{label} sized the bottleneck from its code space: {trained}")


@app.command("sweep")
def sweep_command(
    config: Optional[Path] = typer.Argument(
        None, help="TOML or YAML sweep config; default: the built-in default sweep."
    ),
    out: Path = typer.Option(
        Path("runs"), "--out", callback=_folder, help="Folder of runs; each run gets <name>-<config hash>-<code hash>/."
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
) -> None:
    """Run or resume a sweep (tasks x estimators x parameters x seeds); results as parquet, then a report."""
    from gumbench.benchmarks.sweep import apply_overrides, load_config, run_sweep
    from gumbench.footprint import use_limit

    resolved = apply_overrides(load_config(config), name=name, repetitions=repetitions, base_seed=base_seed,
                               samples=samples, steps=steps, estimators=estimator)
    with use_limit(max_memory) as limit:  # workers inherit the limit
        run = run_sweep(resolved, out=out, backend=backend, jobs=jobs, scheduler=scheduler, slurm_partition=partition,
                        slurm_time=time_limit, threads=threads, connect_timeout=connect_timeout, max_memory=limit)
    typer.echo(f"results: {run.results}")
    from gumbench.benchmarks.sweep.report import build_report, question

    if report:
        html_path, md_path = build_report(run, run.folder, kernel_csv=kernel)
        typer.echo(f"report: {html_path} and {md_path}")
    from gumbench.benchmarks.sweep.verdict import compare, outcomes, verdict
    from gumbench.tables import render

    answers = verdict(compare(outcomes(run.frame())))
    rows = [(question(r), r["measure"], "; ".join(r["best"]) or "no healthy result", "; ".join(r["warnings"]))
            for r in answers.to_dict("records")]
    typer.echo(render("verdict (lower is better): the best, then those tied with it; warnings name degenerate results",
                      ("question", "measure", "best", "warnings"), rows, text=("best", "warnings")))


@app.command("report")
def report_command(
    runs: List[Path] = typer.Argument(..., help="Run folders or results.parquet files."),
    out: Path = typer.Option(
        Path("results/report"), "--out", "-o", callback=_folder, help="Folder for report.html, report.md and figures/."
    ),
    kernel: Optional[Path] = typer.Option(
        None, "--kernel", callback=_kernel, help="Kernel profile CSV (from `gumbench profile-kernel`) to draw."
    ),
) -> None:
    """Draw an HTML report (figures embedded) and a Markdown summary from stored results."""
    from gumbench.benchmarks.sweep.report import build_report

    html_path, md_path = build_report(list(runs), out, kernel_csv=kernel)
    typer.echo(f"report: {html_path} and {md_path}")


@app.command("explain")
def explain_command(
    variant: str = typer.Option("both", "--variant", help="wav2vec2, vq-wav2vec (the tasks of those names) or both."),
    audio_dir: Optional[Path] = typer.Option(
        None, "--audio-dir", help="Folder of WAV/FLAC (default: the vendored speech)."
    ),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    threads: int = THREADS,
) -> None:
    """How do wav2vec 2.0's and vq-wav2vec's Gumbel quantizers backpropagate? Answers, then proofs from one training step on real speech."""
    from gumbench.benchmarks.studies.explain import explain, format_explanation

    use_threads(threads)
    result = explain(audio_dir=None if audio_dir is None else str(audio_dir), seed=seed, variant=variant)
    typer.echo(json.dumps(result, indent=1) if as_json else format_explanation(result))


MAX_CHECKPOINTS, MAX_CHECKPOINT_STEP = 20, 100_000


def _steps(text: str) -> tuple[int, ...]:
    """'0,150,300' -> (0, 150, 300)."""
    try:
        if not text.isascii():  # numbers are written in ASCII digits (gumbench.registry.parse_number)
            raise ValueError(text)
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise GumbenchError(f"--checkpoints takes steps separated by commas, like 0,150,300; got {text!r}") from None
    if (
        min(steps) < 0
        or max(steps) > MAX_CHECKPOINT_STEP
        or len(steps) > MAX_CHECKPOINTS
        or len(set(steps)) < len(steps)
    ):
        raise GumbenchError(
            f"--checkpoints takes at most {MAX_CHECKPOINTS} distinct steps from 0 to {MAX_CHECKPOINT_STEP:,}, "
            f"got {text[:80]!r}"
        )
    return steps


@app.command("elbo-study")
def elbo_study_command(
    estimator: Optional[List[str]] = typer.Option(
        None,
        "--estimator",
        "-e",
        help="Categorical estimator, repeatable; default: the Gumbel family and REINFORCE (EMA, RLOO).",
    ),
    task: str = typer.Option(
        "digits-vae", "--task", "-t", help="digits-vae or fashion-vae (with parameters; at most 65,536 codes)."
    ),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    checkpoints: str = typer.Option(
        "0,150,300", "--checkpoints", help="Training steps at which to measure, comma-separated."
    ),
    points: int = typer.Option(4, "--points", help="Evaluation images per checkpoint."),
    samples: int = typer.Option(4000, "--samples", "-s", help="Estimates per image."),
    seed: int = typer.Option(0, "--seed"),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", callback=_file, help="Write OUT.csv (rows) and OUT.txt (the table)."
    ),
    threads: int = THREADS,
) -> None:
    """Gradient accuracy inside a trained categorical VAE (digits, or Fashion-MNIST): each estimator against the enumerated ELBO gradient."""
    from gumbench.benchmarks.studies import elbo_study, format_elbo_study, save_study
    from gumbench.benchmarks.studies.elbo import DEFAULT_ESTIMATORS
    from gumbench.benchmarks.training import make_training_task
    from gumbench.registry import parse_spec

    use_threads(threads)
    spec = parse_spec(task)
    if data_dir is not None:
        spec.params["data_dir"] = str(data_dir)
    built_task = make_training_task(spec)
    frame = elbo_study(
        estimator or DEFAULT_ESTIMATORS,
        task=built_task,
        checkpoints=_steps(checkpoints),
        points=points,
        samples=samples,
        seed=seed,
    )
    text = format_elbo_study(frame)
    typer.echo(text)
    if output is not None:
        save_study(output, frame, text)


@app.command("speech-study")
def speech_study_command(
    task: str = typer.Option("wav2vec2", "--task", "-t", help="wav2vec2 or logmel-vqvae (with parameters)."),
    estimator: Optional[List[str]] = typer.Option(
        None,
        "--estimator",
        "-e",
        help="Categorical estimator, repeatable; default: st-gumbel, soft-gumbel, straight-through, RLOO.",
    ),
    trained_with: str = typer.Option("st-gumbel", "--trained-with", help="Estimator the model is trained with."),
    checkpoints: str = typer.Option(
        "0,150,300", "--checkpoints", help="Training steps at which to measure, comma-separated."
    ),
    crops: int = typer.Option(2, "--crops", help="Evaluation crops in the frozen batch."),
    samples: int = typer.Option(2000, "--samples", "-s", help="Estimates per estimator."),
    reference_samples: int = typer.Option(
        8000, "--reference-samples", help="Estimates averaged into the sampled reference."
    ),
    seed: int = typer.Option(0, "--seed"),
    output: Optional[Path] = typer.Option(
        None,
        "--output",
        "-o",
        callback=_file,
        help="Write OUT.csv, OUT.txt and OUT.json (settings, wall time, threads).",
    ),
    threads: int = THREADS,
) -> None:
    """Bias and variance of estimators at a speech quantizer's logits, at checkpoints of training."""
    import time

    from gumbench.benchmarks.studies import format_study, quantizer_gradient_study, save_study
    from gumbench.benchmarks.studies.speech_quantizers import DEFAULT_ESTIMATORS

    use_threads(threads)
    start = time.perf_counter()
    estimators = tuple(estimator or DEFAULT_ESTIMATORS)
    frame = quantizer_gradient_study(
        task,
        estimators,
        trained_with=trained_with,
        checkpoints=_steps(checkpoints),
        crops=crops,
        samples=samples,
        reference_samples=reference_samples,
        seed=seed,
    )
    text = format_study(frame)
    typer.echo(text)
    if output is not None:
        settings = {
            "task": task,
            "estimator": list(estimator) if estimator else None,
            "trained_with": trained_with,
            "checkpoints": checkpoints,
            "crops": crops,
            "samples": samples,
            "reference_samples": reference_samples,
            "seed": seed,
            "out": str(output),
        }
        save_study(output, frame, text, {"settings": settings, "wall_seconds": time.perf_counter() - start,
                                         "torch_threads": threads})


@app.command("profile-kernel")
def profile_kernel_command(
    out: Path = typer.Option(
        Path("results/kernel"), "--out", "-o", callback=_folder, help="Folder for the CSV and figures."
    ),
    quick: bool = typer.Option(False, "--quick", help="A few sizes only (a smoke run)."),
    provider: Optional[List[str]] = typer.Option(
        None, "--provider", help="Only this provider, repeatable (default: all)."
    ),
    mode: Optional[List[str]] = typer.Option(
        None, "--mode", help="forward, backward or full, repeatable (default: all)."
    ),
) -> None:
    """Profile the fused Gumbel-softmax kernel against eager, torch.compile and fairseq's call (needs a CUDA GPU)."""
    from gumbench.benchmarks.kernel_profile import MODES, profile_kernel

    result = profile_kernel(
        out_dir=str(out),
        quick=quick,
        providers=tuple(provider) if provider else None,
        modes=tuple(mode) if mode else MODES,
    )
    typer.echo(f"profile: {result}")


@app.command("audit-kernel")
def audit_kernel_command(
    check: bool = typer.Option(
        False, "--check", help="Compile every kernel variant for each --archs; exit 1 if one fails."
    ),
    archs: List[int] = typer.Option(
        [80, 90], "--archs", help="Compute capability to compile for, repeatable (default: 80 and 90)."
    ),
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="Parallel compiles (default: the CPU count)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", callback=_folder, help="Write the sm_90 SASS and byte tables (ptx_audit.csv/.md) here."
    ),
) -> int:
    """Compile the fused kernels for real GPUs on the CPU (no GPU needed); run without TRITON_INTERPRET."""
    if not check and out is None:
        raise GumbenchError("nothing to do: pass --check, --out DIR or both")
    from gumbench.benchmarks.kernel_audit import run_audit

    status, lines = run_audit(check=check, archs=tuple(archs), jobs=jobs, out=out)
    for line in lines:
        typer.echo(line.text, err=line.error)
    return status


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
