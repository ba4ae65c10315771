"""Every bad input to the CLI gets one line, ``gumbench: error: ...``, and exit status 2: no
traceback, nothing written (outside the output folder or at all), no run without bound.

Each case runs the real command in this process (``gumbench.cli.main``) in an empty folder, with
a time bound; the classes follow the issue that found them. ``python -m pytest tests/test_bad_input.py``
also serves to count clean cases of another checkout (PYTHONPATH=that checkout)."""

import os
import signal
from pathlib import Path

import pytest

HUGE = str(10**12)
BEYOND_INT64 = str(2**70)
BOUND_S = 60  # seconds a refusal may take at most (imports included)


def results_file(folder: Path, rows: int | None = None) -> Path:
    """A real gumbench results file (a tiny sweep's), cut to ``rows`` rows when given (0 allowed)."""
    import pandas as pd

    from gumbench.benchmarks.sweep import run_sweep
    from gumbench.benchmarks.sweep.store import METADATA_COLUMNS, read_metadata, write_parquet

    config = {
        "name": "tiny",
        "repetitions": 2,
        "gradstats": {"tasks": ["bernoulli"], "estimators": ["st-gumbel"], "samples": 20},
    }
    run = run_sweep(config, out=folder / ".tiny", progress=False)
    frame = pd.read_parquet(run.results).drop(columns=list(METADATA_COLUMNS))
    path = write_parquet(frame if rows is None else frame.iloc[:rows], folder / "r.parquet", read_metadata(run.results))
    import shutil

    shutil.rmtree(folder / ".tiny")
    return path


def setup(kind: str, folder: Path) -> None:
    """Files a case needs, made in its empty folder."""
    if kind == "garbage":
        (folder / "r.parquet").write_text("this is not parquet\n")
    elif kind == "binary":
        (folder / "r.parquet").write_bytes(os.urandom(4096))
    elif kind == "truncated":
        path = results_file(folder)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "zero rows":
        results_file(folder, 0)
    elif kind == "foreign parquet":
        import pandas as pd

        pd.DataFrame({"a": [1, 2]}).to_parquet(folder / "r.parquet")
    elif kind == "garbage unit":
        (folder / "run" / "units").mkdir(parents=True)
        (folder / "run" / "units" / "u.parquet").write_bytes(b"PAR1" + os.urandom(100))
    elif kind == "results":
        results_file(folder)
    elif kind == "file":
        (folder / "file").write_text("a file, not a folder\n")
    elif kind == "folder":
        (folder / "out.json").mkdir()
    elif kind == "non-utf8 toml":
        (folder / "c.toml").write_bytes(b'name = "\xff\xfe"\n')
    elif kind == "non-utf8 yaml":
        (folder / "c.yaml").write_bytes(b"name: \xff\xfe\x00\n")
    elif kind == "txt":
        (folder / "x.txt").write_text("name = 'x'\n")
    elif kind == "bad csv":
        results_file(folder)
        (folder / "k.csv").write_bytes(b"\x00\xff\x10binary")
    elif kind == "empty csv":
        results_file(folder)
        (folder / "k.csv").write_text("")
    elif kind == "wrong csv":
        results_file(folder)
        (folder / "k.csv").write_text("a,b\n1,2\n")
    elif kind == "config name":
        (folder / "c.toml").write_text(
            'name = "../escape"\n[gradstats]\ntasks = ["bernoulli"]\nestimators = ["st-gumbel"]\nsamples = 10\n'
        )
    elif kind:
        setup_more(kind, folder)


