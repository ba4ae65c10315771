"""Blocks on the speech tasks, the speech gradient study and the explain study."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from docgen.common import between, cell, claim, decimals, interval, percent, prose, results, table
from gumbench.benchmarks.gradstats import format_number
from gumbench.registry import parse_spec

# --- speech -------------------------------------------------------------------------------------

def speech_corpus(root: Path) -> str:
    from gumbench.benchmarks.audio import SAMPLE_RATE, load_corpus, split_corpus

    folder = root / "gumbench" / "data" / "speech"
    utterances = load_corpus(folder)
    train, held = split_corpus(utterances)
    first, second = (utterances.index(u) + 1 for u in held[:2])
    seconds = lambda us: f"{sum(len(u.wave) for u in us) / SAMPLE_RATE:.1f} s"  # noqa: E731
    size = sum(p.stat().st_size for p in folder.rglob("*.flac")) / 1e6
    return prose(
        f"The folder holds {len(utterances)} prompts, {seconds(utterances)} in all ({size:.1f} MB of FLAC). Every "
        f"{second - first}th utterance in sorted path order, from number {first}, is held out for evaluation: "
        f"{len(train)} utterances ({seconds(train)}) train, {len(held)} ({seconds(held)}) evaluate."
    )


def last20(frame: pd.DataFrame, column: str) -> float:
    return frame.sort_values("step")[column].tail(20).mean()


def speech_fairseq_values(root: Path) -> str:
    fairseq = results(root, "speech/training-wav2vec2-fairseq-values.csv")
    default = results(root, "speech/training-wav2vec2.csv").query("label == 'st-gumbel'")
    f, d = (parse_spec(run.task.iloc[0]).params for run in (fairseq, default))
    chance = f["negatives"] + 1
    claim(
        abs(last20(fairseq, "loss_contrastive") - math.log(chance)) < 0.05, "fairseq's values leave the loss at chance"
    )
    penalty = fairseq.set_index("step").loss_feature_penalty
    shrinking = ", ".join(f"{format_number(penalty[step])} at step {step}" for step in (1, 50, penalty.index.max()))
    return prose(
        f"Where the defaults differ from fairseq's base model, and why "
        f"(`results/speech/training-wav2vec2-fairseq-values.csv` against the `st-gumbel` run of "
        f"`training-wav2vec2.csv`, {fairseq.step.max()} steps from seed {fairseq.seed.iloc[0]}; averages over the "
        f"last 20 steps): with fairseq's masking (p = {f['mask_prob']}, spans of {f['mask_length']} frames) on "
        f"{f['crop']} s "
        f"crops and its feature penalty weight {f['feature_penalty']}, the contrastive loss stays at chance "
        f"({last20(fairseq, 'loss_contrastive'):.3f}; log {chance} = {math.log(chance):.3f}) and so does the training "
        f"accuracy ({last20(fairseq, 'loss_accuracy'):.3f}; 1/{chance} = {1 / chance:.3f}): the penalty shrinks the "
        f"encoder's output (mean square {shrinking}). The defaults are spans of {d['mask_length']} frames, "
        f"p = {d['mask_prob']} and weight {d['feature_penalty']}: contrastive loss "
        f"{last20(default, 'loss_contrastive'):.2f}, accuracy {last20(default, 'loss_accuracy'):.2f}. "
        f"`feature_penalty={f['feature_penalty']},mask_length={f['mask_length']},mask_prob={f['mask_prob']}` brings "
        f"fairseq's values back."
    )


def speech_training_table(root: Path) -> str:
    summary = results(root, "speech/training-summary.csv")
    runs = [
        results(root, f"speech/training-{name}.csv")
        for name in ("wav2vec2", "wav2vec2-variant-vq-wav2vec", "logmel-vqvae")
    ]
    steps, seeds = {run.step.max() for run in runs}, {seed for run in runs for seed in run.seed.unique()}
    claim(len(steps) == len(seeds) == 1, "every run has the same length and seed")
    rows = [
        [
            r.task,
            r.estimator,
            cell(r.loss_contrastive_last20 if pd.notna(r.loss_contrastive_last20) else r.loss_reconstruction_last20),
            cell(r.loss_accuracy_last20),
            cell(r.loss_identical_distractors_last20),
            cell(r.code_perplexity_last20),
            cell(r.dead_codes),
        ]
        for r in summary.itertuples()
    ]
    # runs recorded before training rows split code_perplexity (noiseless argmax) from sampled_code_perplexity
    # carry the sampled codes' perplexity under the old name
    legacy = any("sampled_code_perplexity" not in run for run in runs)
    which = (
        (
            " of the codes the forward pass used (these runs predate the split of the training rows' "
            "`code_perplexity`, now the noiseless argmax's, from `sampled_code_perplexity`)"
        )
        if legacy
        else " of the noiseless argmax(logits)"
    )
    return (
        prose(
            f"{steps.pop()} steps from seed {seeds.pop()} (`results/speech/training-*.csv`, summary in "
            f"`training-summary.csv`); the last columns average the last 20 steps; code perplexity is summed over "
            f"groups (at most G x V){which}:"
        )
        + "\n\n"
        + table(
            [
                "task",
                "estimator",
                "contrastive / reconstruction",
                "accuracy",
                "identical distractors",
                "code perplexity (sampled)" if legacy else "code perplexity",
                "dead codes",
            ],
            rows,
        )
    )


def speech_collapse(root: Path) -> str:
    frame = results(root, "speech/training-wav2vec2.csv")
    run = frame[frame.label == "reinforce[baseline=loo]"]
    params = parse_spec(run.task.iloc[0]).params
    collapsed = run[run.code_perplexity <= params["groups"] + 1e-6]
    tail = run.sort_values("step").tail(20)
    identical = last20(run, "loss_identical_distractors")
    claim(identical > 0.99, "nearly every distractor equals its positive at the end")
    steps = "every one" if (tail.code_perplexity <= params["groups"] + 1e-6).all() else \
        f"{int((tail.code_perplexity <= params['groups'] + 1e-6).sum())}"
    return prose(
        f"REINFORCE with per-frame credit collapses wav2vec2's quantizer to one code per group (code "
        f"perplexity {params['groups']}, first at step {int(collapsed.step.min())}; {len(collapsed)} of the "
        f"{len(run)} steps in all, {steps} of the last 20): a collapsed step's distractors equal their positive and "
        f"are excluded ({identical:.2%} of them over the last 20 steps), so the loss reads "
        f"{format_number(last20(run, 'loss_contrastive'))} and the accuracy "
        f"{format_number(last20(run, 'loss_accuracy'))}. That is the degenerate optimum of the objective, "
        f"which the diversity term at weight {params['diversity']} does not prevent here; read "
        f"`identical_distractors` beside the accuracy."
    )


def speech_study(root: Path) -> pd.DataFrame:
    return pd.concat(
        [results(root, f"speech/gradients-{task}.csv") for task in ("wav2vec2", "logmel-vqvae")], ignore_index=True
    )


def speech_reference_error(root: Path) -> str:
    ref = results(root, "speech/gradients-wav2vec2.csv").query("role == 'reference'")
    steps = list(ref.groupby("step"))
    error = [f"**{between(100 * part.reference_relative_error, decimals(1), '%')}** at step {step}"
             for step, part in steps]
    return prose(f"For wav2vec2 the reference's error bar is {', '.join(error[:-1])} and {error[-1]} of its norm "
                 f"over the {ref.instance.nunique()} instances (95% upper bounds "
                 f"{', '.join(between(100 * p.reference_relative_error_high, decimals(1), '%') for _, p in steps)}).")


def speech_study_table(root: Path) -> str:
    from gumbench.benchmarks.studies.instances import orderings, summarize

    study = speech_study(root)
    estimates = study[study.role == "estimator"]
    columns = ["relative_bias", "relative_std", "relative_mse", "cosine"]
    summary = summarize(estimates, ["task", "step", "label"], columns)
    rows, seen = [], set()
    for r in summary.to_dict("records"):
        first = (r["task"], r["step"]) not in seen
        seen.add((r["task"], r["step"]))
        rows.append([f"{r['task']}, {r['step']}" if first else "", r["label"],
                     *(interval(r, c) for c in columns)])
    shapes = "; ".join(f"{task}: {between(g.rows, decimals(0))} groups x {int(g.categories.iloc[0])} codes"
                       for task, g in study.groupby("task", sort=False))
    settings = results(root, "speech/gradients-wav2vec2.json")["settings"]
    ordered = orderings(estimates, ["task", "step"])
    partial = ordered[ordered.wins < ordered.instances]
    exceptions = "; ".join(f"{r.task} at step {r.step}: `{r.better}` < `{r.worse}` on {r.wins} of {r.instances}"
                           for r in partial.itertuples()) or "none"
    n = estimates.instance.nunique()
    return (
        prose(
            f"{n} instances (models trained from seeds {settings['seed']}-{settings['seed'] + n - 1}, each with "
            f"{settings['crops']} evaluation crop{'s' if settings['crops'] > 1 else ''} of its own: {shapes}), "
            f"{settings['samples']:,} estimates per estimator "
            f"and instance; means over instances with 95% t intervals over instances (bias arithmetic, clipped at "
            f"0; std and MSE geometric means; cosine Fisher z):"
        )
        + "\n\n"
        + table(["task, step", "estimator", "bias / ‖ref‖", "std / ‖ref‖", "MSE / ‖ref‖²", "cosine"], rows)
        + "\n\n"
        + prose(f"Ranked by relative MSE, each estimator against the next: {len(ordered) - len(partial)} of the "
                f"{len(ordered)} orderings hold on every instance; those that do not: {exceptions}.")
    )


def wav2vec2_study(root: Path) -> dict:
    study = results(root, "speech/gradients-wav2vec2.csv")
    estimates, reference = study[study.role == "estimator"], study[study.role == "reference"]
    relaxed = estimates[~estimates.label.str.startswith("reinforce")]
    st, rloo = (
        relaxed[relaxed.label.str.startswith("st-gumbel")],
        estimates[estimates.label.str.startswith("reinforce")],
    )
    error = reference.reference_relative_error
    claim((relaxed.relative_bias_low > 3 * error.max()).all(),
          "on every instance the relaxations' bias is far above the error bar")
    reached = int((rloo.relative_bias_low <= rloo.reference_relative_error).sum())
    return {"bias": between(st.relative_bias, percent, "%"), "cosine": between(st.cosine, decimals(2)),
            "error": between(100 * error, decimals(1), "%"), "rloo_std": between(rloo.relative_std, decimals(0), "x"),
            "relaxed_std": between(relaxed.relative_std, decimals(1), "x"),
            "samples": parse_spec(rloo.estimator.iloc[0]).params["samples"],
            "instances": study.instance.nunique(), "steps": study.step.nunique(),
            "rloo_reached": f"{reached} of {len(rloo)}"}


def headline_speech(root: Path) -> str:
    n = wav2vec2_study(root)
    return prose(
        f"Inside wav2vec 2.0's quantizer, trained on real speech, the straight-through Gumbel gradient of "
        f"the contrastive loss is off by {n['bias']} of the true gradient's norm at a cosine of {n['cosine']} "
        f"(on every one of {n['instances']} instances at {n['steps']} checkpoints), "
        f"far above the {n['error']} error bar of the many-sample reference; REINFORCE with RLOO is unbiased "
        f"there but its per-estimate standard deviation is {n['rloo_std']} the gradient's norm "
        f"(`results/speech/gradients-wav2vec2.csv`; [docs/speech.md](docs/speech.md)).",
        bullet=True,
    )


def speech_finding(root: Path) -> str:
    n = wav2vec2_study(root)
    return prose(
        f"Inside wav2vec 2.0's quantizer the straight-through Gumbel gradient of the contrastive loss "
        f"is off by {n['bias']} of the true gradient's norm, at a cosine of {n['cosine']} ({n['instances']} "
        f"instances at {n['steps']} checkpoints; on every one the relaxations' bias is resolved far above the "
        f"reference's {n['error']} error bar); REINFORCE with {n['samples']} RLOO samples is unbiased (its bias "
        f"interval reaches the reference's error in {n['rloo_reached']} measurements) but its per-estimate "
        f"standard deviation "
        f"is {n['rloo_std']} the gradient's norm, against {n['relaxed_std']} for the relaxations."
    )


def explain_step(root: Path) -> str:
    """`gumbench explain`'s text, rendered from the committed JSON: answers first, then the proofs."""
    from gumbench.benchmarks.studies.explain import format_explanation

    report = results(root, "speech/explain.json")
    claim(set(report["variants"]) == {"wav2vec2", "vq-wav2vec"}, "both architectures are explained")
    for name, variant in report["variants"].items():
        for key, answer in variant["answers"].items():
            claim(answer["holds"], f"{name}'s answer to {key} is supported by its measurement")
    caption = prose(
        f"`results/speech/explain.json`, from `gumbench explain --json` (step 1 from seed {report['seed']} on the "
        f"{report['audio']}); the text below is `gumbench explain` rendered from it at 100 columns:"
    )
    return f"{caption}\n\n```text\n{format_explanation(report, width=100)}\n```"


