"""Blocks on the quantizers: training findings and gradient statistics on the quantizer problems."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from docgen.common import between, cell, claim, prose, table
from docgen.runs import reference_run
from gumbench.benchmarks.gradstats import format_number
from gumbench.benchmarks.sweep.bits import bits_groups
from gumbench.benchmarks.training.bits import bits_text
from gumbench.registry import parse_spec

QUANTIZERS = ("fsq", "lfq", "bsq", "residual-vq", "simvq", "ibq", "nsvq")


def quantizer_findings(root: Path) -> str:
    """Today's quantizers in the committed reference run: per VQ training task that runs them, the best
    reconstruction (the verdict's), each estimator's final code usage and its collapsed seeds."""
    run = reference_run(root)
    usage, seeds, compared = final_training_metrics(run)
    tasks = [t for t in usage.index.get_level_values(0).unique()
             if any(label.split("[")[0] in QUANTIZERS for label in usage.loc[t].index)]
    claim(bool(tasks), "the reference run trains today's quantizers")
    rows, findings = [], []
    for task in tasks:
        here = usage.loc[task]
        findings.append(task_finding(task, here, seeds, compared))
        rows += quantizer_rows(task, here, seeds, compared)
    header = ["task", "estimator", "bits per frame", "final eval reconstruction", "eval used fraction", "dead codes",
              "bits used", "collapsed seeds", "verdict (at equal bits per frame)"]
    more = sorted({(task, compared.loc[(task, label), "bits"]) for task in tasks for label in usage.loc[task].index
                   if label == "residual-vq[stages=2]"})
    claim(all(bits > compared.loc[(task, "vq-commitment"), "bits"] for task, bits in more),
          "residual-vq[stages=2] has more bits per frame than vq-commitment on each task")
    return (
        prose(
            f"Today's quantizers in the committed reference run (`{run.relative_to(root)}`), each task's VQ "
            "estimators with their bits per frame (log2 of the code space of a frame, summed over groups and "
            "residual stages: at the task's code count, `residual-vq[stages=2]`'s two books of half the codes have "
            "more bits than one book, `residual-vq[stages=2,split=product]` the same; the verdict column compares "
            "only with the estimators of the task at the same bits per frame, categorical ones included), means "
            "over seeds of the last step: eval reconstruction (lower is better), the share of codes the evaluation "
            "batch uses, codes unused over the last 50 steps, the bits a step's codes carry (effective bits for "
            "implicit codebooks, joint bits of the stages for residual VQ) and the seeds whose code perplexity fell "
            "to 2 or less in some group."
        )
        + "\n\n"
        + table(header, rows)
        + "\n\n"
        + "\n".join(findings)
    )


def final_training_metrics(run: Path) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """The training units of a run at their last step: per (short task, label) the metrics' means over seeds, the
    number of seeds, and the verdict's comparison (its ``standing`` column)."""
    from gumbench.benchmarks.sweep.store import load_results
    from gumbench.benchmarks.sweep.verdict import compare, outcomes, short_task

    frame = load_results([run])
    if "ladder" in frame:  # a budget ladder's units are the same runs evaluated longer: not the budget's
        frame = frame[frame["ladder"].isna()]
    training = frame[frame["kind"] == "training"]
    grouped = outcomes(frame)  # training questions at equal bits per frame ("task @ N bits/frame")
    if "bits" not in grouped or grouped.loc[grouped["kind"] == "training", "bits"].isna().all():
        grouped = bits_groups(grouped.drop(columns=["bits", "rivals"], errors="ignore"), run_bits(frame))
    keys = pd.DataFrame({"short": grouped["task"].str.split(" @ ").str[0], "task": grouped["task"],
                         "label": grouped["label"], "bits": grouped["bits"]}
                        ).drop_duplicates(["task", "label"]).set_index(["task", "label"])
    compared = compare(grouped).query("kind == 'training'").join(keys, on=["task", "label"])
    alone = compared.groupby("task")["label"].transform("size") == 1  # nothing else at its bits: not compared
    compared["standing"] = compared["standing"].where(~alone, "alone at its bits")
    compared = compared.set_index(["short", "label"]).rename_axis(["task", "label"])
    last = training[training["step"] == training.groupby("unit_id")["step"].transform("max")]
    last = last.assign(task=last["task"].map({t: short_task("training", t) for t in last["task"].unique()}))
    usage = last.pivot_table(index=["task", "label"], columns="metric", values="value", aggfunc="mean")
    seeds = last.groupby(["task", "label"])["unit_id"].nunique()
    return usage, seeds, compared


def run_bits(frame) -> pd.Series:
    """Per training unit its bits per frame: the rows' ``bits_per_frame``, or, for a run made before units recorded
    it, what :func:`gumbench.benchmarks.training.bits.bits_per_frame` gives for the unit's task and estimator."""
    from gumbench.benchmarks.sweep.bits import unit_bits
    from gumbench.benchmarks.training import make_training_task
    from gumbench.benchmarks.training.bits import bits_per_frame

    bits = unit_bits(frame)
    units = frame[frame["kind"] == "training"].drop_duplicates("unit_id")
    missing = units[~units["unit_id"].isin(bits.index)]
    tasks = {task: make_training_task(task) for task in missing["task"].unique()}  # each built once
    pairs = {(task, est): bits_per_frame(tasks[task], est) for task, est in set(zip(missing["task"],
                                                                                     missing["estimator"]))}
    computed = pd.Series([pairs[pair] for pair in zip(missing["task"], missing["estimator"])],
                         index=missing["unit_id"], dtype=float)
    return pd.concat([bits, computed])


def task_finding(task: str, here: pd.DataFrame, seeds: pd.Series, compared: pd.DataFrame) -> str:
    """A training task's bullet: its best reconstruction, the estimator using the most codes, and the
    estimators with collapsed seeds."""
    best = [label for label in here.index if compared.loc[(task, label), "standing"] == "best"]
    alive = here["eval_used_fraction"].idxmax()
    fell = [f"`{label}` ({int(round(v * seeds[(task, label)]))} of {seeds[(task, label)]})"
            for label, v in here.get("collapse", here.iloc[:, :0]).items() if v > 0] if "collapse" in here else []
    return prose(
        f"`{task}`: best reconstruction {', '.join(f'`{b}`' for b in best) or 'none healthy'}; most codes "
        f"in use `{alive}` ({here['eval_used_fraction'][alive]:.2f} of them); collapsed: "
        f"{', '.join(fell) or 'none'}.",
        bullet=True,
    )


def quantizer_rows(task: str, here: pd.DataFrame, seeds: pd.Series, compared: pd.DataFrame) -> list[list[str]]:
    """The table rows of a training task's VQ estimators, best reconstruction first."""
    rows = []
    vq_family = [label for label in here.index if label.split("[")[0] in QUANTIZERS + ("vq-commitment",)]
    for label, values in here.loc[vq_family].sort_values("eval_reconstruction").iterrows():
        collapsed = int(round(values.get("collapse", 0) * seeds[(task, label)]))
        bits = values.get("effective_bits", math.nan)
        bits = values.get("joint_bits", math.nan) if bits != bits else bits
        rows.append(
            [
                f"`{task}`",
                f"`{label}`",
                bits_text(compared.loc[(task, label), "bits"]),
                cell(values.get("eval_reconstruction")),
                cell(values.get("eval_used_fraction")),
                cell(values.get("dead_codes")),
                cell(bits),
                f"{collapsed} of {seeds[(task, label)]}",
                compared.loc[(task, label), "standing"],
            ]
        )
    return rows


PROBLEMS = ("vq-distance", "quantizer-smoothed")


def problem_scores(root: Path) -> pd.DataFrame:
    """One row per (quantizer problem, estimator) of the reference run: the problem's parameters, the means over
    seeds of MSE / ||e||^2 (the verdict's measure), relative bias, cosine, the bias interval's lower end, the
    reference's error, and the verdict's standing."""
    from gumbench.benchmarks.sweep.store import load_results
    from gumbench.benchmarks.sweep.verdict import compare, outcomes, short_task

    run = reference_run(root)
    frame = load_results([run])
    rows = frame[(frame["kind"] == "gradstats") & frame["task_name"].isin(PROBLEMS)]
    claim(not rows.empty, "the reference run measures the quantizer problems")
    compared = compare(outcomes(frame[frame["kind"] == "gradstats"])).set_index(["task", "label"])
    wide = rows.pivot_table(
        index=["unit_id", "task", "label"], columns="metric", values="value", aggfunc="first"
    ).reset_index()
    low = rows[rows["metric"] == "relative_bias"].set_index("unit_id")["low"]
    wide["bias_low"] = wide["unit_id"].map(low)
    wide["score"] = wide["mse"] / wide["exact_norm"] ** 2
    columns = ["score", "relative_bias", "cosine", "bias_low", "exact_norm"] + (
        ["reference_error"] if "reference_error" in wide else []
    )
    means = wide.groupby(["task", "label"], sort=False)[columns].agg("mean")
    means["lowest_bias_low"] = wide.groupby(["task", "label"], sort=False)[
        "bias_low"
    ].max()  # the worst seed's lower end
    means["seeds"] = wide.groupby(["task", "label"], sort=False).size()
    means = means.reset_index()
    means["short"] = means["task"].map({t: short_task("gradstats", t) for t in means["task"].unique()})
    keys = list(zip(means["short"], means["label"]))
    means["standing"] = [compared.loc[key, "standing"] for key in keys]
    # the verdict's views: geometric means over the instances at equal loss evaluations (score) and per estimate
    means["score"] = [compared.loc[key, "mean"] for key in keys]
    means["per_estimate"] = [compared.loc[key, "per_estimate_mean"] for key in keys]
    params = means["task"].map(lambda t: parse_spec(t).params)
    for key in ("T", "wrt", "stages", "quantizer", "sigma", "encoder", "loss"):
        means[key] = params.map(lambda p: p.get(key))
    means["problem"] = means["task"].map(lambda t: parse_spec(t).name)
    return means


def score_cell(row) -> str:
    """MSE / ||e||^2 (cosine), the best of its problem in bold."""
    text = (
        f"{format_number(row['score'])} ({format_number(row['cosine']) if row['cosine'] == row['cosine'] else 'n/a'})"
    )
    return f"**{text}**" if row["standing"] == "best" else text


VQ_LABELS = ("vq-commitment", "vq-commitment[rotation=true]", "nsvq", "ibq", "simvq", "diveq", "vqbridge")
def once_per_estimate(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of estimators that evaluate the loss once per estimate (their declared loss evaluations on the
    problems' G = 2 x K = 16 distance logits): not IndeCateR (G x K substitutions), REINFORCE-RLOO (4 draws), the
    unordered set estimator, ReinMax-CV, FOGZO or REBAR."""
    from gumbench.estimators import make_estimator

    once = {label: make_estimator(label).evaluations_per_estimate(2, 16) == 1 for label in frame["label"].unique()}
    return frame[frame["label"].map(once)]


# the relaxations of the categorical draw whose bias intervals the findings check at T >= 0.1
RELAXATIONS = ("st-gumbel", "soft-gumbel", "straight-through", "gumbel-rao", "gst", "reinmax", "zgr",
               "decoupled-st-gumbel")


def estimator_order(labels) -> list[str]:
    """The VQ estimators first (in VQ_LABELS' order), then the categorical ones by name."""
    labels = set(labels)
    return [label for label in VQ_LABELS if label in labels] + sorted(labels - set(VQ_LABELS))


def problem_table(scores: pd.DataFrame, by: str, values: list, heading: str) -> str:
    """Estimators as rows, ``by`` (T or sigma) as columns, MSE / ||e||^2 (cosine) cells."""
    labels = estimator_order(scores["label"])
    rows = []
    for label in labels:
        here = scores[scores["label"] == label].set_index(by)
        rows.append([f"`{label}`"] + [score_cell(here.loc[v]) if v in here.index else "" for v in values])
    return table([heading] + [f"{by} = {format_number(v)}" for v in values], rows)


def problem_frames(scores: pd.DataFrame) -> SimpleNamespace:
    """The reference run's quantizer-problem scores cut the ways the findings read them."""
    distance = scores[scores["problem"] == "vq-distance"]
    default_model = (distance["encoder"] == "linear") & (distance["loss"] == "quadratic")
    one = distance[default_model & (distance["stages"] == 1)]
    two = distance[default_model & (distance["stages"] == 2)]
    z, book = one[one["wrt"] == "z"], one[one["wrt"] == "codebook"]
    smooth = scores[scores["problem"] == "quantizer-smoothed"]
    return SimpleNamespace(
        one=one,
        two=two,
        other=distance[~default_model],
        smooth=smooth,
        z=z,
        book=book,
        temps=sorted(z["T"].unique(), reverse=True),
        two_temps=sorted(two["T"].unique(), reverse=True),
        st=z[z["label"] == "vq-commitment"].set_index("T"),
        sigmas=sorted(smooth["sigma"].unique()),
    )


def best_per_temperature(frame: pd.DataFrame) -> str:
    """Per T, the verdict's best (and those tied with it), or how many tie when more than three do."""
    out = []
    for T in sorted(frame["T"].unique(), reverse=True):
        g = frame[frame["T"] == T]
        top = g[g["standing"].isin(["best", "tied"])]
        if len(top) > 3:  # every estimator alike: say so instead of naming one
            out.append(f"T = {format_number(T)}: {len(top)} tied at {format_number(top['score'].max())} or less")
        elif len(top):
            out.append(f"T = {format_number(T)}: " + " tied with ".join(f"`{r.label}` ({format_number(r.score)})"
                                                                      for r in top.sort_values("score").itertuples()))
    return "; ".join(out)


def vq_gradient_tables(root: Path, scores: pd.DataFrame, f: SimpleNamespace) -> list[str]:
    """The introduction and the tables: J_T in z, in the codebook, two stages, and the smoothed objectives."""
    run = reference_run(root)
    seeds = int(scores["seeds"].max())
    parts = [
        prose(
            f"Measured in the committed reference run (`{run.relative_to(root)}`, 4,000 estimates per unit, "
            f"{seeds} seeds; the problems' defaults: linear encoder, MLP decoder, quadratic loss, G = 2 groups of "
            "K = 16 codes in D = 4 dimensions). Cells: MSE / ‖e‖² of one estimate, mean over seeds (1 is what a zero "
            "estimate scores; lower is better), and in brackets the cosine of the mean estimate with the reference "
            "gradient; the verdict's best per column in bold. Categorical estimators get the distance logits "
            "-‖z - e_k‖² / T at their default temperature tau = 1; the VQ estimators' own forward does not depend on T."
        )
    ]
    parts.append("Gradient of J_T in z (`vq-distance[wrt=z]`):\n\n" + problem_table(f.z, "T", f.temps, "estimator"))
    parts.append("Gradient of J_T in the codebook (`vq-distance[wrt=codebook]`):\n\n"
                 + problem_table(f.book, "T", sorted(f.book["T"].unique(), reverse=True), "estimator"))
    two, two_temps = f.two, f.two_temps
    parts.append(
        "Residual VQ on two stages against its two-stage J_T (`vq-distance[stages=2]`), in z and in the codebook:\n\n"
        + table(
            ["estimator", *[f"{w}, T = {format_number(T)}" for w in ("z", "codebook") for T in two_temps]],
            [
                [f"`{label}`"]
                + [
                    score_cell(two[two["label"] == label].set_index(["wrt", "T"]).loc[(w, T)])
                    for w in ("z", "codebook")
                    for T in two_temps
                ]
                for label in sorted(two["label"].unique())
            ],
        )
    )
    smooth_rows = []
    for kind in ("vq", "fsq", "lfq"):
        here = f.smooth[f.smooth["quantizer"] == kind]
        for label in estimator_order(here["label"]):
            g = here[here["label"] == label].set_index("sigma")
            smooth_rows.append([kind, f"`{label}`"] + [f"{format_number(g.loc[s, 'relative_bias'])} "
                                                      f"({format_number(g.loc[s, 'cosine'])})" for s in f.sigmas])
    errors = between(f.smooth["reference_error"] / f.smooth["exact_norm"])
    parts.append(
        prose(
            f"Against the Gaussian-smoothed objective E[L(Q(z + sigma eps))] (`quantizer-smoothed`), each quantizer's "
            f"straight-through gradient at z: relative bias (cosine), means over seeds; the Monte Carlo reference's "
            f"RMS error is {errors} of its norm (it adds to the bias):"
        )
        + "\n\n"
        + table(["quantizer", "estimator", *[f"sigma = {format_number(s)}" for s in f.sigmas]], smooth_rows)
    )
    return parts


def single_evaluation_best(f: SimpleNamespace) -> tuple[str, str]:
    """Of the estimators that evaluate the loss once per estimate, the closest per T in z and in the codebook."""
    single = once_per_estimate
    once = "; ".join(
        f"T = {format_number(T)}: `{r['label']}` ({format_number(r['score'])})"
        for T, r in ((T, single(f.z)[single(f.z)["T"] == T].sort_values("score").iloc[0]) for T in f.temps)
    )
    nonzero = single(f.book)[
        ~single(f.book)["label"].isin(VQ_LABELS)
    ]  # the VQ estimators' codebook gradient is 0 (below)
    once_book = "; ".join(f"T = {format_number(T)}: `{r['label']}` ({format_number(r['score'])}"
                          + (", no better than a zero estimate" if r["score"] >= 1 else "") + ")"
                          for T, r in ((T, nonzero[nonzero["T"] == T].sort_values("score").iloc[0])
                                       for T in sorted(f.book["T"].unique(), reverse=True) if T >= 0.1))
    return once, once_book


def vq_gradient_findings(root: Path) -> str:
    """The quantizer problems of the reference run: how close each estimator's gradient is to J_T's, per T, and
    to the Gaussian-smoothed objective's, per sigma; the findings those numbers support."""
    scores = problem_scores(root)
    f = problem_frames(scores)
    parts = vq_gradient_tables(root, scores, f)
    return "\n\n".join(parts) + "\n\n" + "\n".join(estimator_findings(f) + limit_findings(f))


def estimator_findings(f: SimpleNamespace) -> list[str]:
    """Which estimators come closest, straight-through VQ's distance, and REINFORCE-RLOO's unbiasedness."""
    one, book, st = f.one, f.book, f.st
    rloo = one[one["label"].str.startswith("reinforce[baseline=loo")]
    claim(len(rloo) == len(one[["T", "wrt"]].drop_duplicates()), "REINFORCE-RLOO ran on every one-stage problem")
    claim(bool((rloo[rloo["T"] >= 0.1]["lowest_bias_low"] == 0).all()),
          "every REINFORCE-RLOO bias interval reaches 0 for T >= 0.1, in z and E")
    claim(bool((book[book["label"] == "vq-commitment"]["relative_bias"].round(9) == 1).all()),
          "straight-through VQ's codebook gradient is zero")
    claim(bool((st["relative_bias"] > 0.9).all()), "straight-through VQ's z gradient is far from J_T's at every T")
    relaxations = one[one["label"].str.split("[").str[0].isin(RELAXATIONS) & (one["T"] >= 0.1)]
    unresolved = relaxations[relaxations["lowest_bias_low"] <= 0]
    claim(len(unresolved) < len(relaxations) / 4, "most relaxations' bias intervals exclude 0 at T >= 0.1")
    return [closest_finding(f), straight_through_finding(f), rloo_finding(unresolved)]


def closest_finding(f: SimpleNamespace) -> str:
    """The verdict's best per T in z and in the codebook, and the closest of those evaluating the loss once."""
    once, once_book = single_evaluation_best(f)
    return prose(
        f"Closest to J_T's gradient in z (the verdict's best): {best_per_temperature(f.z)}. In the codebook: "
        f"{best_per_temperature(f.book)}. IndeCateR evaluates the loss at every code of every group (G x K = 32 "
        f"times per estimate here); of the estimators that evaluate it once per estimate the closest in z are "
        f"{once}, and in the codebook {once_book}.",
        bullet=True,
    )


def straight_through_finding(f: SimpleNamespace) -> str:
    """How far straight-through VQ's gradient in z is from J_T's (beyond a zero estimate's at some T), its zero
    codebook gradient, and the best VQ estimator in z per T."""
    z, st = f.z, f.st
    worse_than_zero = [format_number(T) for T, row in st.sort_index(ascending=False).iterrows() if row["score"] > 1]
    best_vq = {T: z[(z["T"] == T) & z["label"].isin(VQ_LABELS)].sort_values("score").iloc[0] for T in f.temps}
    return prose(
        f"Straight-through VQ (`vq-commitment`, and `simvq`, whose codebook is the given one at initialization) is "
        f"not an estimate of J_T's gradient in z at any T: relative bias {between(st['relative_bias'])}"
        + (
            f", farther than a zero estimate (MSE / ‖e‖² > 1) at T = {', '.join(worse_than_zero)}"
            if worse_than_zero
            else ""
        )
        + ". Its downstream gradient in the codebook is exactly 0 (relative bias 1; also with the rotation trick): "
        "the codes learn from the codebook loss, not from L. The best VQ estimator in z: "
        + ", ".join(
            f"T = {format_number(T)} `{r['label']}` ({format_number(r['score'])})" for T, r in best_vq.items()
        )
        + ".",
        bullet=True,
    )


def rloo_finding(unresolved: pd.DataFrame) -> str:
    """REINFORCE-RLOO's bias intervals reach 0, the relaxations' exclude it (but for the ``unresolved`` rows)."""
    exceptions = ", ".join(f"`{r.label}` at T = {format_number(r.T)} ({r.wrt})" for r in unresolved.itertuples())
    return prose(
        "REINFORCE with the leave-one-out baseline on the distance logits is unbiased, in z and in the codebook "
        "(every seed's bias interval reaches 0 at T = 10, 1 and 0.1; at T = 0.01 every draw is the nearest code and "
        "what is left is float32 rounding); every relaxation's bias interval excludes 0 at T >= 0.1"
        + (f" except {exceptions}" if exceptions else "")
        + ". (`zgr` and `reinmax[tau=1]` are one estimator, "
        "docs/estimators.md: their cells differ only by their units' seeds.)",
        bullet=True,
    )


def limit_findings(f: SimpleNamespace) -> list[str]:
    """The small-T limit, the MLP/cross-entropy model, and the smoothed objectives."""
    from gumbench.benchmarks import make_task

    z, book, other, smooth = f.z, f.book, f.other, f.smooth
    small = book[book["T"] == book["T"].min()]
    relaxed_small = small[~small["label"].isin(VQ_LABELS)]
    claim(bool((relaxed_small["score"] < 1e-6).all()),
          "at the smallest T every categorical estimator reaches the hard codebook gradient")
    fsq, lfq = (smooth[smooth["quantizer"] == q].set_index("sigma") for q in ("fsq", "lfq"))
    vq_smooth = smooth[smooth["quantizer"] == "vq"]
    # per sigma, which quantizer's own straight-through gradient lies closest to its smoothed objective's
    closest = {sigma: min((("FSQ", fsq.loc[sigma, "relative_bias"]), ("LFQ", lfq.loc[sigma, "relative_bias"]),
                           ("VQ", vq_smooth[vq_smooth["sigma"] == sigma]["relative_bias"].min())),
                          key=lambda x: x[1])[0]
               for sigma in f.sigmas}
    vanished = float(make_task("vq-distance[T=0.01]").reference().gradient.norm())
    claim(vanished < 1e-12, "the gradient in z has vanished at T = 0.01")
    st_other = other[(other["wrt"] == "z") & (other["label"] == "vq-commitment")]["relative_bias"]
    lowest = ((sigma, vq_smooth[vq_smooth["sigma"] == sigma].sort_values("score").iloc[0]) for sigma in f.sigmas)
    return [
        prose(
            f"As T -> 0 the gradient of J_T in z vanishes (the nearest code does not move with z: its norm is "
            f"{format_number(vanished)} at T = 0.01 against "
            f"{format_number(z[z['T'] == min(f.temps)]['exact_norm'].iloc[0])} "
            f"at T = {format_number(min(f.temps))}, so that column is left out), while in the codebook it tends to "
            f"dL/de at the nearest code: at T = {format_number(small['T'].iloc[0])} every categorical estimator on "
            f"the distance logits gives it (MSE / ‖e‖² at most {format_number(relaxed_small['score'].max())}), "
            f"straight-through VQ gives 0.",
            bullet=True,
        ),
        prose(
            f"With an MLP encoder and a cross-entropy loss (`vq-distance[encoder=mlp,loss=cross-entropy]`) the "
            f"closest in z: "
            f"{best_per_temperature(other[other['wrt'] == 'z'])}; in the codebook: "
            f"{best_per_temperature(other[other['wrt'] == 'codebook'])}; straight-through VQ's relative bias in z "
            f"{between(st_other)}.",
            bullet=True,
        ),
        prose(
            "Against the smoothed objective (means over the instances), the quantizer whose straight-through "
            "gradient lies closest is "
            + ", ".join(f"{closest[sigma]} at sigma = {format_number(sigma)}" for sigma in f.sigmas)
            + f" (FSQ's relative bias {between(fsq['relative_bias'])}, LFQ's {between(lfq['relative_bias'])} for "
            f"sigma {between(fsq.index)}); for nearest-code VQ the lowest MSE is "
            + ", ".join(
                f"`{r['label']}` at sigma = {format_number(sigma)} (relative bias {format_number(r['relative_bias'])})"
                for sigma, r in lowest
            )
            + ".",
            bullet=True,
        ),
    ]


def headline_vq(root: Path) -> str:
    """One line of the README: straight-through VQ against the exact gradient of the stochastic quantizer."""
    scores = problem_scores(root)
    one = scores[(scores["problem"] == "vq-distance") & (scores["stages"] == 1) & (scores["wrt"] == "z")
                 & (scores["encoder"] == "linear") & (scores["loss"] == "quadratic")]
    st = one[one["label"] == "vq-commitment"]
    best = one[one["standing"] == "best"].sort_values("T", ascending=False)
    single = once_per_estimate(one)
    single_best = [
        single[single["T"] == T].sort_values("per_estimate").iloc[0] for T in sorted(one["T"].unique(), reverse=True)
    ]
    claim(bool((st["relative_bias"] > 0.9).all()), "straight-through VQ is far from J_T's gradient in z at every T")
    return prose(
        f"VQ as a categorical choice (`vq-distance`: codes drawn with probability softmax(-‖z - e‖² / T), exact "
        f"gradient by enumeration; committed reference run): straight-through VQ's gradient in z has relative bias "
        f"{between(st['relative_bias'])} for T from {format_number(one['T'].max())} to "
        f"{format_number(one['T'].min())}, "
        f"and none of it reaches the codes; closest at equal loss evaluations (geometric means over "
        f"{between(one['seeds'], lambda x: f'{x:.0f}')} instances) are "
        + ", ".join(
            f"`{r.label}` at T = {format_number(r.T)} (MSE {format_number(r.score)} ‖e‖²)" for r in best.itertuples()
        )
        + ", and of the estimators that evaluate the loss once per estimate "
        + ", ".join(
            f"`{r['label']}` at T = {format_number(r['T'])} ({format_number(r['per_estimate'])} ‖e‖²)"
            for r in single_best
        )
        + " (docs/tasks.md).",
        bullet=True,
    )
