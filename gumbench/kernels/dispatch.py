"""The public kernel API: Gumbel-softmax, Gumbel-argmax and Gumbel-Rao on the backend of choice.

Every function checks its input here, then runs the PyTorch reference
(``gumbench.kernels.reference``) or the fused Triton kernels (``gumbench.kernels.fused``).
Triton (the optional "kernel" extra) is imported on the first call that runs a kernel, not
here: importing this module stays cheap, works without Triton and touches no GPU driver.
"""

from __future__ import annotations

import contextvars
import operator
import os

import torch

from gumbench.errors import GumbenchError, check_choice, check_positive
from gumbench.kernels import launch
from gumbench.kernels.reference import check_logits, gumbel_rao_reference, gumbel_softmax_reference

__all__ = [
    "BACKENDS",
    "BACKEND_ENV_VAR",
    "get_backend",
    "gumbel_argmax",
    "gumbel_rao",
    "gumbel_softmax",
    "gumbel_uniforms",
    "set_backend",
    "triton_interpreting",
]

BACKENDS = ("auto", "triton", "reference")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BACKEND_ENV_VAR = "GUMBENCH_KERNEL_BACKEND"


# --------------------------------------------------------------------------------------
# Backend choice
# --------------------------------------------------------------------------------------

_backend_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("gumbench_kernel_backend", default=None)


def _check_backend(name) -> str:
    return check_choice("backend", name, BACKENDS)


