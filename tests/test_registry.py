"""Registry names: spec parsing and grids, estimator parameter checks, entry-point plugins in-process and from the
CLI."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from gumbench.errors import GumbenchError
from gumbench.registry import Registry, Spec, format_spec, parse_spec


def test_parse_spec_values_and_grid():
    spec = parse_spec("st-gumbel[tau=[0.5,1,2],hard=true,mode=fast]")
    assert spec.name == "st-gumbel"
    assert spec.params == {"tau": [0.5, 1, 2], "hard": True, "mode": "fast"}
    grid = spec.grid()
    assert [g.params["tau"] for g in grid] == [0.5, 1, 2]
    assert format_spec("reinforce", {"baseline": "loo", "samples": 4}) == "reinforce[baseline=loo,samples=4]"
    assert parse_spec("reinforce") == Spec("reinforce", {})


@pytest.mark.parametrize(
    "bad", ["", "st-gumbel[tau=0.5", "st-gumbel[tau]", "1abc", "x[tau=1,tau=2]", "x[tau=[]]", "x]"]
)
def test_parse_spec_rejects(bad):
    with pytest.raises(GumbenchError):
        parse_spec(bad)


def test_estimator_parameters_are_checked():
    from gumbench.estimators import make_estimator

    assert make_estimator("st-gumbel[tau=0.5]").params == {"tau": 0.5}
    with pytest.raises(GumbenchError, match="allowed: tau"):
        make_estimator("st-gumbel[temperature=0.5]")
    with pytest.raises(GumbenchError, match="must be a number"):
        make_estimator("st-gumbel[tau=abc]")
    with pytest.raises(GumbenchError, match="one of none, ema, loo"):
        make_estimator("reinforce[baseline=mean]")
    with pytest.raises(GumbenchError, match="unknown estimator 'nope'; available: "):
        make_estimator("nope")
    with pytest.raises(GumbenchError, match="grid"):
        make_estimator("st-gumbel[tau=[1,2]]")


PLUGIN = textwrap.dedent(
    """
    import torch
    from gumbench.estimators import CategoricalEstimator, EstimatorOutput

    class Deterministic(CategoricalEstimator):
        name = "plugin-softmax"
        description = "softmax(logits / tau), no sampling (a test plugin)"
        defaults = {"tau": 1.0}

        def estimate(self, logits, loss_fn, generator):
            y = torch.softmax(logits / self.params["tau"], dim=-1)
            loss = loss_fn(y)
            return EstimatorOutput(loss, y, y.argmax(-1), loss, {})
    """
)


@pytest.fixture
def plugin_path(tmp_path):
    (tmp_path / "gb_test_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "gb_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gb-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[gumbench.estimators]\nplugin-softmax = gb_test_plugin:Deterministic\n")
    return tmp_path


def test_entry_point_plugin_is_registered(plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_path))
    registry = Registry("estimator", group="gumbench.estimators")
    assert "plugin-softmax" in registry.names()
    est = registry.create("plugin-softmax[tau=2]")
    assert est.params == {"tau": 2.0}


def test_entry_point_plugin_runs_from_the_cli(plugin_path):
    env_path = f"{plugin_path}"
    code = "import sys; from gumbench.cli import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run(
        [sys.executable, "-c", code, "gradstats", "-e", "plugin-softmax", "--samples", "40", "--json"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": env_path},
    )
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["estimator"] == "plugin-softmax[tau=1]"
    # a deterministic estimator: zero variance up to float32 rounding of its gradients
    assert row["total_variance"]["value"] < (1e-6 * row["exact_norm"]) ** 2
