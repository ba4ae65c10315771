"""Training questions keyed by (task, bits per frame): estimators compared only at equal bits."""

import math

import numpy as np
import pandas as pd
import pytest

from gumbench.benchmarks.sweep.bits import bits_groups, unit_bits
from gumbench.benchmarks.sweep.verdict import compare, verdict
from gumbench.errors import GumbenchError


def outcome_rows():
    rows = []
    for label, bits, scores in [("vq-commitment", 7.0, [0.30, 0.32, 0.31]), ("simvq", 7.0, [0.35, 0.36, 0.34]),
                                ("residual-vq[stages=2,split=product]", 7.0 + 1e-13, [0.33, 0.31, 0.32]),
                                ("residual-vq[stages=2]", 12.0, [0.10, 0.11, 0.12])]:
        for rep, score in enumerate(scores):
            rows.append({"unit_id": f"{label}-{rep}", "kind": "training", "task": "logmel-vqvae", "label": label,
                         "estimator_name": label.split("[")[0], "repetition": rep, "score": score, "warning": "",
                         "measure": "final eval reconstruction", "bits": bits})
    rows.append({"unit_id": "g", "kind": "gradstats", "task": "categorical", "label": "st-gumbel",
                 "estimator_name": "st-gumbel", "repetition": 0, "score": 0.5, "warning": "", "measure": "m",
                 "bits": np.nan})
    return pd.DataFrame(rows)


def test_questions_name_their_bits_and_compare_only_within():
    grouped = bits_groups(outcome_rows())
    assert set(grouped.task) == {"logmel-vqvae @ 7 bits/frame", "logmel-vqvae @ 12 bits/frame", "categorical"}
    at7 = grouped[grouped.task == "logmel-vqvae @ 7 bits/frame"]
    assert set(at7.label) == {"vq-commitment", "simvq", "residual-vq[stages=2,split=product]"}  # rounding agrees
    assert (at7.rivals == 2).all()
    assert (grouped[grouped.task == "logmel-vqvae @ 12 bits/frame"].rivals == 0).all()
    # the 12-bit residual's low score no longer wins the 7-bit question
    table = verdict(compare(grouped[grouped.kind == "training"]))
    best = dict(zip(table.task, table.best))
    assert best["logmel-vqvae @ 7 bits/frame"][0].startswith("vq-commitment")
    assert best["logmel-vqvae @ 12 bits/frame"][0].startswith("residual-vq[stages=2]")
    rows = outcome_rows()
    ungrouped = verdict(compare(rows[rows.kind == "training"].drop(columns="bits")))
    assert dict(zip(ungrouped.task, ungrouped.best))["logmel-vqvae"][0].startswith("residual-vq[stages=2]")


def test_bits_from_the_rows_and_units_without_them():
    rows = outcome_rows().drop(columns="bits")
    frame = pd.DataFrame({"unit_id": ["vq-commitment-0", "vq-commitment-0", "simvq-0"],
                          "metric": ["loss", "bits_per_frame", "bits_per_frame"],
                          "value": [1.0, 7.0, 2 * math.log2(320)]})
    bits = unit_bits(frame)
    assert bits.to_dict() == {"vq-commitment-0": 7.0, "simvq-0": 2 * math.log2(320)}
    grouped = bits_groups(rows, bits)
    assert grouped.set_index("unit_id").task.to_dict()["simvq-0"] == "logmel-vqvae @ 16.6 bits/frame"
    assert grouped.set_index("unit_id").task.to_dict()["simvq-1"] == "logmel-vqvae"  # an older unit: no bits
    with pytest.raises(GumbenchError, match="needs a bits column"):
        bits_groups(rows)
    with pytest.raises(GumbenchError, match="more than one bits_per_frame"):
        unit_bits(pd.concat([frame, frame.assign(value=8.0)]))