def get_backend() -> str:
    """The default backend: ``set_backend``'s value, else $GUMBENCH_KERNEL_BACKEND, else "auto"."""
    name = _backend_override.get()
    if name is None:
        name = os.environ.get(BACKEND_ENV_VAR) or "auto"
        if name not in BACKENDS:
            raise GumbenchError(f"${BACKEND_ENV_VAR} must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


class set_backend:
    """Force a backend: ``set_backend("reference")`` sets it for the current context,
    ``with set_backend("triton"): ...`` sets it for the block and restores it after."""

    def __init__(self, name: str):
        self._token = _backend_override.set(_check_backend(name))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        _backend_override.reset(self._token)


def _load_fused():
    """The fused kernels (``gumbench.kernels.fused``), imported on first use; None without Triton.

    Raises GumbenchError when TRITON_INTERPRET was set too late or has changed since.
    """
    try:
        import triton  # noqa: F401
    except ImportError:
        return None
    from gumbench.kernels import fused

    fused.interpreting()  # the mode check
    return fused


def triton_interpreting() -> bool:
    """True when the kernels run in Triton's interpreter (TRITON_INTERPRET=1), on CPU."""
    fused = _load_fused()
    return fused is not None and fused.INTERPRETED


def _resolve_backend(backend, logits: torch.Tensor) -> str:
    name = get_backend() if backend is None else _check_backend(backend)
    if name == "auto":
        use_triton = logits.is_cuda and logits.dtype in TRITON_DTYPES and _load_fused() is not None
        return "triton" if use_triton else "reference"
    if name == "triton":
        if _load_fused() is None:
            raise GumbenchError("backend 'triton' needs the triton package: pip install 'gumbench[kernel]'")
        if logits.dtype not in TRITON_DTYPES:
            allowed = ", ".join(str(d).removeprefix("torch.") for d in TRITON_DTYPES)
            raise GumbenchError(f"backend 'triton' takes logits of dtype {allowed}; got {logits.dtype}")
        if not logits.is_cuda and not (triton_interpreting() and logits.device.type == "cpu"):
            raise GumbenchError(
                f"backend 'triton' needs a CUDA tensor, got one on {logits.device}; on CPU it runs only "
                "under Triton's interpreter (set TRITON_INTERPRET=1)"
            )
    return name


# --------------------------------------------------------------------------------------
# Input checks and seeds
# --------------------------------------------------------------------------------------


def _check_seed(seed) -> int:
    if isinstance(seed, bool):
        raise GumbenchError(f"seed must be an integer, got {seed!r}")
    try:
        return operator.index(seed)
    except TypeError:
        raise GumbenchError(f"seed must be an integer, got {seed!r}") from None


def _draw_seed(generator: torch.Generator | None) -> int:
    """A 63-bit kernel seed drawn from ``generator``, else from the global CPU RNG (seeded
    by torch.manual_seed; no GPU sync). A CUDA generator costs one sync."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**63 - 1, (), generator=generator, device=device, dtype=torch.int64))


def _reference_generator(seed, generator, device) -> torch.Generator | None:
    if generator is not None or seed is None:
        return generator
    return torch.Generator(device=device).manual_seed(seed & ((1 << 64) - 1))


def _check_input(logits) -> None:
    """Type and shape, without a pass over the values (those are checked where they are read)."""
    ok = isinstance(logits, torch.Tensor) and logits.is_floating_point() and logits.dim() >= 1
    if not ok or logits.shape[-1] < 1:
        check_logits(logits)  # raises the reference's message


def _check_samples(samples, n_cols: int, backend: str) -> int:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise GumbenchError(f"samples (M, the conditional Gumbel draws) must be an integer >= 1, got {samples!r}")
    limit, width = launch.MAX_LOOPED_SAMPLES, launch.MAX_SINGLE_BLOCK  # read at call time
    if backend == "triton" and n_cols > width and samples > limit:
        raise GumbenchError(
            f"backend 'triton' takes samples <= {limit} for rows wider than {width} "
            f"(got samples={samples}, K={n_cols}); use backend='reference' or fewer samples"
        )
    if samples >= 2**31 - 1:
        raise GumbenchError(f"samples must be < 2**31 - 1, got {samples}")
    return samples


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float = 1.0,
    hard: bool = False,
    seed: int | None = None,
    *,
    generator: torch.Generator | None = None,
    backend: str | None = None,
    save_y: bool = False,
    return_index: bool = False,
    check: bool = True,
):
    """Gumbel-softmax over the last dimension of ``logits`` (shape (..., K)).

    Returns y in ``logits.dtype``: softmax((logits + g) / tau) computed in fp32, or with
    ``hard=True`` the one-hot of argmax(logits + g) whose gradient is the soft y's
    (straight-through). With ``return_index=True`` returns (y, index), index of shape
    logits.shape[:-1] (int64, not differentiable).

    backend: None (the ``get_backend()`` default), "auto" (Triton on CUDA tensors of
    fp32/fp16/bf16, the PyTorch reference otherwise), "triton" or "reference".
    seed / generator: the triton backend draws noise from an integer seed, taken from
    ``seed``, else drawn from ``generator``, else from the global torch RNG; the
    reference backend uses ``generator``, else a generator seeded with ``seed``, else
    the global RNG. The two backends give different draws for the same seed.
    save_y: the triton backward reads a saved y instead of recomputing it from the logits
    and the seed (more memory, less compute; hard=True then writes y_soft once more).
    check: reject NaN, +inf and all -inf rows with GumbenchError (the triton backend
    checks inside the kernel, then syncs once with the host; check=False skips the sync
    and leaves the output of such rows undefined).
    """
    tau = check_positive("tau", tau)
    if seed is not None:
        seed = _check_seed(seed)
    _check_input(logits)
    if _resolve_backend(backend, logits) == "reference":
        gen = _reference_generator(seed, generator, logits.device)
        y, index = gumbel_softmax_reference(logits, tau, bool(hard), generator=gen, check=check)
        return (y, index) if return_index else y
    if seed is None:
        seed = _draw_seed(generator)
    return _load_fused().GumbelSoftmaxFunction.apply(
        logits, tau, bool(hard), seed, bool(save_y), bool(return_index), bool(check)
    )


def gumbel_argmax(
    logits: torch.Tensor,
    seed: int | None = None,
    *,
    generator: torch.Generator | None = None,
    backend: str | None = None,
    check: bool = True,
) -> torch.Tensor:
    """argmax(logits + g) over the last dimension: a sample of the softmax's categorical.

    Same noise as ``gumbel_softmax(..., seed=seed, return_index=True)[1]`` on the same
    backend; the triton kernel only reads the logits and writes the int64 index.
    """
    if seed is not None:
        seed = _check_seed(seed)
    _check_input(logits)
    if _resolve_backend(backend, logits) == "reference":
        gen = _reference_generator(seed, generator, logits.device)
        with torch.no_grad():
            return gumbel_softmax_reference(logits, 1.0, False, generator=gen, check=check)[1]
    if seed is None:
        seed = _draw_seed(generator)
    with torch.no_grad():
        return _load_fused().launch_forward(
            logits, 1.0, seed, hard=True, write_y=False, write_soft=False, write_index=True, check=check
        )[2]


def gumbel_rao(
    logits: torch.Tensor,
    tau: float = 1.0,
    samples: int = 10,
    seed: int | None = None,
    *,
    generator: torch.Generator | None = None,
    backend: str | None = None,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-Rao straight-through over the last dimension of ``logits``; returns ``(y, index)``.

    y (in ``logits.dtype``) is the one-hot of index ~ Cat(softmax(logits)); its gradient is
    the softmax((logits + g)/tau) Jacobian averaged over ``samples`` draws of g given the
    sample. index (int64, logits.shape[:-1]) is not differentiable.

    backend, seed, generator and check as in ``gumbel_softmax``: the triton backend samples
    with the Gumbel-softmax kernel's noise for the seed (the index equals
    ``gumbel_argmax(logits, seed)``) and regenerates the M draws in registers in the
    backward; the reference backend draws the index and then the (M, ..., V) noise from
    ``generator`` (or a generator seeded with ``seed``).
    """
    tau = check_positive("tau", tau)
    if seed is not None:
        seed = _check_seed(seed)
    _check_input(logits)
    backend = _resolve_backend(backend, logits)
    samples = _check_samples(samples, logits.shape[-1], backend)
    if backend == "reference":
        gen = _reference_generator(seed, generator, logits.device)
        return gumbel_rao_reference(logits, tau, samples, generator=gen, check=check)
    if seed is None:
        seed = _draw_seed(generator)
    return _load_fused().GumbelRaoFunction.apply(logits, tau, samples, seed, bool(check))


def gumbel_uniforms(shape, seed: int, *, stream: int = 0, device="cpu") -> torch.Tensor:
    """The uniforms the Triton kernels draw for ``seed`` over a (..., K) shape.

    Feeding them to ``gumbel_softmax_reference(uniforms=...)`` reproduces the kernel's
    forward; tests use it to compare the two paths draw for draw. ``stream`` 0 is the
    Gumbel-softmax noise (and the Gumbel-Rao sample), 1..M the Gumbel-Rao kernel's
    conditional draws.
    """
    seed = _check_seed(seed)
    stream = _check_seed(stream)
    if not 0 <= stream < 2**31:
        raise GumbenchError(f"stream must be in [0, 2**31), got {stream}")
    fused = _load_fused()
    if fused is None:
        raise GumbenchError("gumbel_uniforms needs the triton package: pip install 'gumbench[kernel]'")
    if torch.device(device).type != "cuda" and not triton_interpreting():
        raise GumbenchError("gumbel_uniforms runs on a CUDA device, or on CPU under TRITON_INTERPRET=1")
    return fused.launch_uniforms(tuple(shape), seed, stream, device)
