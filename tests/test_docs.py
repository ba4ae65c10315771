"""The README's and docs' code is run, not just read: Python blocks execute (each file's blocks in
order, in one namespace), `gumbench` command lines in shell blocks parse against the real CLI,
TOML blocks are valid sweep configs; and every number the pages quote from results/ sits in a block
that scripts/write_docs.py generates, equal to what the committed results give."""

import importlib.util
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)


def python_blocks():
    return [block for page in PAGES for block in blocks(page, "python")]


@pytest.fixture
def isolated_registries(monkeypatch):
    """Examples may register plugins: leave the global registries as they were."""
    from gumbench.benchmarks.problems import registry as toys
    from gumbench.benchmarks.training import registry as training
    from gumbench.estimators import registry as estimators

    for registry in (estimators, toys, training):
        monkeypatch.setattr(registry, "_classes", dict(registry._classes))


def test_readme_starts_with_exactly_two_commands():
    first = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1).strip().splitlines()
    assert len(first) == 2
    assert "gumbench sweep" in first[0] and "pip install" in first[0]
    assert first[1].strip() == ".venv/bin/python -m pytest"
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert first[1].strip() in ci


def test_readme_is_short_and_links_every_doc():
    assert len(README.splitlines()) <= 200
    for page in DOCS:
        assert f"docs/{page.name}" in README, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run(page, isolated_registries, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything an example writes stays in a temporary folder
    namespace = {}
    for number, block in enumerate(blocks(page, "python")):
        exec(compile(block, f"{page.name} python block {number + 1}", "exec"), namespace)


def test_readme_own_estimator_example_runs(isolated_registries):
    from gumbench.benchmarks import gradient_statistics, make_task
    from gumbench.estimators import make_estimator

    example = next(b for b in python_blocks() if "class DeterministicSoftmax" in b)
    namespace = {}
    exec(compile(example, "docs/estimators.md", "exec"), namespace)
    est = make_estimator("softmax[tau=0.5]")
    logits = torch.randn(3, 2, 4, requires_grad=True)
    out = est(logits, lambda y: y.pow(2).sum((-2, -1)))
    out.surrogate.sum().backward()
    assert logits.grad.abs().sum() > 0
    toy = make_task("categorical[groups=2,categories=3]")
    stats = gradient_statistics("softmax", toy.logits, toy.loss, 100)
    assert stats.total_variance.value < (1e-6 * stats.exact_norm) ** 2


def test_readme_gradient_statistics_example_runs():
    block = next(b for b in python_blocks() if "gradient_statistics(" in b)
    exec(compile(block, "README.md", "exec"), {})


def command_lines():
    """Every `gumbench ...` invocation in the shell blocks: (page name, argument list)."""
    found = []
    for page in PAGES:
        for block in blocks(page, "bash"):
            for line in block.splitlines():
                for part in line.split("#")[0].split("&&"):
                    words = shlex.split(part)
                    if words and words[0].endswith("gumbench"):
                        found.append((page.name, words[1:]))
    return found


@pytest.mark.parametrize("page, args", command_lines(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_command_lines_parse(page, args):
    """Each command and its options exist and their values have the right types (nothing runs)."""
    import typer

    from gumbench.cli import app

    group = typer.main.get_command(app)
    context = group.make_context("gumbench", list(args))
    name, command, rest = group.resolve_command(context, list(args))
    command.make_context(name, rest, parent=context)


def test_readme_sweep_config_is_valid(tmp_path):
    from gumbench.benchmarks.sweep import expand_units, load_config

    block = next(b for page in PAGES for b in blocks(page, "toml"))
    path = tmp_path / "sweep.toml"
    path.write_text(block)
    units, _ = expand_units(load_config(path))
    # 4 categorical variants + bernoulli = 5 toys, x (4 + 2) estimators, x 3 repetitions; 2 x 2 x 3 training
    assert sum(u.kind == "gradstats" for u in units) == 5 * 6 * 3
    assert sum(u.kind == "training" for u in units) == 2 * 2 * 3


def load_write_docs():
    spec = importlib.util.spec_from_file_location("write_docs", ROOT / "scripts" / "write_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


write_docs = load_write_docs()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_quoted_numbers_are_what_the_committed_results_give(page):
    """Every generated block of the page equals what scripts/write_docs.py writes from results/ now:
    a changed result or a hand-edited number fails here, naming the page, the block and the first
    differing line (run `python scripts/write_docs.py` to rewrite the blocks)."""
    problems = write_docs.stale(page, ROOT)
    assert not problems, "\n".join(problems)


def test_every_generator_is_used_and_every_block_is_known():
    used = {name for page in PAGES for name, _ in write_docs.blocks(page.read_text())}
    assert set(write_docs.BLOCKS) <= used, f"generators no page uses: {sorted(set(write_docs.BLOCKS) - used)}"
    assert used <= set(write_docs.BLOCKS), (
        f"blocks scripts/write_docs.py does not know: {sorted(used - set(write_docs.BLOCKS))}"
    )


def test_a_hand_edited_number_is_caught():
    """The check itself: one digit changed inside a block, an unknown block and an unclosed marker are reported."""
    page = ROOT / "docs" / "statistics.md"
    text = page.read_text()
    name, content = write_docs.blocks(text)[0]
    line = next(line for line in content.splitlines() if re.search(r"\d", line))
    edited = re.sub(r"\d", lambda m: str((int(m[0]) + 1) % 10), line, count=1)
    (problem,) = write_docs.stale(page, ROOT, text.replace(line, edited, 1))
    assert problem.startswith(f"statistics.md: {name}: line ") and repr(edited) in problem
    unknown = (
        text + "\n" + write_docs.START.format("no-such-block") + "\n" + write_docs.END.format("no-such-block") + "\n"
    )
    assert write_docs.stale(page, ROOT, unknown) == [
        "statistics.md: no-such-block: no such block in scripts/write_docs.py"
    ]
    assert write_docs.stale(page, ROOT, text + "\n" + write_docs.START.format(name) + "\n")[0].endswith(
        "without its pair"
    )
    assert write_docs.render(text.replace(line, edited, 1), ROOT) == text


def test_a_changed_result_is_caught(tmp_path):
    """The same page against a copy of results/ where one estimator's variance changed."""
    rows = json.loads((ROOT / "results" / "gradstats-default.json").read_text())
    rows[0]["total_variance"]["value"] *= 1.5
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "gradstats-default.json").write_text(json.dumps(rows))
    shutil.copytree(
        ROOT / "results" / "throughput", tmp_path / "results" / "throughput"
    )  # the page's other results, unchanged
    problems = write_docs.stale(ROOT / "docs" / "statistics.md", tmp_path)
    assert [p.split(":")[1].strip() for p in problems] == ["gradstats-default-table", "gradstats-default-finding"]
