"""The report's first screen: for each use case, the estimator to use at equal cost, its evidence, the runner-up,
and where the answer changes.

Use cases and the questions that answer them (gradient questions rank at equal loss evaluations; see
:mod:`gumbench.benchmarks.sweep.verdict`):

  categorical latents (a discrete VAE)   the toys with random logits (categorical, polynomial, bernoulli); every
                                         categorical estimator; training: digits-vae, fashion-vae
  a VQ tokenizer bottleneck              vq-distance and quantizer-smoothed, the estimators with a VQ forward pass
                                         (a nearest-code lookup); training: gmm-vq, tones, logmel-vqvae
  a Gumbel quantizer (wav2vec 2.0)       vq-distance, the categorical estimators (a code sampled from a softmax over
                                         the codes' logits); training: wav2vec2

Per use case the candidates' per-instance scores at equal loss evaluations are ranked within each (question,
instance) block and aggregated with autorank's Friedman test and Nemenyi critical difference
(:func:`gumbench.benchmarks.sweep.aggregate.rank_estimators`): the recommendation is the lowest mean rank; its
evidence is that rank with the critical difference, and on how many blocks it beat the runner-up; "when it changes"
names the questions whose own best differs. Degenerate estimators (on any question of the case) are not candidates.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

CATEGORICAL_TOYS = ("categorical", "polynomial", "bernoulli")


@dataclass(frozen=True)
class UseCase:
    name: str
    gradient_tasks: tuple[str, ...]
    vq: bool  # candidates: estimators with a VQ forward pass (True) or categorical ones (False)
    training_tasks: tuple[str, ...]


USE_CASES = (
    UseCase("categorical latents (a discrete VAE)", CATEGORICAL_TOYS, False, ("digits-vae", "fashion-vae")),
    UseCase("a VQ tokenizer bottleneck", ("vq-distance", "quantizer-smoothed"), True, ("gmm-vq", "tones",
                                                                                        "logmel-vqvae")),
    UseCase("a Gumbel quantizer (wav2vec 2.0)", ("vq-distance",), False, ("wav2vec2",)),
)


def _is_vq(name: str) -> bool:
    from gumbench.estimators import VQEstimator, registry

    try:
        return issubclass(registry.get(name), VQEstimator)
    except Exception:  # an estimator this installation does not know: not a candidate either way
        return False


def base_name(question: str) -> str:
    """A question's task name: ``logmel-vqvae`` of ``logmel-vqvae[code_dim=7] @ 7 bits/frame``."""
    return question.split(" @ ")[0].split("[")[0]


def _keep(rows, column: str, test):
    """The rows whose ``column`` passes ``test`` (a boolean mask even when there are none)."""
    return rows[rows[column].map(test).astype(bool)] if len(rows) else rows


def candidate_rows(outcome_rows, case: UseCase):
    """The gradient units (healthy instances, the ranked view) that answer ``case``: a tidy frame of question,
    label, instance and score relative to the best on that question and instance."""
    import pandas as pd

    from gumbench.benchmarks.sweep.verdict import _with_views

    rows = outcome_rows[(outcome_rows["kind"] == "gradstats") & ~outcome_rows["vanishing"].astype(bool)]
    rows = _keep(rows, "task", lambda t: base_name(t) in case.gradient_tasks)
    rows = _keep(rows, "estimator_name", lambda name: _is_vq(name) == case.vq)
    rows = _with_views(rows)
    # a degenerate result (it shrinks or misses the gradient) ranks after every healthy one on its question: the
    # ranking only sees ranks, so one score above any healthy one (10x the largest) ties them all last
    degenerate = rows["task"].map(rows[rows["warning"] != ""].groupby("task")["label"].agg(set)).map(
        lambda s: s if isinstance(s, set) else set())
    last = [label in names for label, names in zip(rows["label"], degenerate)]
    worst = 10 * float(rows["score"].max()) if len(rows) else 1.0
    rows = rows.assign(score=rows["score"].where(~pd.Series(last, index=rows.index), worst))
    return rows.assign(question=rows["task"])[["question", "label", "instance", "score"]]