def vq_wav2vec_training(root: Path) -> str:
    """The committed vq-wav2vec runs: per variant, over its seeds, the last evaluation's accuracy against chance,
    the noiseless codes in use and whether it learns (:func:`gumbench.benchmarks.training.learning.learning_check`)."""
    from gumbench.benchmarks.training.learning import GRADIENT_PATH_ONLY, learning_check
    from gumbench.benchmarks.training.speech import EVAL_CROPS

    frame = results(root, "speech/training-vq-wav2vec.csv")
    timings = results(root, "speech/training-vq-wav2vec.timings.json")
    task = parse_spec(frame.task.iloc[0]).params
    claim(frame.task.nunique() == 1, "every run has the same task settings")
    codes = int(task["groups"]) * int(task["codes"])
    check = learning_check(frame, int(task["negatives"]), codes)
    seeds = sorted(int(s) for s in frame.seed.unique())
    claim(set(check.runs) == {len(seeds)}, "every variant ran from every seed")
    rows = [[f"`{r.label}`", interval(r._asdict(), "eval_accuracy"), f"{r.above_chance_runs} of {r.runs}",
             f"{cell(r.code_perplexity)} (min {cell(r.code_perplexity_min)})", cell(r.used_codes),
             cell(r.identical_distractors), "learns" if r.learns else GRADIENT_PATH_ONLY] for r in check.itertuples()]
    walls = [run["wall_seconds"] for run in timings["runs"]]
    chance = check.chance.iloc[0]
    caption = prose(
        f"`results/speech/training-vq-wav2vec.csv`: {int(frame.step.max())} steps from each of seeds "
        f"{seeds[0]}-{seeds[-1]} ({len(seeds)} independent runs per variant; a run is the training instance) with "
        f"the task's defaults: predictions from k = {task['offset']} to {task['offset'] + task['steps_ahead'] - 1} "
        f"frames ahead, the {task['lr_schedule']} learning rate (peak {format_number(frame['lr'].max())}, "
        f"{task['warmup']} warm-up steps), the {task['tau_schedule']} temperature schedule, the k-means projection "
        f"`{task['kmeans_projection']}`. One run took {format_number(min(walls))}-{format_number(max(walls))} s at "
        f"{timings['torch_threads']} torch thread ({timings['jobs']} at a time on a shared machine; "
        f"`{' '.join(timings['command'])}`, recorded in "
        f"its .timings.json). Per variant, over the runs, at the last evaluation ({EVAL_CROPS} held-out crops, "
        f"noiseless "
        f"codes): the eval accuracy with its 95% t interval over the {len(seeds)} runs, the runs above chance, "
        f"the code perplexity summed over the groups (mean over runs, of at most {codes}), the codes used and "
        f"the share of distractors identical to their positive:"
    )
    header = ["estimator", "eval accuracy [95% CI]", "runs above chance", "code perplexity", "codes used",
              "identical distractors", "verdict"]
    reasons = " ".join(f"`{r.label}` is a {r.reason}." for r in check.itertuples() if not r.learns)
    learned = ", ".join(f"`{r.label}`" for r in check.itertuples() if r.learns) or "none"
    note = prose(
        f"Chance is 1 / (1 + N) = {chance:.4f} for N = {task['negatives']} distractors: scores that cannot tell "
        f"the positive from its distractors rank it first once in N + 1 (a tie counts as a miss). A variant "
        f"learns when its interval lies above chance and no run collapsed (a group's code perplexity <= 2, or at "
        f"least half of the distractors identical to their positive); learned at this budget: {learned}. "
        f"{reasons} The k-means variant's identical share understates its ties: its quantized value is "
        f"z + sg(e - z), which equals the code row e only up to rounding, so its code perplexity is the measure "
        f"of its collapse. A variant that does not learn is left out of every ranking (`learns` False in "
        f"`gumbench.benchmarks.training.learning.learning_check`, with its `reason`); its rows still show the "
        f"gradient paths."
    )
    return f"{caption}\n\n{table(header, rows)}\n\n{note}"
