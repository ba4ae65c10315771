"""``gumbench explain``, ``gumbench elbo-study`` and ``gumbench speech-study``: gradients measured inside trained
models (:mod:`gumbench.benchmarks.studies`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from gumbench.commands.options import DATA_DIR_HELP, THREADS, writable_file
from gumbench.errors import GumbenchError
from gumbench.threads import use_threads

MAX_CHECKPOINTS, MAX_CHECKPOINT_STEP = 20, 100_000


def explain_command(
    variant: str = typer.Option("both", "--variant", help="wav2vec2, vq-wav2vec (the tasks of those names) or both."),
    audio_dir: Optional[Path] = typer.Option(
        None, "--audio-dir", help="Folder of WAV/FLAC (default: the vendored speech)."
    ),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    threads: int = THREADS,
) -> None:
    # one line for `gumbench --help`: the backslash continues the line without a line break
    """How do wav2vec 2.0's and vq-wav2vec's Gumbel quantizers backpropagate? Answers, then proofs from one \
training step on real speech."""
    from gumbench.benchmarks.studies.explain import explain, format_explanation

    use_threads(threads)
    result = explain(audio_dir=None if audio_dir is None else str(audio_dir), seed=seed, variant=variant)
    typer.echo(json.dumps(result, indent=1) if as_json else format_explanation(result))


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
    points: int = typer.Option(4, "--points", help="Evaluation images per checkpoint and instance."),
    samples: int = typer.Option(4000, "--samples", "-s", help="Estimates per image."),
    seed: int = typer.Option(0, "--seed"),
    instances: int = typer.Option(
        5, "--instances", help="Independently seeded problem instances (model trained from seed + r, own images)."
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", callback=writable_file,
        help="Write OUT.csv (rows), OUT.txt (the table) and OUT.json (settings, wall time, threads).",
    ),
    threads: int = THREADS,
) -> None:
    # one line for `gumbench --help`: the backslash continues the line without a line break
    """Gradient accuracy inside a trained categorical VAE (digits, or Fashion-MNIST): each estimator against the \
enumerated ELBO gradient."""
    import time

    from gumbench.benchmarks.studies import elbo_study, format_elbo_study, save_study
    from gumbench.benchmarks.studies.elbo import DEFAULT_ESTIMATORS
    from gumbench.benchmarks.training import make_training_task
    from gumbench.registry import parse_spec

    use_threads(threads)
    start = time.perf_counter()
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
        instances=instances,
    )
    text = format_elbo_study(frame)
    typer.echo(text)
    if output is not None:
        settings = {"task": task, "estimator": list(estimator) if estimator else None, "checkpoints": checkpoints,
                    "points": points, "samples": samples, "seed": seed, "instances": instances, "out": str(output)}
        save_study(output, frame, text, {"settings": settings, "wall_seconds": time.perf_counter() - start,
                                         "torch_threads": threads})


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
    crops: int = typer.Option(1, "--crops", help="Evaluation crops in each instance's frozen batch."),
    samples: int = typer.Option(2000, "--samples", "-s", help="Estimates per estimator."),
    reference_samples: int = typer.Option(
        8000, "--reference-samples", help="Estimates averaged into the sampled reference."
    ),
    seed: int = typer.Option(0, "--seed"),
    instances: int = typer.Option(
        5, "--instances", help="Independently seeded problem instances (model trained from seed + r, own crops)."
    ),
    output: Optional[Path] = typer.Option(
        None,
        "--output",
        "-o",
        callback=writable_file,
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
    frame = quantizer_gradient_study(task, estimators, trained_with=trained_with, checkpoints=_steps(checkpoints),
                                     crops=crops, samples=samples, reference_samples=reference_samples, seed=seed,
                                     instances=instances)
    text = format_study(frame)
    typer.echo(text)
    if output is not None:
        settings = {"task": task, "estimator": list(estimator) if estimator else None, "trained_with": trained_with,
                    "checkpoints": checkpoints, "crops": crops, "samples": samples,
                    "reference_samples": reference_samples, "seed": seed, "instances": instances,
                    "out": str(output)}
        save_study(output, frame, text, {"settings": settings, "wall_seconds": time.perf_counter() - start,
                                         "torch_threads": threads})