CASES = [
    # report on what is not results
    ("report on bad files", "garbage", ["report", "r.parquet", "-o", "rep"]),
    ("report on bad files", "binary", ["report", "r.parquet", "-o", "rep"]),
    ("report on bad files", "truncated", ["report", "r.parquet", "-o", "rep"]),
    ("report on bad files", "zero rows", ["report", "r.parquet", "-o", "rep"]),
    ("report on bad files", "foreign parquet", ["report", "r.parquet", "-o", "rep"]),
    ("report on bad files", "garbage unit", ["report", "run", "-o", "rep"]),
    ("report on bad files", "", ["report", "missing.parquet", "-o", "rep"]),
    ("report on bad files", "file", ["report", "file", "-o", "rep"]),
    ("report on bad files", "bad csv", ["report", "r.parquet", "--kernel", "k.csv", "-o", "rep"]),
    ("report on bad files", "empty csv", ["report", "r.parquet", "--kernel", "k.csv", "-o", "rep"]),
    ("report on bad files", "wrong csv", ["report", "r.parquet", "--kernel", "k.csv", "-o", "rep"]),
    ("report on bad files", "", ["report", "r.parquet", "--kernel", "missing.csv", "-o", "rep"]),
    # output paths that cannot be written
    ("unwritable outputs", "file", ["gradstats", "-s", "10", "-o", "file/x.json"]),
    ("unwritable outputs", "folder", ["gradstats", "-s", "10", "-o", "out.json"]),
    ("unwritable outputs", "file", ["optimize", "--steps", "2", "-o", "file/x.csv"]),
    ("unwritable outputs", "folder", ["optimize", "--steps", "2", "-o", "out.json"]),
    ("unwritable outputs", "file", ["train", "--steps", "2", "-o", "file/x.csv"]),
    ("unwritable outputs", "folder", ["train", "--steps", "2", "-o", "out.json"]),
    (
        "unwritable outputs",
        "file",
        ["sweep", "--out", "file/runs", "--samples", "10", "-e", "st-gumbel", "--no-report"],
    ),
    ("unwritable outputs", "results", ["report", "r.parquet", "-o", "r.parquet/x"]),
    ("unwritable outputs", "file", ["elbo-study", "-o", "file/x"]),
    ("unwritable outputs", "file", ["speech-study", "-o", "file/x"]),
    ("unwritable outputs", "file", ["audit-kernel", "-o", "file/x"]),
    # configs and sizes
    ("configs and sizes", "non-utf8 toml", ["sweep", "c.toml", "--out", "runs"]),
    ("configs and sizes", "non-utf8 yaml", ["sweep", "c.yaml", "--out", "runs"]),
    ("configs and sizes", "txt", ["sweep", "x.txt", "--out", "runs"]),
    ("configs and sizes", "", ["sweep", "missing.toml", "--out", "runs"]),
    ("configs and sizes", "", ["gradstats", "--samples", HUGE]),
    ("configs and sizes", "", ["gradstats", "--samples", "0"]),
    ("configs and sizes", "", ["gradstats", "--samples", "-5"]),
    ("configs and sizes", "", ["gradstats", "--seed", "-1"]),
    ("configs and sizes", "", ["gradstats", "--seed", BEYOND_INT64]),
    ("configs and sizes", "", ["gradstats", "-e", f"gumbel-rao[samples={HUGE}]", "-s", "10"]),
    ("configs and sizes", "", ["gradstats", "-t", f"categorical[categories={HUGE}]", "-s", "10"]),
    ("configs and sizes", "", ["optimize", "--steps", HUGE]),
    ("configs and sizes", "", ["optimize", "--batch", HUGE]),
    ("configs and sizes", "", ["optimize", "--steps", "0"]),
    ("configs and sizes", "", ["optimize", "--lr", "nan"]),
    ("configs and sizes", "", ["train", "--steps", HUGE]),
    ("configs and sizes", "", ["train", "--seed", BEYOND_INT64, "--steps", "2"]),
    ("configs and sizes", "", ["train", "-t", f"gmm-vq[batch={HUGE}]", "--steps", "2"]),
    ("configs and sizes", "", ["sweep", "--samples", HUGE, "--out", "runs", "-e", "st-gumbel"]),
    ("configs and sizes", "", ["sweep", "--repetitions", HUGE, "--out", "runs"]),
    ("configs and sizes", "", ["sweep", "--base-seed", BEYOND_INT64, "--out", "runs"]),
    ("configs and sizes", "", ["sweep", "-j", "0", "--out", "runs"]),
    ("configs and sizes", "", ["elbo-study", "--samples", HUGE]),
    ("configs and sizes", "", ["elbo-study", "--points", HUGE]),
    ("configs and sizes", "", ["elbo-study", "--checkpoints", "0,-5"]),
    ("configs and sizes", "", ["speech-study", "--samples", HUGE]),
    ("configs and sizes", "", ["speech-study", "--crops", HUGE]),
    ("configs and sizes", "", ["speech-study", "--reference-samples", HUGE]),
    # sweep names
    ("sweep names", "", ["sweep", "--name", "../../x", "--out", "runs"]),
    ("sweep names", "", ["sweep", "--name", "/abs/path", "--out", "runs"]),
    ("sweep names", "", ["sweep", "--name", "", "--out", "runs"]),
    ("sweep names", "", ["sweep", "--name", "-x", "--out", "runs"]),
    ("sweep names", "config name", ["sweep", "c.toml", "--out", "runs"]),
    # names, parameters and messages
    ("names and parameters", "", ["train", "-t", "tones[snr=nan]", "--steps", "2"]),
    ("names and parameters", "", ["gradstats", "-t", "categorical[scale=nan]"]),
    ("names and parameters", "", ["gradstats", "-t", "categorical[scale=inf]"]),
    ("names and parameters", "", ["gradstats", "-t", "categorical[categories=-1]"]),
    ("names and parameters", "", ["gradstats", "--tau", "nan"]),
    ("names and parameters", "", ["gradstats", "--tau", "-1"]),
    ("names and parameters", "", ["gradstats", "-e", "nope"]),
    ("names and parameters", "", ["gradstats", "-e", "st-gumbel[tau=]"]),
    ("names and parameters", "", ["gradstats", "-e", "st-gumbel[tau=1"]),
    ("names and parameters", "", ["gradstats", "-e", "vq-commitment"]),
    ("names and parameters", "", ["train", "-t", "nope"]),
    ("names and parameters", "", ["train", "--audio-dir", "missing", "-t", "logmel-vqvae", "--steps", "2"]),
    ("names and parameters", "", ["list", "bogus"]),
    ("names and parameters", "", ["explain", "--variant", "bogus"]),
    ("names and parameters", "", ["explain", "--seed", "-1"]),
    ("names and parameters", "", ["explain", "--seed", BEYOND_INT64]),
    # quantizer problems: a reference at rounding level, options that rewrite the codebook, a --tau nothing takes
    ("names and parameters", "", ["gradstats", "-t", "vq-distance[T=0.01]", "-s", "10"]),
    ("names and parameters", "", ["gradstats", "-t", "vq-distance[stages=2,codes=2]", "-s", "10"]),
    ("names and parameters", "", ["gradstats", "-t", "vq-distance", "-e", "vq-commitment[init=kmeans]", "-s", "10"]),
    ("names and parameters", "", ["gradstats", "-t", "vq-distance", "-e", "fsq", "-s", "10"]),
    (
        "names and parameters",
        "",
        ["gradstats", "-t", "quantizer-smoothed[reference_samples=1024]", "--tau", "0.5", "-s", "10"],
    ),
    ("names and parameters", "", ["gradstats", "-t", "quantizer-smoothed[sigma=0]", "-s", "10"]),
    ("names and parameters", "", ["gradstats", "--bogus"]),
    ("names and parameters", "", ["bogus"]),
    ("names and parameters", "", ["sweep", "--backend", "cluster", "--out", "runs"]),
    # thread counts (--threads; $GUMBENCH_THREADS is tested in tests/test_threads.py)
    ("threads", "", ["gradstats", "-s", "10", "--threads", "0"]),
    ("threads", "", ["gradstats", "-s", "10", "--threads", "-1"]),
    ("threads", "", ["gradstats", "-s", "10", "--threads", str(10**9)]),
    ("threads", "", ["gradstats", "-s", "10", "--threads", "x"]),
    ("threads", "", ["optimize", "--steps", "2", "--threads", "0"]),
    ("threads", "", ["train", "--steps", "2", "--threads", BEYOND_INT64]),
    ("threads", "", ["sweep", "--out", "runs", "--threads", "0"]),
    ("threads", "", ["sweep", "--out", "runs", "-j", "2", "--threads", "x"]),
    ("threads", "", ["elbo-study", "--threads", "-1"]),
    ("threads", "", ["speech-study", "--threads", "0"]),
    ("threads", "", ["explain", "--threads", str(10**9)]),
]


