"""Backend choice, seeding of the reference path, input validation."""

import pytest
import torch

from gumbench.errors import GumbenchError
from gumbench.kernels import BACKENDS, dispatch, get_backend, gumbel_argmax, gumbel_softmax, set_backend
from gumbench.kernels.reference import gumbel_softmax_reference


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
    monkeypatch.setattr(dispatch, "triton_interpreting", lambda: False)
    with pytest.raises(GumbenchError, match="needs a CUDA tensor.*TRITON_INTERPRET=1"):
        gumbel_softmax(torch.randn(2, 3), backend="triton")


def test_triton_rejects_float64():
    with pytest.raises(GumbenchError, match="float32, float16, bfloat16"):
        gumbel_softmax(torch.randn(2, 3, dtype=torch.float64), backend="triton")
    assert gumbel_softmax(torch.randn(2, 3, dtype=torch.float64)).dtype == torch.float64  # auto: reference


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_input_validation(backend):
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
    monkeypatch.setattr(dispatch, "triton_interpreting", lambda: False)
    with pytest.raises(GumbenchError, match="TRITON_INTERPRET=1"):
        dispatch.gumbel_uniforms((2, 3), 0)