def _changes(compared, case: UseCase, chosen: str, shown: int = 3) -> str:
    """The questions of ``case`` whose own best (among its candidates) is not ``chosen``, as 'task: best'."""
    rows = compared[(compared["kind"] == "gradstats") & compared["standing"].isin(["best", "tied", "worse"])]
    rows = _keep(rows, "task", lambda t: base_name(t) in case.gradient_tasks)
    rows = _keep(rows, "family", lambda name: _is_vq(name) == case.vq)
    firsts = rows.sort_values("mean", kind="stable").groupby("task", sort=False).head(1)
    differ = [f"{r.task}: {r.label}" for r in firsts.itertuples() if r.label != chosen]
    if not differ:
        return f"{chosen} is the best on every question"
    more = f" (+{len(differ) - shown} more)" if len(differ) > shown else ""
    return "; ".join(differ[:shown]) + more


def _training_line(compared, case: UseCase, ladders: dict) -> str:
    """Per training question of ``case`` (the first two), its best healthy candidate, its seeds and whether its
    ordering against the next candidate is settled on a budget ladder."""
    from gumbench.benchmarks.sweep.verdict import settled_text

    rows = compared[(compared["kind"] == "training") & compared["standing"].isin(["best", "tied", "worse"])]
    rows = _keep(rows, "task", lambda t: base_name(t) in case.training_tasks)
    rows = _keep(rows, "family", lambda name: _is_vq(name) == case.vq)
    parts = []
    for task, group in list(rows.groupby("task", sort=False))[:2]:
        group = group.sort_values("mean", kind="stable")
        best, runner = group["label"].iloc[0], group["label"].iloc[1] if len(group) > 1 else ""
        settled = settled_text("training", task, best, runner, ladders, int(group["steps"].max()))
        parts.append(f"{task}: {best}, {group['n'].iloc[0]} seeds" + (f"; {settled}" if settled else ""))
    return "; ".join(parts)


def recommendations(outcome_rows, compared, verdict_rows, ladders: dict | None = None):
    """One row per use case: recommended, its mean rank with the Nemenyi interval, evidence against the runner-up,
    when it changes, and the training evidence; a case without questions in these results says so."""
    import pandas as pd

    from gumbench.benchmarks.sweep.aggregate import rank_estimators
    from gumbench.errors import GumbenchError

    records = []
    for case in USE_CASES:
        tidy = candidate_rows(outcome_rows, case).rename(columns={"label": "estimator"})
        record = {"use case": case.name, "recommended": "not measured in these results", "evidence": "",
                  "runner_up": "", "changes": "", "training": _training_line(compared, case, ladders or {})}
        try:
            with warnings.catch_warnings():  # autorank's normality and effect-size checks warn on tied blocks
                warnings.simplefilter("ignore")
                ranking = rank_estimators(tidy) if not tidy.empty else None
        except (GumbenchError, ValueError) as exc:  # too few estimators or blocks to rank (autorank needs 5 blocks)
            record["recommended"] = f"not ranked ({str(exc).split(': ', 1)[-1]})"
            ranking = None
        if ranking is not None:
            table = ranking.table.sort_values("mean_rank", kind="stable")
            first, second = table.index[0], table.index[1]
            pair = ranking.pairs[(ranking.pairs["better"] == first) & (ranking.pairs["worse"] == second)].iloc[0]
            wide = tidy.pivot_table(index=["question", "instance"], columns="estimator", values="score")[
                [first, second]].dropna()
            losses = int((wide[second] < wide[first]).sum())
            record |= {
                "recommended": first, "runner_up": second, "changes": _changes(compared, case, first),
                "evidence": (f"mean rank {table['mean_rank'].iloc[0]:.1f} of {len(table)} (critical difference "
                             f"{ranking.cd:.1f}) over {ranking.blocks} question x instance blocks; beat "
                             f"{second} on {int(pair['wins'])} of {len(wide)}, lost on {losses}"
                             + ("" if pair["significant"] else ", not separated from it (Nemenyi)")),
            }
        records.append(record)
    return pd.DataFrame(records)
