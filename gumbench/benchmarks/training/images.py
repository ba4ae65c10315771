"""Categorical VAEs on binarized images with the field's protocol: ``fashion-vae``.

The protocol of the ReinMax paper's VAE experiments (Liu et al. 2023, the authors' repository
``mnist_vae/``), on Fashion-MNIST (Xiao et al. 2017) or any folder of the four standard IDX files:

* encoder: MLP 784-512-256-(L x C) with ReLU (the last layer is the bottleneck's projection to
  the logits of L latents of C categories); decoder mirrored: (L x C)-256-512-784 with ReLU,
  reading the one-hot code itself (the bottleneck's codebook is the fixed identity, so the
  decoder's first layer sees the L concatenated one-hots, as in the paper);
* Bernoulli likelihood p(x|z) with the decoder's outputs as logits; uniform categorical prior;
  loss -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || uniform), the KL analytic; batch 100;
* dynamic binarization: each training batch's pixels are drawn as Bernoulli(intensity) from the
  step's generator (the authors' script trains on the grey levels instead; the issue asks for
  dynamic binarization, as Jang et al. 2017 and most discrete-VAE papers use);
* the shipped train/test split: training batches from the 60,000 training images (uniformly,
  with replacement, rather than epoch shuffles), evaluations on a fixed subset of the test set
  (``eval_images`` images drawn with ``seed``, binarized once with the same seed).

Evaluation columns (every ``eval_every`` steps of :func:`gumbench.benchmarks.training.train`):
``eval_negative_elbo`` (-ELBO, the reconstruction term averaged over ``iw_samples`` draws
from q plus the analytic KL), ``eval_nll_iw`` (minus the importance-weighted bound of Burda et
al. with K = ``iw_samples`` draws, an upper bound on -log p(x) in expectation; Jang et al. 2017
report K = 1,000), ``eval_kl``, ``eval_reconstruction`` (-log p(x|z) at the noiseless argmax
code, as the other tasks report), and where the C^L codes can be enumerated (at most
:data:`EXACT_CODES`) the exact ``eval_negative_elbo_exact`` and ``eval_nll_exact`` = -log p(x).
All in nats per image, averaged over the evaluation images; the draws come from a generator
seeded with ``seed``, so every evaluation of every run uses the same noise.

The data: ``data_dir`` (any folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each gzipped or not, so MNIST works
too), else Debian's ``dataset-fashion-mnist`` package at :data:`DEBIAN_DIR`. Nothing is
downloaded. :func:`read_idx` reads one IDX file with numpy and checks its magic number and size.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gumbench.benchmarks.training.base import (
    BATCH,
    DiscreteBottleneck,
    StepOutput,
    TrainingTask,
    register,
)
from gumbench.errors import GumbenchError
from gumbench.plugin import MAX_ELEMENTS, SEED, Range

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET = (
    "apt-get install dataset-fashion-mnist, or give data_dir=FOLDER (--data-dir) holding the four IDX files "
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (gzipped or not)"
)
FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
UNSIGNED_BYTE = 0x08  # the IDX type code of the image and label files
EXACT_CODES = 4096  # evaluations enumerate the C^L codes (exact -ELBO and -log p(x)) up to this many
IDX_COPIES = 3  # bytes held per byte of IDX data while loading: the inflated bytes, their joined copy, the array
IW_CHUNK = 2**23  # elements of the decoder's output held at once by the importance-weighted bound

_cache: dict[tuple, dict[str, np.ndarray]] = {}


def read_idx(path, dimensions: int | None = None) -> np.ndarray:
    """One IDX file of unsigned bytes (gzipped or not, told by its first bytes) as a uint8 array.

    The header is two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions,
    then each dimension as a big-endian 32-bit integer; the data must fill exactly their product.
    ``dimensions``, if given, is the number the file must have (3 for images, 1 for labels).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise GumbenchError(f"{path}: cannot read the IDX file ({error.strerror or error})") from None
    if raw[:2] == b"\x1f\x8b":
        raw = gunzip_idx(path, raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != UNSIGNED_BYTE or raw[3] == 0:
        magic = "0x" + raw[:4].hex() if len(raw) >= 4 else f"only {len(raw)} bytes"
        raise GumbenchError(f"{path}: not an IDX file of unsigned bytes (magic number {magic}); "
                            f"expected 0x000008NN, NN the number of dimensions (0x00000803 images, 0x00000801 labels)")
    ndim = raw[3]
    if dimensions is not None and ndim != dimensions:
        raise GumbenchError(f"{path}: an IDX file with {ndim} dimensions; expected {dimensions} "
                            f"({'images: count, rows, columns' if dimensions == 3 else 'labels: count'})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise GumbenchError(
            f"{path}: truncated: {len(raw)} bytes, fewer than the {header}-byte header of {ndim} dimensions"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = math.prod(shape)
    if len(raw) - header != size:
        state = "truncated" if len(raw) - header < size else "too long"
        raise GumbenchError(f"{path}: {state}: the header says {' x '.join(map(str, shape))} = {size:,} bytes of data, "
                            f"the file holds {len(raw) - header:,}")
    if 0 in shape:
        raise GumbenchError(f"{path}: holds no data (its header says {' x '.join(map(str, shape))}); every dimension "
                            "must be at least 1 (images: count, rows, columns; labels: count)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()  # writable, for torch.from_numpy


def gunzip_idx(path: Path, raw: bytes) -> bytes:
    """A gzipped IDX file, decompressed no further than its header says it holds (plus a byte, to tell a file
    that is too long): a small file that inflates without end (a gzip bomb) is refused after its header, and
    a header whose data, loaded, would not fit the memory limit (:mod:`gumbench.footprint`) before anything
    is inflated."""
    from gumbench.footprint import format_bytes, memory_limit

    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = inflate.decompress(raw, 4)
        ndim = head[3] if len(head) == 4 and head[:2] == b"\x00\x00" else 0
        head += inflate.decompress(inflate.unconsumed_tail, 4 * ndim)
        whole = len(head) == 4 + 4 * ndim
        size = math.prod(int(d) for d in np.frombuffer(head, dtype=">u4", count=ndim, offset=4)) if whole else 0
        limit = memory_limit()
        if IDX_COPIES * size > limit.bytes:
            raise GumbenchError(f"{path}: its header says {size:,} bytes of data; loaded, they would take about "
                                f"{format_bytes(IDX_COPIES * size)}, over the memory limit of "
                                f"{format_bytes(limit.bytes)} ({limit.source}); give a smaller dataset or raise "
                                "--max-memory")
        data = head + inflate.decompress(inflate.unconsumed_tail, size + 1)
        if not inflate.eof and len(data) <= len(head) + size:  # what gzip.decompress says of a cut file
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        return data
    except (OSError, EOFError, zlib.error) as error:
        raise GumbenchError(f"{path}: not a readable gzip file ({error}); give the IDX file gzipped whole or "
                            "uncompressed") from None


def idx_path(folder: Path, stem: str) -> Path | None:
    """The file of ``stem`` in ``folder``: ``stem``, ``stem.gz``, or the dotted spelling
    (``train-images.idx3-ubyte``)."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_dataset(data_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """The four arrays (``train_images`` (N, H*W) uint8, ``train_labels``, ``test_images``, ``test_labels``)
    from ``data_dir`` or :data:`DEBIAN_DIR`; cached per folder and file versions."""
    given = data_dir is not None and str(data_dir) != ""
    folder = Path(data_dir).expanduser() if given else DEBIAN_DIR
    if not folder.is_dir():
        where = f"data_dir={folder} is not a folder" if given else f"no Fashion-MNIST at {folder}"
        raise GumbenchError(f"fashion-vae: {where}; get it with {HOW_TO_GET}")
    paths = {key: idx_path(folder, stem) for key, stem in FILES.items()}
    missing = [FILES[key] for key, path in paths.items() if path is None]
    if missing:
        raise GumbenchError(
            f"fashion-vae: {folder} lacks {', '.join(missing)} (or .gz); get the data with {HOW_TO_GET}"
        )
    key = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths.values())
    if key not in _cache:
        arrays = {name: read_idx(path, 3 if name.endswith("images") else 1) for name, path in paths.items()}
        for part in ("train", "test"):
            images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
            if len(images) != len(labels):
                raise GumbenchError(f"fashion-vae: {paths[part + '_images']} holds {len(images):,} images but "
                                    f"{paths[part + '_labels']} {len(labels):,} labels; they must match")
        if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
            raise GumbenchError(
                f"fashion-vae: training images are {arrays['train_images'].shape[1:]} pixels, test images "
                f"{arrays['test_images'].shape[1:]}; they must have one size"
            )
        for part in ("train_images", "test_images"):
            arrays[part] = arrays[part].reshape(len(arrays[part]), -1)
        _cache.clear()  # one dataset at a time (47 MB for Fashion-MNIST)
        _cache[key] = arrays
    return _cache[key]


def binarize(intensities: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pixels drawn as Bernoulli(intensity / 255): uint8 (..., P) -> float32 {0, 1}."""
    return (torch.rand(intensities.shape, generator=generator) < intensities.float() / 255).float()


class _VAE(nn.Module):
    def __init__(self, estimator, pixels, hidden, latents, categories):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU())
        self.bottleneck = DiscreteBottleneck(estimator, hidden // 2, latents, categories, categories)
        # the decoder reads the one-hots: a fixed identity codebook (L, C, C) makes lookup() their concatenation
        self.bottleneck.codebook = nn.Parameter(
            torch.eye(categories).expand(latents, -1, -1).clone(), requires_grad=False
        )
        self.decoder = nn.Sequential(
            nn.Linear(latents * categories, hidden // 2),
            nn.ReLU(),
            nn.Linear(hidden // 2, hidden),
            nn.ReLU(),
            nn.Linear(hidden, pixels),
        )


@register
class FashionVAE(TrainingTask):
    name = "fashion-vae"
    description = (
        "Categorical VAE on dynamically binarized Fashion-MNIST (or any IDX folder) with the ReinMax paper's "
        "protocol; -ELBO, importance-weighted bound, exact gradients at 8 x 4."
    )
    defaults = {"categories": 8, "latents": 4, "batch": 100, "hidden": 512, "eval_images": 500, "iw_samples": 8,
                  "seed": 0, "data_dir": ""}
    ranges = {"categories": Range(2, 65_536), "latents": Range(1, 1024), "batch": BATCH,
              "hidden": Range(2, 4096, meaning="first hidden width; the second is half of it"),
              "eval_images": Range(1, 10_000, meaning="test images evaluated; at most the test set's size"),
              "iw_samples": Range(1, 100_000, meaning="draws per image of the importance-weighted bound"), "seed": SEED}
    limits = {("batch", "latents", "categories"): MAX_ELEMENTS, ("hidden", "latents", "categories"): MAX_ELEMENTS,
              ("latents", "categories"): 1_048_576, ("eval_images", "latents", "categories"): MAX_ELEMENTS,
              ("eval_images", "iw_samples"): 10_000_000}
    default_steps = 300
    # the authors' script's default (the paper's tuned values at 8 x 4: 3e-4 to 1e-3; configs/fashion-vae-tuned.toml)
    default_lr = 1e-3

    def validate(self):
        p = self.params
        self.groups, self.codes = p["latents"], p["categories"]
        data = load_idx_dataset(p["data_dir"] or None)
        self.train_intensities = torch.from_numpy(data["train_images"])  # shared with the cache, never written
        self.pixels = self.train_intensities.shape[1]
        test, labels = data["test_images"], data["test_labels"]
        if p["eval_images"] > len(test):
            raise GumbenchError(
                f"{self.name}: eval_images must be at most the {len(test):,} test images, got {p['eval_images']}"
            )
        if p["hidden"] * self.pixels > MAX_ELEMENTS:
            raise GumbenchError(
                f"{self.name}: hidden x pixels must be <= {MAX_ELEMENTS:,} (memory), got {p['hidden']} x {self.pixels}"
            )
        gen = torch.Generator().manual_seed(p["seed"])
        chosen = torch.randperm(len(test), generator=gen)[: p["eval_images"]]
        self.eval_images = binarize(torch.from_numpy(test[chosen.numpy()]), gen)
        self.eval_labels = torch.from_numpy(labels[chosen.numpy()].astype(np.int64))

    def check_estimator(self, estimator):
        if _is_vq(estimator):
            raise GumbenchError(
                f"{self.name}: {estimator.label} is a VQ estimator; this task follows the ReinMax protocol, whose "
                f"decoder reads the one-hot code (no codebook to learn): use a categorical estimator "
                f"(st-gumbel, reinmax, gst, gumbel-rao, straight-through, reinforce, ...), or digits-vae for VQ"
            )
        if estimator.required_categories not in (None, self.codes):
            raise GumbenchError(f"{self.name}: {estimator.label} needs categories={estimator.required_categories}, "
                                f"got categories={self.codes}")

    def build(self, estimator):
        self.check_estimator(estimator)
        return _VAE(estimator, self.pixels, self.params["hidden"], self.groups, self.codes)

    def parameter_groups(self, model):
        return {"model": [p for p in model.parameters() if p.requires_grad]}  # the identity codebook is fixed

    def batch(self, step, generator):
        index = torch.randint(0, len(self.train_intensities), (self.params["batch"],), generator=generator)
        return binarize(self.train_intensities[index], generator), None

    def eval_batch(self):
        return self.eval_images, self.eval_labels

    def features(self, model, batch):
        return model.encoder(batch[0])

    @staticmethod
    def reconstruction_loss(output, target):
        """-log p(x|z) per row for Bernoulli pixels with logits ``output`` (..., P)."""
        return nn.functional.binary_cross_entropy_with_logits(output, target.expand_as(output), reduction="none").sum(
            -1
        )

    def kl(self, logits: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || uniform) per row from logits (..., L, C)."""
        log_q = torch.log_softmax(logits, -1)
        return (log_q.exp() * log_q).sum((-2, -1)) + self.groups * math.log(self.codes)

    def loss(self, model, batch, generator):
        x = batch[0]
        out = model.bottleneck(
            self.features(model, batch), lambda q: self.reconstruction_loss(model.decoder(q), x), generator
        )
        kl = self.kl(out.logits)
        terms = {"reconstruction": float(out.loss.detach().mean()), "kl": float(kl.detach().mean())}
        terms["negative_elbo"] = terms["reconstruction"] + terms["kl"]
        terms.update({k: float(v.detach().mean()) for k, v in out.aux.items()})
        return StepOutput(out.surrogate.mean() + kl.mean(), terms, out)

    def evaluate(self, model, batch, indices):
        x = batch[0]
        logits = model.bottleneck.logits_or_vectors(self.features(model, batch))
        kl = self.kl(logits)
        argmax = self.reconstruction_loss(model.decoder(model.bottleneck.decode(indices)), x)
        reconstruction, nll_iw = self.importance_weighted(model, x, logits, self.params["iw_samples"],
                                                          torch.Generator().manual_seed(self.params["seed"]))
        metrics = {"negative_elbo": float((reconstruction + kl).mean()), "nll_iw": float(nll_iw.mean()),
                   "kl": float(kl.mean()), "reconstruction": float(argmax.mean())}
        if self.codes ** self.groups <= EXACT_CODES:
            negative_elbo, nll = self.exact_bounds(model, x, logits)
            metrics.update(negative_elbo_exact=float(negative_elbo.mean()), nll_exact=float(nll.mean()))
        return metrics

    def importance_weighted(self, model, x, logits, samples: int, generator: torch.Generator):
        """Per image (N,): the mean of -log p(x|z_k) over ``samples`` draws z_k ~ q(z|x), and minus the
        importance-weighted bound log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) on the same draws."""
        log_q = torch.log_softmax(logits.detach().double(), -1)  # (N, L, C)
        n = len(x)
        chunk = max(1, IW_CHUNK // (n * self.pixels))
        log_weights, reconstructions = [], []
        log_prior = -self.groups * math.log(self.codes)
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            codes = torch.multinomial(log_q.exp().reshape(-1, self.codes).expand(k, -1, -1).reshape(-1, self.codes), 1,
                                      generator=generator).reshape(k, n, self.groups)
            onehot = nn.functional.one_hot(codes, self.codes).to(x.dtype)
            recon = self.reconstruction_loss(model.decoder(model.bottleneck.lookup(onehot)), x).double()  # (k, N)
            log_q_z = log_q.expand(k, -1, -1, -1).gather(-1, codes.unsqueeze(-1)).squeeze(-1).sum(-1)  # (k, N)
            reconstructions.append(recon)
            log_weights.append(-recon + log_prior - log_q_z)
        recon, log_w = torch.cat(reconstructions), torch.cat(log_weights)
        return recon.mean(0), -(torch.logsumexp(log_w, 0) - math.log(samples))

    def all_codes(self) -> torch.Tensor:
        """Every code (C^L, L), the last latent varying fastest."""
        return torch.cartesian_prod(*[torch.arange(self.codes)] * self.groups).reshape(-1, self.groups)

    def exact_bounds(self, model, x, logits):
        """Per image (N,), by enumerating the C^L codes: the exact -ELBO and -log p(x) = -log sum_z p(x|z) p(z)."""
        codes = self.all_codes()  # (M, L)
        out = model.decoder(model.bottleneck.lookup(nn.functional.one_hot(codes, self.codes).to(x.dtype)))  # (M, P)
        # (N, M): sum_j x_j l_j - log(1 + e^l_j); the float32 product is exact to ~1e-4 nats at these sizes
        log_lik = (x @ out.T).double() - nn.functional.softplus(out.double()).sum(-1)
        log_q = torch.log_softmax(logits.detach().double(), -1)  # (N, L, C)
        log_q_z = log_q[:, torch.arange(self.groups), codes].sum(-1)  # (N, M)
        kl = (log_q.exp() * log_q).sum((-2, -1)) + self.groups * math.log(self.codes)
        negative_elbo = -(log_q_z.exp() * log_lik).sum(-1) + kl
        nll = -(torch.logsumexp(log_lik, -1) - self.groups * math.log(self.codes))
        return negative_elbo, nll


def _is_vq(estimator) -> bool:
    from gumbench.estimators import VQEstimator

    return isinstance(estimator, VQEstimator)
