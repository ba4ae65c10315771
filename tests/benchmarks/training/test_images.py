"""gumbench.benchmarks.training.images (fashion-vae): the IDX reader on small files written here (gzipped and raw,
bad magic numbers, truncated files), the task on such a folder (runs everywhere), and on the real Fashion-MNIST
where Debian's dataset-fashion-mnist is installed: shapes, learning, the bounds against their exact values by
enumeration, the enumerated ELBO gradient against autograd, and the gradient study inside the model. On
scikit-learn's digits written as IDX files (runs everywhere): learning, the KL, likelihood and exact bounds
against torch.distributions summed code by code, the importance-weighted bound's bias with K, binarization."""

import gzip
import itertools
import math
import struct

import numpy as np
import pytest
import torch

from gumbench.benchmarks.problems.enumeration import exact_gradient
from gumbench.benchmarks.studies import elbo_gradient_study
from gumbench.benchmarks.training import images, make_training_task, train
from gumbench.benchmarks.training.images import DEBIAN_DIR, binarize, load_idx_dataset, read_idx
from gumbench.errors import GumbenchError
from gumbench.estimators import VQEstimator
from gumbench.estimators import registry as estimator_registry
from tests.conftest import require

NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as the CLI and sweeps use by default: two threads on two shared cores ran these
    steps about 20x slower here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    return (
        bytes([0, 0, type_code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )


def write_idx(path, array, gz=False, type_code=0x08):
    data = idx_bytes(array, type_code)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_dataset(folder, train=40, test=20, side=6, gz=True, seed=0):
    """A small IDX folder: random images of side x side pixels and labels 0-9; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (train, side, side)), "train_labels": rng.integers(0, 10, train),
              "test_images": rng.integers(0, 256, (test, side, side)), "test_labels": rng.integers(0, 10, test)}
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        write_idx(folder / (NAMES[key] + (".gz" if gz else "")), array, gz=gz)
    return arrays


# --- the IDX reader: runs everywhere ---------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_gzipped_and_raw(tmp_path, gz):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    labels = np.array([7, 0, 255])
    assert np.array_equal(read_idx(write_idx(tmp_path / "i", images, gz), 3), images)
    assert np.array_equal(read_idx(write_idx(tmp_path / "l", labels, gz), 1), labels)
    assert read_idx(tmp_path / "i").dtype == np.uint8


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_refuses_bad_files_naming_what_is_wrong(tmp_path, gz):
    images = np.zeros((2, 3, 4))
    good = idx_bytes(images)

    def refused(data, dimensions=None):
        path = tmp_path / "f"
        path.write_bytes(gzip.compress(data) if gz else data)
        with pytest.raises(GumbenchError) as caught:
            read_idx(path, dimensions)
        assert "\n" not in str(caught.value) and str(caught.value).startswith(f"{path}: ")
        return str(caught.value)

    assert "(magic number 0x00000d03); expected 0x000008NN" in refused(idx_bytes(images, type_code=0x0D))  # floats
    assert "magic number 0x504b0304" in refused(b"PK\x03\x04" + good[4:])
    assert "only 2 bytes" in refused(b"\x00\x00")
    assert "truncated: the header says 2 x 3 x 4 = 24 bytes of data, the file holds 23" in refused(good[:-1])
    assert "too long: the header says 2 x 3 x 4 = 24 bytes of data, the file holds 25" in refused(good + b"\x00")
    assert "truncated: 8 bytes, fewer than the 16-byte header of 3 dimensions" in refused(good[:8])
    assert "an IDX file with 3 dimensions; expected 1 (labels: count)" in refused(good, 1)


def test_truncated_gzip_is_refused(tmp_path):
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 28, 28))))[:-30])
    with pytest.raises(
        GumbenchError, match=r"not a readable gzip file .*; give the IDX file gzipped whole or uncompressed"
    ):
        read_idx(path)


def test_dataset_folder_raw_gzipped_or_dotted(tmp_path):
    arrays = write_dataset(tmp_path / "gz", gz=True)
    loaded = load_idx_dataset(tmp_path / "gz")
    assert loaded["train_images"].shape == (40, 36) and loaded["test_images"].shape == (20, 36)
    assert np.array_equal(loaded["test_images"], arrays["test_images"].reshape(20, 36))
    assert np.array_equal(loaded["train_labels"], arrays["train_labels"])
    write_dataset(tmp_path / "raw", gz=False, seed=0)
    assert np.array_equal(load_idx_dataset(tmp_path / "raw")["train_images"], loaded["train_images"])
    for path in (tmp_path / "raw").iterdir():  # MNIST's other spelling: train-images.idx3-ubyte
        path.rename(path.with_name(path.name.replace("-idx", ".idx")))
    assert np.array_equal(load_idx_dataset(tmp_path / "raw")["test_labels"], arrays["test_labels"])


def test_missing_or_inconsistent_data_is_one_line_saying_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "DEBIAN_DIR", tmp_path / "none")
    with pytest.raises(GumbenchError) as caught:
        make_training_task("fashion-vae")
    message = str(caught.value)
    assert (
        message.startswith(
            f"fashion-vae: no Fashion-MNIST at {tmp_path / 'none'}; get it with apt-get install dataset-fashion-mnist, "
            "or give data_dir=FOLDER (--data-dir) holding the four IDX files"
        )
        and "\n" not in message
    )
    with pytest.raises(
        GumbenchError, match=r"fashion-vae: data_dir=.*nowhere is not a folder; get it with apt-get install"
    ):
        make_training_task(f"fashion-vae[data_dir={tmp_path / 'nowhere'}]")
    write_dataset(tmp_path / "data")
    (tmp_path / "data" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        GumbenchError, match=r"data.? lacks t10k-labels-idx1-ubyte \(or \.gz\); get the data with apt-get"
    ):
        load_idx_dataset(tmp_path / "data")
    write_idx(tmp_path / "data" / "t10k-labels-idx1-ubyte", np.zeros(19))
    with pytest.raises(GumbenchError, match=r"holds 20 images but .*t10k-labels-idx1-ubyte 19 labels; they must match"):
        load_idx_dataset(tmp_path / "data")


# --- the task on a small folder: runs everywhere -----------------------------------------------

@pytest.fixture
def small(tmp_path):
    write_dataset(tmp_path / "small")
    return f"fashion-vae[data_dir={tmp_path / 'small'},hidden=32,batch=16,eval_images=20"


def test_task_on_any_idx_folder(small):
    task = make_training_task(small + ",iw_samples=4]")
    assert task.pixels == 36 and task.eval_images.shape == (20, 36)
    assert set(task.eval_images.unique().tolist()) <= {0.0, 1.0}
    frame = train(task, "reinmax", steps=6, seed=0, eval_every=3)
    assert len(frame) == 6 and frame["eval_nll_iw"].notna().sum() == 2
    last = frame.iloc[-1]
    # exact -log p(x) <= exact -ELBO (their gap is KL(q || posterior) >= 0)
    assert last["eval_nll_exact"] <= last["eval_negative_elbo_exact"] + 1e-9
    assert last["loss_negative_elbo"] == pytest.approx(last["loss_reconstruction"] + last["loss_kl"])


@pytest.mark.parametrize(
    "estimator, message",
    [
        (
            "vq-commitment",
            "fashion-vae: vq-commitment is a VQ estimator; this task follows the ReinMax protocol, "
            "whose decoder reads the one-hot code (no codebook to learn): use a categorical estimator",
        ),
        ("disarm", "fashion-vae: disarm needs categories=2, got categories=8"),
    ],
)
def test_estimators_it_cannot_train_are_refused_before_training(small, estimator, message):
    with pytest.raises(GumbenchError) as caught:
        train(small + "]", estimator, steps=1)
    assert str(caught.value).startswith(message)


CATEGORICAL = [n for n in estimator_registry.names() if not issubclass(estimator_registry.get(n), VQEstimator)]


@pytest.mark.parametrize("name", CATEGORICAL)
def test_every_categorical_estimator_trains(small, name):
    spec = small + (",categories=2,latents=6]" if estimator_registry.get(name).required_categories == 2 else "]")
    frame = train(spec.replace("]", ",iw_samples=4]"), name, steps=3, seed=0, eval_every=3)
    assert np.isfinite(frame["loss"]).all() and np.isfinite(frame["eval_nll_iw"].iloc[-1])
    assert frame["grad_norm_logits"].gt(0).all(), f"{name}: no gradient reached the encoder's logits"
    assert "eval_nll_exact" in frame  # 8^4 and 2^6 codes: enumerated


@pytest.mark.parametrize(
    "spec, message",
    [
        ("eval_images=21", "fashion-vae: eval_images must be at most the 20 test images, got 21"),
        ("categories=1", "fashion-vae: categories must be in [2, 65536], got 1"),
        (
            "iw_samples=0",
            "fashion-vae: iw_samples (draws per image of the importance-weighted bound) must be in [1, 100000], got 0",
        ),
    ],
)
def test_parameters_are_checked(small, spec, message):
    if spec.startswith("eval_images"):
        small = small.replace(",eval_images=20", "")
    with pytest.raises(GumbenchError) as caught:
        make_training_task(f"{small},{spec}]")
    assert str(caught.value) == message


def test_elbo_study_refuses_what_it_cannot_enumerate(small, monkeypatch):
    from gumbench.benchmarks import training

    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(GumbenchError, match=r"has 16\^5 codes; at most 65,536 can be enumerated"):
        elbo_gradient_study("st-gumbel", task=small + ",categories=16,latents=5]")
    with pytest.raises(
        GumbenchError, match=r"task must be one of digits-vae, fashion-vae \(a categorical VAE\), got gmm-vq"
    ):
        elbo_gradient_study("st-gumbel", task="gmm-vq")


# --- the real data -------------------------------------------------------------------------------

def require_fashion():
    require(DEBIAN_DIR.is_dir(), f"needs Fashion-MNIST at {DEBIAN_DIR}: apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="module")
def trained():
    """fashion-vae at 8 x 4 after 100 ST-Gumbel steps (a posterior far from uniform), and its evaluation images."""
    require_fashion()
    task = make_training_task("fashion-vae[eval_images=400]")
    kept = {}
    train(task, "st-gumbel", steps=100, seed=0, eval_every=100, callback=lambda step, model: kept.update(model=model))
    model = kept["model"].eval()
    with torch.no_grad():
        logits = model.bottleneck.logits_or_vectors(model.encoder(task.eval_images))
    return task, model, logits


def test_real_data_shapes_and_dynamic_binarization():
    require_fashion()
    task = make_training_task("fashion-vae")
    assert task.train_intensities.shape == (60_000, 784) and task.pixels == 784
    assert task.eval_images.shape == (500, 784) and torch.equal(
        task.eval_images, make_training_task("fashion-vae").eval_images
    )
    x, _ = task.batch(1, torch.Generator().manual_seed(0))
    assert x.shape == (100, 784) and set(x.unique().tolist()) == {0.0, 1.0}
    # Bernoulli(intensity): 200,000 draws of the same images average to their intensities
    # (standard error <= 0.5/sqrt(n))
    intensities = task.train_intensities[:10]
    draws = torch.stack([binarize(intensities, torch.Generator().manual_seed(s)) for s in range(20)]).mean(0)
    mean_intensity = float(intensities.float().mean() / 255)
    assert abs(float(draws.mean()) - mean_intensity) < 4 * 0.5 / math.sqrt(draws.numel() * 20)
    assert not torch.equal(
        task.batch(1, torch.Generator().manual_seed(0))[0], task.batch(1, torch.Generator().manual_seed(1))[0]
    )


def test_a_few_steps_reduce_the_loss():
    require_fashion()
    task = make_training_task("fashion-vae[eval_images=100]")
    frame = train(task, "reinmax", steps=40, seed=1, eval_every=40)
    assert frame["loss"].iloc[-10:].mean() < frame["loss"].iloc[:10].mean() - 50  # about 540 -> 400 nats


def test_bounds_against_their_exact_values(trained):
    task, model, logits = trained
    x = task.eval_images
    with torch.no_grad():
        negative_elbo_exact, nll_exact = task.exact_bounds(model, x, logits)
        mc_elbo, iw1 = task.importance_weighted(model, x, logits, 1, torch.Generator().manual_seed(5))
        _, iw64 = task.importance_weighted(model, x, logits, 64, torch.Generator().manual_seed(6))
    kl = task.kl(logits).double()
    assert float((negative_elbo_exact - nll_exact).mean()) > 1.0, (
        "the trained posterior is not the prior: the test has power"
    )
    assert (nll_exact <= negative_elbo_exact + 1e-6).all()

    def within(difference, count=4.0):  # |mean| <= count standard errors over the 400 images
        return abs(float(difference.mean())) <= count * float(difference.std()) / math.sqrt(len(difference))

    # one draw: -(IW bound) and the ELBO estimate are both unbiased for the exact -ELBO
    assert within(iw1 - negative_elbo_exact) and within(mc_elbo + kl - negative_elbo_exact)
    # 64 draws: E[-IW_64] lies between -log p(x) and -ELBO
    assert float((iw64 - nll_exact).mean()) >= -4 * float((iw64 - nll_exact).std()) / math.sqrt(len(x))
    gap = negative_elbo_exact - iw64
    assert float(gap.mean()) > 4 * float(gap.std()) / math.sqrt(len(x))


def test_enumerated_gradient_agrees_with_autograd_of_the_enumerated_objective(trained):
    """The study's exact gradient (toys.exact_gradient on one-hots) against E_q[-log p(x|z)] written out over the
    4,096 codes here, differentiated by autograd in float64."""
    task, model, logits = trained
    image, theta = task.eval_images[0], logits[0].double()
    def recon(onehot):
        return task.reconstruction_loss(model.decoder(model.bottleneck.lookup(onehot)), image)

    study, expected = exact_gradient(logits[0], recon)
    with torch.no_grad():
        codes = torch.tensor(list(itertools.product(range(8), repeat=4)))
        onehot = torch.nn.functional.one_hot(codes, 8).float()
        losses = recon(onehot).double()  # (4096,)
    leaf = theta.clone().requires_grad_(True)
    q = torch.softmax(leaf, -1)
    probability = q[torch.arange(4), codes].prod(-1)
    objective = (probability * losses).sum()
    (by_hand,) = torch.autograd.grad(objective, leaf)
    assert expected == pytest.approx(float(objective.detach()), rel=1e-6)
    assert torch.allclose(study, by_hand, rtol=1e-5, atol=1e-6 * float(by_hand.abs().max()))
    assert float(by_hand.norm()) > 0.1  # a gradient worth comparing


def test_elbo_study_inside_the_fashion_vae():
    require_fashion()
    task = make_training_task("fashion-vae[eval_images=2,iw_samples=1]")
    rloo = elbo_gradient_study(
        "reinforce[baseline=loo]", task=task, checkpoints=(0, 20), points=2, samples=1000, seed=0, instances=1
    )
    assert sorted(rloo["step"].unique()) == [0, 20] and len(rloo) == 4 and (rloo["task"] == task.spec).all()
    assert (rloo["relative_bias_low"] == 0).all() and (rloo["cosine"] > 0.5).all()
    st = elbo_gradient_study("st-gumbel", task=task, checkpoints=(20,), points=2, samples=1000, seed=0, instances=1)
    assert (st["relative_bias_low"] > 0).all(), "straight-through Gumbel is biased inside the VAE"


def test_the_study_configs_are_what_the_docs_say():
    """configs/fashion-vae.toml: 5 estimators x 2 sizes x 5 seeds with ReinMax at the authors' scripts' values;
    configs/fashion-vae-long.toml: a subset with the same seeds, 4x the steps."""
    require_fashion()
    from pathlib import Path

    from gumbench.benchmarks.sweep import expand_units, load_config

    root = Path(__file__).resolve().parents[3]
    study, _ = expand_units(load_config(root / "configs/fashion-vae.toml"))
    long, _ = expand_units(load_config(root / "configs/fashion-vae-long.toml"))
    assert len(study) == 50 and {u.budget for u in study} == {1000}
    reinmax = {
        (make_training_task(u.task).codes, u.estimator, u.lr) for u in study if u.estimator.startswith("reinmax")
    }
    assert reinmax == {(8, "reinmax[tau=1.3]", 5e-4), (16, "reinmax[tau=1.5]", 7e-4)}
    assert {u.lr for u in study if not u.estimator.startswith("reinmax")} == {1e-3}
    assert all(u.gradient_checkpoints == ((0, 500, 1000) if "categories=8" in u.task else ()) for u in study)
    seeds = {(u.task, u.estimator, u.repetition): u.seed for u in study}
    assert len(long) == 9 and {u.budget for u in long} == {4000}
    assert all(seeds[(u.task, u.estimator, u.repetition)] == u.seed for u in long)


def test_the_gradient_runs_cover_every_categorical_estimator():
    """Requirement 2 of the study: the 8 x 4 ELBO-gradient analysis runs for every categorical estimator of the
    default table (configs/fashion-vae.toml's five, configs/fashion-vae-gradients.toml's others and
    configs/fashion-vae-gradients-newer.toml's later ones) but DisARM, which needs binary variables; all with the
    same checkpoints and 5 seeds. Issue 26's estimators are configured (configs/fashion-vae-gradients-2026.toml)
    with the same protocol but not yet run: they count as pending, and only they may be."""
    require_fashion()
    from pathlib import Path

    from gumbench.benchmarks.gradstats import default_estimators
    from gumbench.benchmarks.sweep import expand_units, load_config
    from gumbench.estimators import make_estimator

    def key(spec):
        est = make_estimator(spec)
        return est.name, est.params.get("baseline"), est.params.get("variant")

    root = Path(__file__).resolve().parents[3]
    units = [
        u
        for name in ("fashion-vae", "fashion-vae-gradients", "fashion-vae-gradients-newer")
        for u in expand_units(load_config(root / f"configs/{name}.toml"))[0]
        if "categories=8" in u.task
    ]
    probed = {key(u.estimator) for u in units if u.gradient_checkpoints == (0, 500, 1000)}
    pending_units = expand_units(load_config(root / "configs/fashion-vae-gradients-2026.toml"))[0]
    pending = {key(u.estimator) for u in pending_units if u.gradient_checkpoints == (0, 500, 1000)}
    assert not any((root / "results/images").glob("fashion-vae-gradients-2026-*")), "run: no longer pending"
    assert {key(spec) for spec in default_estimators() if not spec.startswith("disarm")} <= probed | pending
    assert {name for name, _, _ in pending} <= {"reinmax-rao", "reinmax-cv", "fogzo", "unordered-set", "reinforce-wor",
                                                "rebar", "relax"}  # issue 26's, and nothing older
    assert all(sum(1 for u in [*units, *pending_units] if key(u.estimator) == k) == 5 for k in probed | pending)


# --- the model's pieces against torch.distributions, and learning on scikit-learn's digits: runs everywhere -----

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """scikit-learn's 1,797 8x8 digits (grey levels 0-16 scaled to 0-255) as an IDX folder: 1,500 training
    images, 297 test images; the spec prefix of a fashion-vae on them."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images, labels = np.rint(data.images * 255 / 16), data.target
    folder = tmp_path_factory.mktemp("digits")
    for key, array in (("train_images", images[:1500]), ("train_labels", labels[:1500]),
                       ("test_images", images[1500:]), ("test_labels", labels[1500:])):
        write_idx(folder / NAMES[key], array)
    return f"fashion-vae[data_dir={folder},hidden=64,batch=50"


def test_learns_the_digits_pixel_statistics(digits):
    task = make_training_task(digits + ",eval_images=200,categories=4,latents=4,iw_samples=4]")
    x = task.eval_images
    assert x.shape == (200, 64) and task.eval_labels.shape == (200,)
    # the best model that ignores its code: independent Bernoulli pixels at the training set's mean intensities
    p = (task.train_intensities.double().mean(0) / 255).clamp(1e-6, 1 - 1e-6)
    factorized = float(-(x * p.log() + (1 - x) * (1 - p).log()).sum(-1).mean())
    frame = train(task, "reinmax", steps=60, seed=0, eval_every=60, lr=3e-3)
    first, last = frame["loss"].iloc[:10].mean(), frame["loss"].iloc[-10:].mean()
    assert first > 64 * math.log(2) - 3, "an untrained decoder: about 0.69 nats per pixel"
    assert last < first - 10  # about 43.5 -> 27.6 nats
    nll = frame["eval_nll_exact"].iloc[-1]
    assert nll < factorized + 0.5 and nll <= frame["eval_negative_elbo_exact"].iloc[-1] + 1e-9


@pytest.fixture(scope="module")
def tiny(digits):
    """An untrained 2 x 3 model on the digits (random logits, so q is not the prior) and 50 test images."""
    task = make_training_task(digits + ",eval_images=50,categories=3,latents=2]")
    torch.manual_seed(0)
    model = task.build(estimator_registry.create("st-gumbel"))
    with torch.no_grad():
        logits = model.bottleneck.logits_or_vectors(model.encoder(task.eval_images))
    assert logits.shape == (50, 2, 3)
    return task, model, logits


def test_kl_and_reconstruction_loss_are_torch_distributions(tiny):
    task, model, logits = tiny
    uniform = torch.distributions.Categorical(logits=torch.zeros(3))
    expected = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=logits), uniform).sum(-1)
    torch.testing.assert_close(task.kl(logits), expected, rtol=1e-5, atol=1e-6)
    assert float(expected.min()) > 1e-4, "q differs from the uniform prior"
    assert torch.allclose(task.kl(torch.zeros(4, 2, 3)), torch.zeros(4), atol=1e-6)
    x = task.eval_images[:5]
    output = torch.randn(7, 5, 64, generator=torch.Generator().manual_seed(1)) * 3
    bernoulli = -torch.distributions.Bernoulli(logits=output).log_prob(x).sum(-1)
    # (7, 5): x broadcast over the leading dimension
    torch.testing.assert_close(task.reconstruction_loss(output, x), bernoulli, rtol=1e-5, atol=1e-4)


def test_all_codes_enumerate_every_code_the_last_latent_fastest(tiny):
    task, _, _ = tiny
    assert task.all_codes().tolist() == [list(code) for code in itertools.product(range(3), repeat=2)]


def brute_force(model, x, logits):
    """Per image: E_q[-log p(x|z)] + KL and -log sum_z p(x|z) p(z), over the 9 codes one by one, with
    torch.distributions."""
    q = torch.distributions.Categorical(logits=logits.double())
    negative_elbo, nll = [], []
    for image, q_image in zip(x, q.probs):
        terms, log_joint = [], []
        for code in itertools.product(range(3), repeat=2):
            onehot = torch.nn.functional.one_hot(torch.tensor(code), 3).float()
            output = model.decoder(model.bottleneck.lookup(onehot)).double()
            log_likelihood = torch.distributions.Bernoulli(logits=output).log_prob(image.double()).sum()
            terms.append(q_image[0, code[0]] * q_image[1, code[1]] * -log_likelihood)
            log_joint.append(log_likelihood - 2 * math.log(3))
        negative_elbo.append(torch.stack(terms).sum())
        nll.append(-torch.logsumexp(torch.stack(log_joint), 0))
    uniform = torch.distributions.Categorical(logits=torch.zeros(3, dtype=torch.float64))
    kl = torch.distributions.kl_divergence(q, uniform).sum(-1)
    return torch.stack(negative_elbo) + kl, torch.stack(nll)


def test_exact_bounds_equal_a_brute_force_sum_over_the_codes(tiny):
    task, model, logits = tiny
    x = task.eval_images
    with torch.no_grad():
        negative_elbo, nll = task.exact_bounds(model, x, logits)
        expected_elbo, expected_nll = brute_force(model, x, logits)
    assert negative_elbo.shape == nll.shape == (50,)
    torch.testing.assert_close(negative_elbo, expected_elbo, rtol=0, atol=1e-3)
    torch.testing.assert_close(nll, expected_nll, rtol=0, atol=1e-3)
    assert float((negative_elbo - nll).min()) > 1e-3, "-ELBO - (-log p(x)) = KL(q || posterior) > 0 here"
    sharp = logits * 5
    with torch.no_grad():
        torch.testing.assert_close(task.exact_bounds(model, x, sharp), brute_force(model, x, sharp), rtol=0, atol=1e-3)


def test_importance_weighted_bound_is_unbiased_at_one_draw_and_tightens_with_more(tiny):
    task, model, logits = tiny
    x, sharp = task.eval_images, logits * 5  # any q will do; a sharper one is further from the posterior
    with torch.no_grad():
        negative_elbo, nll = task.exact_bounds(model, x, sharp)
        kl = task.kl(sharp).double()
        # 200 independent single-draw estimates per image
        draws = [task.importance_weighted(model, x, sharp, 1, torch.Generator().manual_seed(s)) for s in range(200)]
        iw3 = torch.stack([task.importance_weighted(model, x, sharp, 3, torch.Generator().manual_seed(1000 + s))[1]
                           for s in range(50)])  # 50 independent 3-draw bounds per image
        _, iw2000 = task.importance_weighted(model, x, sharp, 2000, torch.Generator().manual_seed(8))
    recon = torch.stack([r for r, _ in draws])
    iw1 = torch.stack([b for _, b in draws])
    assert recon.shape == iw1.shape == (200, 50)

    def within(samples, exact, count=4.0):  # each image: |mean - exact| <= count standard errors of the 200 draws
        error = samples.std(0) / math.sqrt(len(samples))
        return bool(((samples.mean(0) - exact).abs() <= count * error + 1e-9).all())

    # one draw: the reconstruction term plus the analytic KL, and minus the IW bound, both unbiased for -ELBO
    assert within(recon + kl, negative_elbo) and within(iw1, negative_elbo)

    def mean_and_error(difference):  # over images (and independent repeats)
        return float(difference.mean()), float(difference.std()) / math.sqrt(difference.numel())

    gap, gap_error = mean_and_error(negative_elbo - nll)
    assert gap > 4 * gap_error and gap > 0.3, "q is far enough from the posterior for the test to have power"
    # E[-IW_K] decreases from -ELBO (K = 1) to -log p(x) (K -> infinity)
    three, three_error = mean_and_error(iw3 - nll)  # about 0.18 +- 0.012 against a gap of 0.39
    assert 4 * three_error < three < gap - 4 * (three_error + gap_error)
    many, many_error = mean_and_error(iw2000 - nll)
    assert abs(many) <= 4 * many_error and abs(many) < 0.1 * gap


def test_binarize_draws_each_pixel_with_its_intensity():
    intensities = torch.tensor([0, 51, 128, 204, 255], dtype=torch.uint8).repeat(20_000, 1)
    x = binarize(intensities, torch.Generator().manual_seed(3))
    assert x.dtype == torch.float32 and set(x.unique().tolist()) == {0.0, 1.0}
    assert (x[:, 0] == 0).all() and (x[:, 4] == 1).all(), "intensities 0 and 255 are certain"
    p = torch.tensor([51, 128, 204]) / 255
    error = (p * (1 - p) / len(x)).sqrt()
    assert ((x[:, 1:4].mean(0) - p).abs() <= 4 * error).all()
    assert torch.equal(x, binarize(intensities, torch.Generator().manual_seed(3))), "the generator decides"


def test_the_dataset_is_read_once_per_folder_and_version(tmp_path):
    write_dataset(tmp_path / "a", seed=0)
    first = load_idx_dataset(tmp_path / "a")
    assert load_idx_dataset(tmp_path / "a") is first, "cached"
    arrays = write_dataset(tmp_path / "a", train=30, seed=1)  # a new version of the files
    again = load_idx_dataset(tmp_path / "a")
    assert again is not first and len(again["train_images"]) == 30
    assert np.array_equal(again["train_labels"], arrays["train_labels"])
    assert images.idx_path(tmp_path / "a", "t10k-images-idx3-ubyte").name == "t10k-images-idx3-ubyte.gz"
    assert images.idx_path(tmp_path / "a", "no-such-idx1-ubyte") is None
