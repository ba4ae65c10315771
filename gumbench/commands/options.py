"""Options that commands of several areas share, each checked before the command's work starts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gumbench.threads import torch_threads


def writable_file(value: Optional[Path]) -> Optional[Path]:
    """An output file option, checked before the command's work starts."""
    if value is None:
        return None
    from gumbench.files import check_writable

    return check_writable(value)


def writable_folder(value: Optional[Path]) -> Optional[Path]:
    """An output folder option, checked before the command's work starts."""
    from gumbench.files import check_writable

    return None if value is None else check_writable(value, folder=True)


# --threads, else $GUMBENCH_THREADS, else 1: checked before a command's work starts, applied in it
THREADS = typer.Option(None, "--threads", callback=torch_threads, show_default=False,
                       help="Torch threads per process (per worker in a sweep); default: $GUMBENCH_THREADS, else 1.")
MAX_MEMORY = typer.Option(None, "--max-memory", show_default=False,
                          help="Refuse, before it starts, a run whose estimated peak memory exceeds this size "
                               "(like 8G or 512M); default: $GUMBENCH_MAX_MEMORY, else half the memory available.")
DATA_DIR_HELP = ("Folder of the four IDX files (train/t10k images and labels, gzipped or not) for fashion-vae "
                 "(default: /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist).")
