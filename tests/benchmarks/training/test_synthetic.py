"""Synthetic training tasks: the gmm-vq codes find the true clusters; purity and NMI against values by hand."""

import pytest
import torch

from gumbench.benchmarks.training import train
from gumbench.benchmarks.training.synthetic import nmi, purity


def test_learning_finds_the_truth_on_gmm():
    frame = train("gmm-vq", "vq-commitment", steps=300, seed=0, eval_every=100)
    last = frame.iloc[-1]
    # 8 well-separated clusters: the codes should separate them (chance NMI ~ 0)
    assert last["eval_nmi"] > 0.9 and last["eval_purity"] > 0.9
    assert frame["loss"].iloc[-20:].mean() < frame["loss"].iloc[:20].mean() / 10


def test_purity_and_nmi_by_hand():
    codes = torch.tensor([0, 0, 1, 1, 2, 2])
    labels = torch.tensor([5, 5, 6, 6, 6, 7])
    assert purity(codes, labels) == pytest.approx(5 / 6)
    assert nmi(labels, labels) == pytest.approx(1.0)
    assert nmi(torch.zeros(6, dtype=torch.long), labels) == pytest.approx(0.0)
