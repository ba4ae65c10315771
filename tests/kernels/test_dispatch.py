"""Backend choice, seeding of the reference path, input validation, loading Triton."""

import os
import subprocess
import sys

import pytest
import torch

from gumbench.errors import GumbenchError
from gumbench.kernels import BACKENDS, dispatch, get_backend, gumbel_argmax, gumbel_softmax, set_backend
from gumbench.kernels.reference import gumbel_softmax_reference
from tests.conftest import require_package


@pytest.fixture(autouse=True)
def no_backend_env(monkeypatch):
    monkeypatch.delenv(dispatch.BACKEND_ENV_VAR, raising=False)


def test_auto_takes_the_reference_on_cpu():
    x = torch.randn(4, 7)
    y = gumbel_softmax(x, 0.5, seed=3)
    y_ref, _ = gumbel_softmax_reference(x, 0.5, generator=torch.Generator().manual_seed(3))
    assert get_backend() == "auto" and torch.equal(y, y_ref)


def test_reference_backend_uses_generator_then_seed_then_global_rng():
    x = torch.randn(4, 7)
    gen = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    expected, index = gumbel_softmax_reference(x, 1.0, True, generator=gen())
    assert torch.equal(gumbel_softmax(x, 1.0, True, generator=gen(), backend="reference"), expected)
    assert torch.equal(gumbel_softmax(x, 1.0, True, seed=9, backend="reference"), expected)
    assert torch.equal(gumbel_argmax(x, 9, backend="reference"), index)
    torch.manual_seed(2)
    a = gumbel_softmax(x, backend="reference")
    torch.manual_seed(2)
    assert torch.equal(a, gumbel_softmax(x, backend="reference"))


def test_set_backend_as_setter_and_context_manager():
    require_package("triton")
    x = torch.randn(2, 5)
    with set_backend("triton"):
        assert get_backend() == "triton"
        y = gumbel_softmax(x, seed=4)
        with set_backend("reference"):
            assert get_backend() == "reference"
        assert get_backend() == "triton"
    assert get_backend() == "auto"
    assert torch.equal(y, gumbel_softmax(x, seed=4, backend="triton"))
    assert not torch.equal(y, gumbel_softmax(x, seed=4))  # auto on CPU: the reference, other noise
    token = set_backend("reference")
    try:
        assert get_backend() == "reference"
    finally:
        token.__exit__(None, None, None)
    assert get_backend() == "auto"


def test_environment_variable(monkeypatch):
    monkeypatch.setenv(dispatch.BACKEND_ENV_VAR, "triton")
    assert get_backend() == "triton"
    monkeypatch.setenv(dispatch.BACKEND_ENV_VAR, "cuda")
    with pytest.raises(GumbenchError, match="GUMBENCH_KERNEL_BACKEND must be one of auto, triton, reference"):
        gumbel_softmax(torch.randn(2, 3))


def test_unknown_backend_names_the_allowed_ones():
    assert BACKENDS == ("auto", "triton", "reference")
    with pytest.raises(GumbenchError, match="auto, triton, reference"):
        gumbel_softmax(torch.randn(2, 3), backend="cuda")
    with pytest.raises(GumbenchError, match="auto, triton, reference"):
        set_backend("fast")


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    require_package("triton")
    monkeypatch.setattr(dispatch, "triton_interpreting", lambda: False)
    with pytest.raises(GumbenchError, match="needs a CUDA tensor.*TRITON_INTERPRET=1"):
        gumbel_softmax(torch.randn(2, 3), backend="triton")


def test_triton_rejects_float64():
    require_package("triton")
    with pytest.raises(GumbenchError, match="float32, float16, bfloat16"):
        gumbel_softmax(torch.randn(2, 3, dtype=torch.float64), backend="triton")
    assert gumbel_softmax(torch.randn(2, 3, dtype=torch.float64)).dtype == torch.float64  # auto: reference


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_input_validation(backend):
    if backend == "triton":
        require_package("triton")
    with pytest.raises(GumbenchError, match="tau"):
        gumbel_softmax(torch.randn(2, 3), tau=0.0, backend=backend)
    with pytest.raises(GumbenchError, match="tau"):
        gumbel_softmax(torch.randn(2, 3), tau=float("inf"), backend=backend)
    with pytest.raises(GumbenchError, match="floating-point"):
        gumbel_softmax(torch.ones(2, 3, dtype=torch.int64), backend=backend)
    with pytest.raises(GumbenchError, match="torch.Tensor"):
        gumbel_softmax([[0.0, 1.0]], backend=backend)
    with pytest.raises(GumbenchError, match="last"):
        gumbel_softmax(torch.randn(2, 0), backend=backend)
    with pytest.raises(GumbenchError, match="seed must be an integer"):
        gumbel_softmax(torch.randn(2, 3), seed=1.5, backend=backend)
    x = torch.randn(2, 3)
    x[0, 0] = float("nan")
    with pytest.raises(GumbenchError, match="NaN"):
        gumbel_softmax(x, seed=0, backend=backend)


def test_uniforms_need_a_gpu_or_the_interpreter(monkeypatch):
    require_package("triton")
    monkeypatch.setattr(dispatch, "triton_interpreting", lambda: False)
    with pytest.raises(GumbenchError, match="TRITON_INTERPRET=1"):
        dispatch.gumbel_uniforms((2, 3), 0)


def run_python(code: str, **env):
    environ = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | env
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120)


def test_importing_the_package_imports_no_triton():
    require_package("triton")  # gumbench.kernels.fused imports it
    code = (
        "import sys, gumbench.kernels as k; assert 'triton' not in sys.modules, 'imported triton';"
        "from gumbench.kernels.fused import GumbelSoftmaxFunction;"
        "assert k.GumbelSoftmaxFunction is GumbelSoftmaxFunction; print('ok')"
    )
    result = run_python(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_without_triton_everything_imports_and_the_reference_runs():
    code = """
import sys
sys.modules["triton"] = None  # import triton raises ImportError, as when it is not installed
import torch
from gumbench.errors import GumbenchError
from gumbench.kernels import gumbel_rao, gumbel_softmax
from gumbench.kernels.dispatch import triton_interpreting
assert gumbel_softmax(torch.randn(2, 3), seed=1).shape == (2, 3)
assert gumbel_rao(torch.randn(2, 3), samples=2, seed=1)[0].shape == (2, 3)
assert not triton_interpreting()
try:
    gumbel_softmax(torch.randn(2, 3), backend="triton")
except GumbenchError as error:
    print(error)
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "backend 'triton' needs the triton package: pip install 'gumbench[kernel]'"


def test_interpret_set_after_triton_import_is_a_clear_error():
    require_package("triton")
    code = (
        "import os, triton, torch; os.environ['TRITON_INTERPRET'] = '1';"
        "from gumbench.kernels import gumbel_softmax; gumbel_softmax(torch.randn(2, 3), backend='triton')"
    )
    result = run_python(code)
    assert result.returncode != 0
    assert "GumbenchError: TRITON_INTERPRET=1 was set after triton was imported" in result.stderr


def test_interpret_changed_after_the_kernels_loaded_is_a_clear_error(monkeypatch):
    require_package("triton")
    assert dispatch.triton_interpreting()  # loads the kernels, interpreted (conftest)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(GumbenchError, match="TRITON_INTERPRET changed after the gumbench kernels were loaded"):
        gumbel_softmax(torch.randn(2, 3), backend="triton")
