"""Which code ran: the git commit of the checkout gumbench is imported from, and a hash of the
package's sources (standard library only)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


def git_commit(short: bool = False) -> str:
    """HEAD of the checkout holding this package (``short``: abbreviated hash); "unknown" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", *(["--short"] if short else []), "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_hash() -> str:
    """A hash of the gumbench package's sources (every .py file, by relative path and content): the
    code version of a run, exact even in an uncommitted checkout or an installed copy."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:10]