class Hang(Exception):
    pass


def run_case(argv, folder: Path, capsys):
    """(exit status, stderr) of the command run in ``folder``; raises Hang past BOUND_S."""
    from gumbench.cli import main

    def alarm(*_):
        raise Hang(f"no answer within {BOUND_S} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(BOUND_S)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code = main(list(argv))
    finally:
        os.chdir(cwd)
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return code, capsys.readouterr().err


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def setup_more(kind: str, folder: Path) -> None:
    """Files of the cases an adversarial pass found, made in the case's empty folder."""
    if kind == "fifo":
        os.mkfifo(folder / "pipe")
    elif kind == "symlink":
        (folder / "link").symlink_to(folder / "nowhere")
    elif kind == "deep yaml":
        (folder / "c.yaml").write_text("gradstats: " + "[" * 5000 + "]" * 5000 + "\n")
    elif kind == "huge grid":
        taus = ",".join(str(0.01 + i / 1000) for i in range(1000))
        seeds = ",".join(map(str, range(1000)))
        (folder / "c.toml").write_text(f'repetitions = 1000\n[gradstats]\ntasks = ["categorical[seed=[{seeds}]]"]\n'
                                       f'estimators = ["st-gumbel[tau=[{taus}]]"]\n')
    elif kind == "config folder":
        (folder / "c.toml").mkdir()
    elif kind in ("damaged metadata", "string values"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = results_file(folder)
        table = pq.read_table(path)
        if kind == "damaged metadata":
            table = table.replace_schema_metadata({b"gumbench": b"{not json"})
        else:
            table = table.set_column(
                table.schema.get_field_index("value"), "value", pa.array([str(v) for v in table["value"].to_pylist()])
            )
        path.unlink()
        pq.write_table(table, path)
    elif kind == "tiny config":
        (folder / "c.toml").write_text('[gradstats]\ntasks = ["bernoulli"]\nestimators = ["st-gumbel"]\nsamples = 10\n')
    elif kind:
        raise ValueError(kind)


MORE_CASES = [
    ("special files", "fifo", ["gradstats", "-s", "10", "-e", "st-gumbel", "-o", "pipe"]),
    ("special files", "symlink", ["gradstats", "-s", "10", "-e", "st-gumbel", "-o", "link"]),
    ("special files", "", ["gradstats", "-s", "10", "-e", "st-gumbel", "-o", "/dev/null"]),
    ("configs and sizes", "deep yaml", ["sweep", "c.yaml", "--out", "runs"]),
    ("configs and sizes", "huge grid", ["sweep", "c.toml", "--out", "runs"]),
    ("configs and sizes", "config folder", ["sweep", "c.toml", "--out", "runs"]),
    (
        "configs and sizes",
        "",
        ["train", "-t", "gmm-vq", "-e", "vq-commitment[init=kmeans,kmeans_iters=100000000]", "--steps", "2"],
    ),
    ("configs and sizes", "", ["elbo-study", "--checkpoints", ",".join(map(str, range(1000)))]),
    ("configs and sizes", "", ["elbo-study", "--checkpoints", "3,3"]),
    ("configs and sizes", "", ["audit-kernel", "--archs", "1000000", "--check"]),
    (
        "configs and sizes",
        "tiny config",
        ["sweep", "c.toml", "--out", "runs", "--backend", "dask", "--scheduler", "garbage"],
    ),
    ("report on bad files", "damaged metadata", ["report", "r.parquet", "-o", "rep"]),
    ("report on bad files", "string values", ["report", "r.parquet", "-o", "rep"]),
]


@pytest.mark.parametrize(
    "kind, prepare, argv", CASES + MORE_CASES, ids=[f"{c[0]}: {' '.join(c[2])[:80]}" for c in CASES + MORE_CASES]
)
def test_bad_input_gets_one_line_and_exit_2(kind, prepare, argv, tmp_path, capsys):
    folder = tmp_path / "case"
    folder.mkdir()
    setup(prepare, folder)
    before = files(folder)
    device = os.stat("/dev/null")
    capsys.readouterr()
    code, err = run_case(argv, folder, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gumbench: error: "), err[-3000:]
    assert "Traceback" not in err
    assert files(folder) == before, f"an error left files behind: {sorted(files(folder) - before)}"
    assert not any(tmp_path.parent.glob("escape*")) and not (Path("/abs/path")).exists()
    assert os.stat("/dev/null").st_rdev == device.st_rdev and Path("/dev/null").is_char_device(), (
        "a device was replaced"
    )


# --- issue 25: refused before the work starts, never a hang, never memory exhausted -----------------------

def fake_program(folder: Path, name: str, script: str) -> None:
    """An executable ``folder/bin/name`` running ``script`` (sh); PATH is set to folder/bin by the case."""
    path = folder / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


SBATCH = {  # what sbatch does in each case: hang, answer garbage, or pass the test submission then answer garbage
    "hanging sbatch": "exec sleep 60",
    "garbled sbatch": "echo 'Welcome to the cluster! Have a nice day'",
    "garbled submission": "case \"$*\" in *--test-only*) echo 'sbatch: Job 7 to start at 2030-01-01T00:00:00' >&2;; "
                          "*) echo 'queued, thanks';; esac",
}


def setup_25(kind: str, folder: Path, monkeypatch) -> None:
    """Files, programs and modules of the issue-25 cases (missing modules are None in sys.modules: not importable)."""
    import sys

    if kind in SBATCH or kind == "no sbatch":
        if kind != "no sbatch":
            fake_program(folder, "sbatch", SBATCH[kind])
            fake_program(folder, "srun", "exit 0")
        (folder / "bin").mkdir(exist_ok=True)
        monkeypatch.setenv("PATH", str(folder / "bin"))
    elif kind in ("no submitit", "no distributed"):
        monkeypatch.setitem(sys.modules, kind.split()[1], None)
        if kind == "no submitit":
            fake_program(folder, "sbatch", "exit 0")
            fake_program(folder, "srun", "exit 0")
            monkeypatch.setenv("PATH", str(folder / "bin"))
    elif kind.startswith("config: "):
        (folder / "c.toml").write_text(kind.removeprefix("config: ").replace("; ", "\n") + "\n")
    elif kind.startswith("fashion: "):
        from tests.benchmarks.training.test_images import write_dataset

        train, side = {"no images": (0, 6), "0x0 pixels": (40, 0)}[kind.removeprefix("fashion: ")]
        write_dataset(folder / "data", train=train, test=train, side=side)
    elif kind == "gzip bomb":
        bomb(folder / "data")
    elif kind:
        setup(kind, folder)


def bomb(data: Path) -> None:
    """A fashion-vae folder whose training images are a 1 MB gzip file inflating to 1 GB (a header of 10 GB)."""
    import struct
    import zlib

    from tests.benchmarks.training.test_images import NAMES, write_dataset

    write_dataset(data)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = deflate.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", 10**6, 100, 100))
    body += b"".join(deflate.compress(bytes(2**20)) for _ in range(1000)) + deflate.flush()
    (data / (NAMES["train_images"] + ".gz")).write_bytes(body)


SWEEP = ["sweep", "c.toml", "--out", "runs", "--no-report"]
TINY = 'config: [gradstats]; tasks = ["bernoulli"]; estimators = ["st-gumbel"]; samples = 10'
QUICK = ["--connect-timeout", "3"]
BIG_VQ = "quantizer-smoothed[quantizer=vq,codes=65536]"
CASES_25 = [
    ("refused before the run", 'config: [gradstats]; tasks = ["bernoulli"]; estimators = ["st-gumbel"]; samples = 2',
     SWEEP),
    ("refused before the run", 'config: [training]; tasks = ["gmm-vq"]; estimators = ["residual-vq[stages=64]"]; '
     'steps = 2', SWEEP),
    ("refused before the run", 'config: [training]; tasks = ["gmm-vq"]; estimators = ["fsq[levels=8-5]"]; steps = 2',
     SWEEP),
    ("refused before the run", f'config: [gradstats]; tasks = ["{BIG_VQ}"]; estimators = ["vq-commitment"]; '
     'samples = 100', SWEEP),
    ("refused before the run", "no sbatch", ["sweep", "--out", "runs", "--backend", "slurm", "--partition", "p"]),
    ("refused before the run", "no submitit", ["sweep", "--out", "runs", "--backend", "slurm", "--partition", "p"]),
    ("refused before the run", "no distributed", ["sweep", "--out", "runs", "--backend", "dask"]),
    ("memory", "", ["gradstats", "-t", BIG_VQ, "-e", "vq-commitment", "-s", "100"]),
    ("memory", "", ["gradstats", "-t", BIG_VQ[:-1] + ",groups=16,dim=16]", "-e", "vq-commitment", "-s", "100"]),
    ("memory", "", ["gradstats", "-t", "quantizer-smoothed[quantizer=lfq,dim=16]", "-s", "100"]),
    ("memory", "", ["gradstats", "-t", "quantizer-smoothed[codes=4096]", "-e", "vq-commitment", "--max-memory", "1G"]),
    ("memory", "", ["gradstats", "-s", "10", "--max-memory", "lots"]),
    ("memory", "", ["gradstats", "-s", "10", "--max-memory", "0"]),
    ("memory", "gzip bomb", ["train", "-t", "fashion-vae", "--data-dir", "data", "--steps", "2"]),
    ("backends", TINY, [*SWEEP, "--backend", "dask", "--scheduler", "{http}"]),
    ("backends", TINY, [*SWEEP, "--backend", "dask", "--scheduler", "{silent}", *QUICK]),
    ("backends", TINY, [*SWEEP, "--backend", "dask", "--scheduler", "{proxy}", *QUICK]),
    ("backends", TINY, [*SWEEP, "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9", *QUICK]),
    ("backends", "hanging sbatch", ["sweep", "--out", "runs", "--backend", "slurm", "--partition", "p", *QUICK]),
    ("backends", "garbled sbatch", ["sweep", "--out", "runs", "--backend", "slurm", "--partition", "p", *QUICK]),
    ("backends", "garbled submission", [*SWEEP[:-1], "--backend", "slurm", "--partition", "p", *QUICK]),
    ("backends", TINY, [*SWEEP, "--backend", "local", "--scheduler", "tcp://127.0.0.1:8786"]),
    ("backends", TINY, [*SWEEP, "--backend", "local", "--partition", "p"]),
    ("backends", TINY, [*SWEEP, "--backend", "dask", "--time", "5"]),
    ("backends", TINY, [*SWEEP, "--backend", "local", *QUICK]),
    ("backends", TINY, [*SWEEP, "--backend", "dask", "--connect-timeout", "0"]),
    ("internal errors", "", ["gradstats", "-t", "vq-distance", "-e", "fsq[levels=²-5]", "-s", "10"]),
    ("internal errors", "", ["gradstats", "-t", "quantizer-smoothed[quantizer=fsq,levels=²-5,dim=2]", "-s", "10"]),
    ("internal errors", "", ["gradstats", "-t", "categorical[categories=٣]", "-s", "10"]),
    ("internal errors", "", ["optimize", "-t", "vq-distance", "--steps", "2"]),
    ("internal errors", "fashion: no images", ["train", "-t", "fashion-vae", "--data-dir", "data", "--steps", "2"]),
    ("internal errors", "fashion: 0x0 pixels", ["train", "-t", "fashion-vae", "--data-dir", "data", "--steps", "2"]),
    ("internal errors", "", ["train", "-t", "fashion-vae[data_dir=007]", "--steps", "2"]),
    ("internal errors", "", ["elbo-study", "--checkpoints", "٣"]),
    ("internal errors", "", ["gradstats", "-t", "categorical[groups=4096,categories=16]", "-s", "10"]),  # found by
    # tests/test_memory_bounds.py: V^G had more than 4,300 digits to print (ValueError)
]


@pytest.fixture(scope="module")
def loopback():
    from tests.loopback import servers

    with servers() as addresses:
        yield addresses


@pytest.mark.parametrize("kind, prepare, argv", CASES_25,
                         ids=[f"{c[0]}: {c[1][:30]} {' '.join(c[2])[:70]}" for c in CASES_25])
def test_issue_25_case_is_one_line_before_any_work(kind, prepare, argv, tmp_path, capsys, monkeypatch, loopback):
    import time

    folder = tmp_path / "case"
    folder.mkdir()
    setup_25(prepare, folder, monkeypatch)
    before = files(folder)
    capsys.readouterr()
    start = time.monotonic()
    code, err = run_case([a.format(**loopback) for a in argv], folder, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gumbench: error: "), err[-3000:]
    assert "internal error" not in err and "out of memory" not in err and "Traceback" not in err
    assert files(folder) == before, f"a refusal left files behind: {sorted(files(folder) - before)}"
    assert time.monotonic() - start < 20, "refused quickly (a backend that does not answer is given --connect-timeout)"
    if "--scheduler" in argv and kind == "backends" and "local" not in argv:
        address = argv[argv.index("--scheduler") + 1].format(**loopback)
        assert address in lines[0], "the line names the address"
    if "007" in " ".join(argv):
        assert "data_dir=007" in lines[0], "a text parameter keeps the text as written"
