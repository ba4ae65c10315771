"""Blocks on gradient statistics on the toys, optimization runs, the digits VAE and the Fashion-MNIST study."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from docgen.common import between, claim, decimals, interval, percent, prose, results, table
from gumbench.benchmarks.gradstats import format_number
from gumbench.registry import parse_spec

# --- gradient statistics on the toys -----------------------------------------------------------

def statistics_table(rows: list[dict], source: str) -> str:
    claim(
        len({(r["task"], r["samples"], r["seed"], r["confidence"]) for r in rows}) == 1,
        "one task, budget and seed per table",
    )
    first = rows[0]
    caption = prose(f"`{first['task']}`, {first['samples']:,} estimates per estimator, seed {first['seed']}, "
                    f"{first['confidence']:.0%} intervals (`{source}`):")
    body = [[f"`{r['estimator']}`", interval(r, "relative_bias"), interval(r, "total_variance"),
             *(format_number(r[k]["value"]) for k in ("mse", "cosine", "snr"))] for r in rows]
    return caption + "\n\n" + table(["estimator", "bias / ‖grad‖", "total variance", "MSE", "cosine", "SNR"], body)


def default_toy(root: Path) -> dict:
    """The numbers of the headline finding on the default toy."""
    rows = {r["label"]: r for r in results(root, "gradstats-default.json")}
    reinforce = [r for label, r in rows.items() if label.startswith("reinforce")]
    relaxed = [r for label, r in rows.items() if not label.startswith("reinforce")]
    claim(all(r["relative_bias"]["low"] == 0 for r in reinforce), "every REINFORCE bias interval reaches 0")
    claim(all(r["relative_bias"]["low"] > 0 for r in relaxed), "the relaxations are biased")
    variance = {label: r["total_variance"]["value"] for label, r in rows.items()}
    none, loo = variance["reinforce"], variance["reinforce[baseline=loo]"]
    claim(
        all(r["total_variance"]["high"] < rows["reinforce"]["total_variance"]["low"] for r in relaxed),
        "relaxations' variance is lower",
    )
    task = parse_spec(rows["reinforce"]["task"])
    return {
        "toy": f"`{task.name}`, {task.params['groups']} x {task.params['categories']}, {task.params['loss']} loss, "
               f"{rows['reinforce']['samples']:,} estimates",
        "none": format_number(none), "loo": format_number(loo), "fold": f"{none / loo:.0f}",
        "ratio": between([none / variance[r["label"]] for r in relaxed], lambda v: f"{v:,.0f}", "x"),
        "relaxed_variance": between([variance[r["label"]] for r in relaxed]),
        "bias": between([r["relative_bias"]["value"] for r in relaxed], percent, "%"),
        "each": ", ".join(f"{r['label']} {format_number(r['relative_bias']['value'])}" for r in relaxed),
    }


def headline_toy(root: Path) -> str:
    n = default_toy(root)
    return prose(
        f"On a toy with an exact gradient ({n['toy']}, `results/gradstats-default.json`), REINFORCE is "
        f"unbiased (every bias interval reaches 0) but without a baseline its total variance is {n['none']}, "
        f"{n['ratio']} the relaxations'; the leave-one-out baseline cuts it to {n['loo']}. The relaxations "
        f"trade a {n['bias']} relative bias ({n['each']}) for variances of {n['relaxed_variance']}.",
        bullet=True,
    )


def gradstats_default_table(root: Path) -> str:
    return statistics_table(results(root, "gradstats-default.json"), "results/gradstats-default.json")


def gradstats_default_finding(root: Path) -> str:
    n = default_toy(root)
    return prose(
        f"REINFORCE is unbiased (every bias interval reaches 0) but without a baseline its variance is "
        f"{n['ratio']} the relaxations'; the leave-one-out baseline cuts it {n['fold']}-fold. The relaxations trade a "
        f"{n['bias']} bias for low variance ({n['relaxed_variance']}). Which wins depends on the budget: that is what "
        f"the sweeps measure."
    )


def gradstats_beyond_card_table(root: Path) -> str:
    return statistics_table(results(root, "gradstats-beyond-card.json"), "results/gradstats-beyond-card.json")


def disarm_binary_toys(root: Path) -> str:
    from gumbench.benchmarks.problems.toys import BernoulliToy

    bernoulli, polynomial = (
        {r["label"]: r for r in results(root, f"gradstats-disarm-{t}.json")} for t in ("bernoulli", "polynomial")
    )
    rloo = "reinforce[baseline=loo,samples=2]"
    # coordinate i at a = 0: (1/16) sum_{j != i} (f_j(1) - f_j(0))^2, twice (both logits of a variable)
    steps = [((1 - p) ** 2 - p**2) ** 2 for p in BernoulliToy.targets]
    closed = [(sum(steps) - s) / 16 for s in steps]
    disarm = bernoulli["disarm"]
    claim(
        disarm["total_variance"]["low"] <= 2 * sum(closed) <= disarm["total_variance"]["high"],
        "DisARM's variance interval holds the closed form",
    )
    variance = lambda rows, label: format_number(rows[label]["total_variance"]["value"])  # noqa: E731
    terms = " + ".join(map(format_number, closed))
    return prose(
        f"Binary toys, {disarm['samples']:,} estimates, seed {disarm['seed']} "
        f"(`results/gradstats-disarm-{{bernoulli,polynomial}}.json`): DisARM on `{disarm['task']}` has bias "
        f"{interval(disarm, 'relative_bias')} x ‖grad‖ and total variance {interval(disarm, 'total_variance')} (the "
        f"closed form above gives 2 x ({terms}) = {format_number(2 * sum(closed))}), against "
        f"{variance(bernoulli, rloo)} for `{rloo}` with the same two loss evaluations; on "
        f"`{polynomial['disarm']['task']}` "
        f"{variance(polynomial, 'disarm')} against {variance(polynomial, rloo)}."
    )


# --- optimization and the digits VAE -----------------------------------------------------------

def optimize_polynomial(root: Path) -> str:
    import torch

    from gumbench.benchmarks import make_task

    frame = results(root, "optimize-polynomial.csv")
    start, end = frame[frame.step == 0], frame[frame.step == frame.step.max()]
    claim(
        frame.task.nunique() == 1 and start.expected_loss.nunique() == 1,
        "one task, every estimator from the same start",
    )
    toy = make_task(frame.task.iloc[0])
    # the loss is the same |z_i - 0.45|^p for every variable: the optimum is all zeros or all ones
    corners = torch.stack([torch.nn.functional.one_hot(torch.full(toy.shape[:1], z), 2).double() for z in (0, 1)])
    optimum = float(toy.loss(corners).min())
    final = ", ".join(f"`{r.label}` {r.expected_loss:.4f}" for r in end.itertuples())
    return prose(f"On `{toy.spec}` the exact expected loss starts at {start.expected_loss.iloc[0]:.4f} (optimum "
                 f"{optimum:.4f}); after {end.step.iloc[0]} steps: {final}.")


def elbo_study(root: Path) -> str:
    from gumbench.benchmarks.studies.instances import orderings, summarize

    frame = results(root, "training/digits-vae-elbo-gradients.csv")
    settings = results(root, "training/digits-vae-elbo-gradients.json")["settings"]
    summary = summarize(frame, ["label", "step"], ["relative_bias", "relative_std"]).set_index(["label", "step"])
    steps = sorted(frame.step.unique())
    n, seeds = frame.instance.nunique(), sorted(frame.seed.unique())
    claim(frame.groupby(["label", "step"]).instance.nunique().eq(n).all(), "every estimator on every instance")
    path = lambda label, fmt=".2f": " -> ".join(  # noqa: E731
        f"{summary.loc[(label, s), 'relative_bias']:{fmt}}" for s in steps)
    relaxed = [label for label in frame.label.unique() if not label.startswith("reinforce")]
    claim(all(summary.loc[label, "relative_bias"].diff().dropna().gt(0).all() for label in relaxed),
          "the relaxations' mean bias over instances grows")
    loo, ema = "reinforce[baseline=loo]", "reinforce[baseline=ema]"
    claim((frame[frame.label == loo].relative_bias_low == 0).all(), "every RLOO per-image interval reaches 0")
    growth = ", ".join(f"{label} {path(label)}" for label in relaxed)
    spread = {label: between(summary.loc[label, "relative_std"], decimals(1)) for label in (loo, ema)}
    ordered = orderings(frame, ["step"])
    ranks = "; ".join(f"step {step}: " + ", ".join(
        f"`{r.better}` < `{r.worse}` ({r.wins} of {r.instances})" for r in part.itertuples())
        for step, part in ordered.groupby("step"))
    return prose(
        f"Committed as `results/training/digits-vae-elbo-gradients.{{csv,txt,json}}` (`gumbench elbo-study -o "
        f"results/training/digits-vae-elbo-gradients`: {n} instances, models trained from seeds "
        f"{seeds[0]}-{seeds[-1]}, each probed on its own {settings['points']} evaluation images, "
        f"{settings['samples']:,} estimates per image; means over instances): the relaxations' mean relative bias "
        f"grows as training sharpens the posterior: {growth} at steps {', '.join(map(str, steps))}, while RLOO "
        f"stays unbiased (every per-image interval reaching 0; {path(loo, '.3f')} over instances, the mean of "
        f"estimates clipped at 0) at a relative standard deviation of {spread[loo]} per estimate (geometric means; EMA "
        f"baseline: bias {path(ema)}, relative standard deviation {spread[ema]}). Ranked by relative MSE "
        f"(geometric mean over instances), each against the next, with the instances the ordering holds on: "
        f"{ranks}."
    )


def fashion_throughput(root: Path) -> str:
    """fashion-vae training steps per second at batch 100, 1 and 2 torch threads (pytest-benchmark JSON)."""
    name = "images/throughput-fashion-vae.json"
    record = results(root, name)
    rows = [b["extra_info"] | {"estimator": b["params"]["estimator"]} for b in record["benchmarks"]]
    claim(
        {r["threads"] for r in rows} == {1, 2} and {r["batch"] for r in rows} == {100}, "1 and 2 threads at batch 100"
    )
    rate = lambda threads: between([r["steps_per_second"] for r in rows if r["threads"] == threads], decimals(0))  # noqa: E731
    loads = [r[key] for r in rows for key in ("load_average_before", "load_average_after")]
    estimators = ", ".join(f"`{e}`" for e in dict.fromkeys(r["estimator"] for r in rows))
    return prose(
        f"Training throughput at 8 x 4, batch 100 ({estimators}; "
        f"`tests/benchmarks/training/test_fashion_throughput.py`, `results/{name}`): {rate(1)} steps per second "
        f"with 1 torch thread, {rate(2)} with 2, on {record['machine_info']['cpu'].get('brand_raw', 'the CPU')} "
        f"({rows[0]['cpus']} cores) while another job held the 1-minute load average at {between(loads, decimals(1))}; "
        f"{record['datetime'][:10]}."
    )


def fashion_study(root: Path) -> str:
    """The short fashion-vae study at 8 x 4: per estimator, the final exact -log p(x), exact -ELBO and the
    K-sample bound of each seed, from results/images/fashion-vae-8x4-seed*.csv and its timing record."""
    timing = results(root, "images/fashion-vae-8x4-timing.json")
    frame = pd.concat([results(root, f"images/{name}") for name in timing["files"]], ignore_index=True)
    last = frame[frame.step == frame.step.max()]
    columns = {
        "eval_nll_exact": "-log p(x), exact",
        "eval_negative_elbo_exact": "-ELBO, exact",
        "eval_nll_iw": "-IW bound",
    }
    claim(last.groupby("label").seed.nunique().nunique() == 1, "every estimator ran every seed")
    rows = []
    for label, part in last.groupby("label", sort=False):
        part = part.sort_values("seed")
        rows.append(
            [
                f"`{label}`",
                *(" / ".join(f"{x:.1f}" for x in part[c]) + f" (mean {part[c].mean():.1f})" for c in columns),
            ]
        )
    seeds = sorted(last.seed.unique())
    means = last.groupby("label").eval_nll_exact.mean().sort_values()
    minutes = sum(timing["wall_seconds"]) / 60
    intro = prose(
        f"Committed as `results/images/fashion-vae-8x4-seed{{{','.join(map(str, seeds))}}}.csv.gz` (gzipped) "
        f"(`{timing['command']}` for seeds {', '.join(map(str, seeds))}; {int(frame.step.max()):,} steps, "
        f"{minutes:.1f} minutes of wall time in all on 2 shared cores at 1 torch thread, 1-minute load average "
        f"{between(timing['load_average'], decimals(1))}). Default settings for every estimator (learning rate "
        f"{timing['lr']:g}, tau 1), not the paper's tuned ones. Final evaluation on {timing['eval_images']:,} test "
        f"images, nats per image, seed {' / '.join(map(str, seeds))}; lowest mean exact -log p(x): "
        f"`{means.index[0]}`, highest: `{means.index[-1]}`. With {len(seeds)} seeds and {int(frame.step.max()):,} "
        f"steps (the paper: 10 seeds, 96,000 steps) this reproduces no ordering of the paper; it shows the "
        f"pipeline end to end."
    )
    return intro + "\n\n" + table(["estimator", *columns.values()], rows)
