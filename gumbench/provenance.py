"""Which code ran: the git commit of the checkout gumbench is imported from (standard library only)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(short: bool = False) -> str:
    """HEAD of the checkout holding this package (``short``: abbreviated hash); "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", *(["--short"] if short else []), "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
