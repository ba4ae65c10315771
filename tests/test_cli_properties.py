"""Arguments drawn across the CLI commands (hypothesis): every draw ends in a result (exit 0) or one
line ``gumbench: error: ...`` with exit 2, within the time bound of tests/test_bad_input.py, writing nothing outside its
folder;
never a traceback, never an internal error."""

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.test_bad_input import results_file, run_case

INTEGERS = st.sampled_from(["-1", "0", "2", "1e3", "abc", "", str(2**31), str(2**63), str(2**70), "9" * 30])
FLOATS = st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e-300", "1e300", "0.5", "x"])
NAMES = st.sampled_from(
    [
        "st-gumbel",
        "reinforce[baseline=loo]",
        "gumbel-rao[samples=2]",
        "vq-commitment",
        "nope",
        "st-gumbel[tau=nan]",
        "st-gumbel[tau=-1]",
        "reinmax[tau=0.5]",
        "gst[variant=q]",
        "reinforce[samples=0]",
        "gumbel-rao[samples=99999999999]",
        "st-gumbel[",
        "st-gumbel[tau=[]]",
        "[]",
        "disarm",
    ]
)
TOYS = st.sampled_from(
    [
        "bernoulli",
        "categorical[groups=1,categories=3]",
        "categorical[categories=1]",
        "categorical[scale=nan]",
        "polynomial[p=-1]",
        "polynomial[L=0]",
        "categorical[groups=99999999]",
        "nope",
        "categorical[loss=cubic]",
    ]
)
TRAINING = st.sampled_from(
    [
        "gmm-vq[clusters=2,codes=4,batch=8]",
        "tones[snr=nan]",
        "gmm-vq[batch=0]",
        "gmm-vq[codes=-3]",
        "digits-vae[latents=0]",
        "nope",
        "gmm-vq[noise=inf]",
    ]
)
PATHS = st.sampled_from(["out.x", "file/out.x", "folder", ""])


def argv_strategy():
    """A command with a few options, each drawn from values that are valid and small or invalid."""
    gradstats = st.tuples(
        st.just("gradstats"),
        st.lists(
            st.one_of(
                st.tuples(st.just("-e"), NAMES),
                st.tuples(st.just("-t"), TOYS),
                st.tuples(st.just("--samples"), INTEGERS),
                st.tuples(st.just("--seed"), INTEGERS),
                st.tuples(st.just("--tau"), FLOATS),
                st.tuples(st.just("-o"), PATHS),
            ),
            max_size=4,
        ),
    )
    optimize = st.tuples(
        st.just("optimize"),
        st.lists(
            st.one_of(
                st.tuples(st.just("-e"), NAMES),
                st.tuples(st.just("-t"), TOYS),
                st.tuples(st.just("--steps"), INTEGERS),
                st.tuples(st.just("--batch"), INTEGERS),
                st.tuples(st.just("--lr"), FLOATS),
                st.tuples(st.just("-o"), PATHS),
            ),
            max_size=4,
        ),
    )
    train = st.tuples(st.just("train"), st.lists(st.one_of(
        st.tuples(st.just("-e"), NAMES), st.tuples(st.just("-t"), TRAINING), st.tuples(st.just("--steps"), INTEGERS),
        st.tuples(st.just("--seed"), INTEGERS), st.tuples(st.just("-o"), PATHS)), max_size=4))
    sweep = st.tuples(
        st.just("sweep"),
        st.lists(
            st.one_of(
                st.tuples(st.just("-e"), NAMES),
                st.tuples(st.just("--samples"), INTEGERS),
                st.tuples(st.just("--steps"), INTEGERS),
                st.tuples(st.just("--repetitions"), INTEGERS),
                st.tuples(st.just("--base-seed"), INTEGERS),
                st.tuples(st.just("-j"), INTEGERS),
                st.tuples(st.just("--name"), st.sampled_from(["ok", "../x", "/abs", "", ".h", "-x", "a b"])),
                st.tuples(st.just("--backend"), st.sampled_from(["local", "cluster", "slurm"])),
            ),
            max_size=4,
        ),
    )
    report = st.tuples(st.just("report"), st.lists(st.one_of(
        st.tuples(st.just("--kernel"), PATHS), st.tuples(st.just("-o"), PATHS)), max_size=2))
    listing = st.tuples(st.just("list"), st.lists(st.tuples(st.just(""), st.sampled_from(
        ["estimators", "tasks", "training", "bogus", "", "--x"])), max_size=1))
    explain = st.tuples(st.just("explain"), st.lists(st.one_of(
        st.tuples(st.just("--variant"), st.sampled_from(["wav2vec2", "vq-wav2vec", "both", "bogus", ""])),
        st.tuples(st.just("--seed"), INTEGERS), st.tuples(st.just("--audio-dir"), PATHS)), max_size=2))
    return st.one_of(gradstats, optimize, train, sweep, report, listing, explain)


def flatten(drawn) -> list[str]:
    command, options = drawn
    args = [command]
    if command == "sweep":  # keep valid sweeps tiny: a small config, few samples unless the draw overrides
        args += ["tiny.toml", "--out", "runs", "--no-report"]
    if command == "report":
        args += ["results.parquet"]
    if command in ("gradstats", "optimize"):
        args += ["--samples", "20"] if command == "gradstats" else ["--steps", "2", "--batch", "2", "-t", "bernoulli"]
    if command == "train":
        args += ["--steps", "2", "-t", "gmm-vq[clusters=2,codes=4,batch=8]", "-e", "st-gumbel"]
    for flag, value in options:
        args += [flag, value] if flag else [value]
    return args


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    work = base / "work"
    work.mkdir()
    (work / "tiny.toml").write_text(
        'repetitions = 1\n[gradstats]\ntasks = ["bernoulli"]\nestimators = ["st-gumbel"]\nsamples = 20\n'
        '[training]\ntasks = ["gmm-vq[clusters=2,codes=4,batch=8]"]\nestimators = ["vq-commitment"]\n'
        "steps = 2\neval_every = 1\n"
    )
    results_file(work)
    (work / "r.parquet").rename(work / "results.parquet")
    return base


@settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=argv_strategy())
def test_any_arguments_give_a_result_or_one_line(drawn, folder, capsys):
    work = folder / "work"
    (work / "file").write_text("a file\n")
    (work / "folder").mkdir(exist_ok=True)
    argv = flatten(drawn)
    outside = set(folder.iterdir())
    code, err = run_case(argv, work, capsys)
    event(f"{argv[0]} exit {code}")
    assert "Traceback" not in err and "internal error" not in err, (argv, err[-2000:])
    assert code in (0, 2), (argv, code, err[-2000:])
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("gumbench: error: "), (argv, err)
    assert set(folder.iterdir()) == outside, f"{argv} wrote outside its folder"
