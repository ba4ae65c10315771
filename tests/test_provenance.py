"""gumbench.provenance: git_commit names HEAD of the checkout holding the package ("unknown" elsewhere) and
code_hash changes with any .py source of the package and with nothing else. Both are tried on a copy of
the module placed in a small package of its own, so that the checkout and sources are known here."""

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import gumbench
from gumbench import provenance
from tests.conftest import require_program


def load_copy(package: Path):
    """gumbench/provenance.py copied into ``package`` and imported from there (so its __file__ is there)."""
    package.mkdir(parents=True, exist_ok=True)
    shutil.copy(provenance.__file__, package / "provenance.py")
    spec = importlib.util.spec_from_file_location(f"copy_{abs(hash(str(package)))}", package / "provenance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git(*args, cwd):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_git_commit_is_head_of_the_checkout_holding_the_package(tmp_path):
    require_program("git", "git")
    repo = tmp_path / "repo"
    copy = load_copy(repo / "pkg")
    assert copy.git_commit() == copy.git_commit(short=True) == "unknown", "no checkout yet"
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "first", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo)
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    assert copy.git_commit() == head
    short = copy.git_commit(short=True)
    assert head.startswith(short) and 4 <= len(short) < 40
    (repo / "pkg" / "more.py").write_text("x = 1\n")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "second", cwd=repo)
    assert copy.git_commit() == git("rev-parse", "HEAD", cwd=repo) != head


def test_git_commit_of_this_checkout_or_unknown():
    """This package's own: HEAD where it is imported from a git checkout, else "unknown"."""
    folder = Path(gumbench.__file__).resolve().parent
    git_path = shutil.which("git")
    head = (subprocess.run([git_path, "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
            if git_path else None)
    expected = head.stdout.strip() if head is not None and head.returncode == 0 else "unknown"
    assert provenance.git_commit() == expected


@pytest.mark.parametrize("failure", [OSError("no git"), subprocess.TimeoutExpired("git", 5)])
def test_git_commit_is_unknown_when_git_cannot_run(monkeypatch, failure):
    def run(*args, **kwargs):
        raise failure

    monkeypatch.setattr(provenance.subprocess, "run", run)
    assert provenance.git_commit() == "unknown" and provenance.git_commit(short=True) == "unknown"


def expected_hash(package: Path, relative_paths: list[str]) -> str:
    """The documented digest, written out: sha256 over (relative path, NUL, content, NUL) in path order, 10 hex
    digits."""
    digest = hashlib.sha256()
    for name in relative_paths:
        digest.update(name.encode() + b"\0" + (package / name).read_bytes() + b"\0")
    return digest.hexdigest()[:10]


def test_code_hash_covers_every_python_source_and_nothing_else(tmp_path):
    package = tmp_path / "pkg"
    copy = load_copy(package)
    (package / "sub").mkdir()
    (package / "a.py").write_text("A = 1\n")
    (package / "sub" / "b.py").write_text("B = 2\n")
    first = copy.code_hash()
    assert re.fullmatch(r"[0-9a-f]{10}", first)
    assert first == expected_hash(package, ["a.py", "provenance.py", "sub/b.py"])

    (package / "notes.txt").write_text("not code\n")
    (package / "data.json").write_text("{}\n")
    os.utime(package / "a.py", (0, 0))
    assert copy.code_hash() == first, "other files and timestamps do not count"

    (package / "sub" / "b.py").write_text("B = 3\n")
    changed = copy.code_hash()
    assert changed != first and changed == expected_hash(package, ["a.py", "provenance.py", "sub/b.py"])
    (package / "sub" / "b.py").write_text("B = 2\n")
    assert copy.code_hash() == first, "the same sources give the same hash"

    (package / "sub" / "b.py").rename(package / "sub" / "c.py")  # same content, another path
    assert copy.code_hash() not in (first, changed)
    (package / "sub" / "c.py").rename(package / "sub" / "b.py")
    (package / "sub" / "new.py").write_text("")  # even an empty module counts
    assert copy.code_hash() != first


def test_code_hash_of_the_package_is_stable_within_a_process():
    assert provenance.code_hash() == provenance.code_hash()
    assert re.fullmatch(r"[0-9a-f]{10}", provenance.code_hash())
