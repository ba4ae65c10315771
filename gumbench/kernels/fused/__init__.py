"""The fused Triton kernels: imported by ``gumbench.kernels.dispatch`` only when the Triton
backend runs, never by ``import gumbench.kernels``.

Modules: ``primitives`` (named constants, Philox noise, tile helpers), ``gumbel_softmax_op``
and ``gumbel_rao_op`` (each op's kernels, launchers and autograd Function).

Triton fixes compiled vs interpreted when it decorates a function, that is when this
package is first imported: TRITON_INTERPRET must be set before anything imports triton
(Triton's own library, ``tl.philox_impl`` included, is decorated at triton's import), and
must not change afterwards. ``interpreting()`` reports the mode and enforces both.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gumbench.errors import GumbenchError

if triton.knobs.runtime.interpret and isinstance(tl.philox_impl, triton.runtime.JITFunction):
    raise GumbenchError(
        "TRITON_INTERPRET=1 was set after triton was imported; Triton's own library is then "
        "compiled-only. Set it before anything imports triton."
    )

from gumbench.kernels.fused.gumbel_rao_op import GumbelRaoFunction  # noqa: E402
from gumbench.kernels.fused.gumbel_softmax_op import (  # noqa: E402
    GumbelSoftmaxFunction,
    launch_forward,
    launch_uniforms,
)
from gumbench.kernels.fused.primitives import INTERPRETED  # noqa: E402

__all__ = [
    "GumbelRaoFunction",
    "GumbelSoftmaxFunction",
    "INTERPRETED",
    "interpreting",
    "launch_forward",
    "launch_uniforms",
]


def interpreting() -> bool:
    """True when the loaded kernels run in Triton's interpreter (on CPU), False when compiled.

    Raises GumbenchError when TRITON_INTERPRET no longer matches how they were loaded.
    """
    if bool(triton.knobs.runtime.interpret) != INTERPRETED:
        loaded = "interpreted (TRITON_INTERPRET=1)" if INTERPRETED else "compiled (TRITON_INTERPRET unset)"
        raise GumbenchError(
            f"TRITON_INTERPRET changed after the gumbench kernels were loaded {loaded}; "
            "set TRITON_INTERPRET before anything imports triton and leave it unchanged."
        )
    return INTERPRETED
