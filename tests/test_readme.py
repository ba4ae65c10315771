"""The README's code is run, not just read."""

import re
from pathlib import Path

import torch

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_starts_with_exactly_two_commands():
    first = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1).strip().splitlines()
    assert len(first) == 2
    assert "gumbench sweep" in first[0] and "pip install" in first[0]
    assert first[1].strip() == ".venv/bin/python -m pytest"
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert first[1].strip() in ci


def test_readme_own_estimator_example_runs(monkeypatch):
    from gumbench.benchmarks import gradient_statistics, make_task
    from gumbench.estimators import make_estimator, registry

    example = next(b for b in python_blocks() if "class DeterministicSoftmax" in b)
    monkeypatch.setattr(registry, "_classes", dict(registry._classes))  # leave the global registry as it was
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    est = make_estimator("softmax[tau=0.5]")
    logits = torch.randn(3, 2, 4, requires_grad=True)
    out = est(logits, lambda y: y.pow(2).sum((-2, -1)))
    out.surrogate.sum().backward()
    assert logits.grad.abs().sum() > 0
    toy = make_task("categorical[groups=2,categories=3]")
    stats = gradient_statistics("softmax", toy.logits, toy.loss, 100)
    assert stats.total_variance.value < (1e-6 * stats.exact_norm) ** 2


def test_readme_gradient_statistics_example_runs():
    block = next(b for b in python_blocks() if "gradient_statistics(" in b and "samples=10_000" in b)
    exec(compile(block.replace("10_000", "500"), "README.md", "exec"), {})


def test_readme_sweep_config_is_valid(tmp_path):
    from gumbench.benchmarks.sweep import expand_units, load_config

    block = re.search(r"```toml\n(.*?)```", README, flags=re.S).group(1)
    path = tmp_path / "sweep.toml"
    path.write_text(block)
    units, _ = expand_units(load_config(path))
    # 4 categorical variants + bernoulli = 5 toys, x (4 + 2) estimators, x 3 repetitions; 2 x 2 x 3 training
    assert sum(u.kind == "gradstats" for u in units) == 5 * 6 * 3
    assert sum(u.kind == "training" for u in units) == 2 * 2 * 3
