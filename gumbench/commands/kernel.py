"""``gumbench profile-kernel`` and ``gumbench audit-kernel``: the fused Triton kernels profiled on a GPU, and
compiled for real GPUs on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gumbench.commands.options import writable_folder
from gumbench.errors import GumbenchError


def profile_kernel_command(
    out: Path = typer.Option(
        Path("results/kernel"), "--out", "-o", callback=writable_folder, help="Folder for the CSV and figures."
    ),
    quick: bool = typer.Option(False, "--quick", help="A few sizes only (a smoke run)."),
    provider: Optional[List[str]] = typer.Option(
        None, "--provider", help="Only this provider, repeatable (default: all)."
    ),
    mode: Optional[List[str]] = typer.Option(
        None, "--mode", help="forward, backward or full, repeatable (default: all)."
    ),
) -> None:
    """Profile the fused Gumbel-softmax kernel against eager, torch.compile and fairseq's call (needs a CUDA GPU)."""
    from gumbench.benchmarks.kernel_profile import MODES, profile_kernel

    result = profile_kernel(
        out_dir=str(out),
        quick=quick,
        providers=tuple(provider) if provider else None,
        modes=tuple(mode) if mode else MODES,
    )
    typer.echo(f"profile: {result}")


def audit_kernel_command(
    check: bool = typer.Option(
        False, "--check", help="Compile every kernel variant for each --archs; exit 1 if one fails."
    ),
    archs: List[int] = typer.Option(
        [80, 90], "--archs", help="Compute capability to compile for, repeatable (default: 80 and 90)."
    ),
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="Parallel compiles (default: the CPU count)."),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        callback=writable_folder,
        help="Write the sm_90 SASS and byte tables (ptx_audit.csv/.md) here.",
    ),
) -> int:
    """Compile the fused kernels for real GPUs on the CPU (no GPU needed); run without TRITON_INTERPRET."""
    if not check and out is None:
        raise GumbenchError("nothing to do: pass --check, --out DIR or both")
    from gumbench.benchmarks.kernel_audit import run_audit

    status, lines = run_audit(check=check, archs=tuple(archs), jobs=jobs, out=out)
    for line in lines:
        typer.echo(line.text, err=line.error)
    return status
