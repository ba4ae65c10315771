"""Sweep configs: a grid of tasks x estimators (with parameter lists) x repetitions, as units with seeds.

A sweep config (TOML or YAML, or the built-in default) has two optional sections:

    name = "default"
    base_seed = 0
    repetitions = 1             # a section's own ``repetitions`` overrides it
    [gradstats]                 # toys with exact gradients
    tasks = ["categorical[loss=[quadratic,linear]]", "bernoulli"]
    estimators = ["st-gumbel[tau=[0.5,1,2]]", "reinforce[baseline=[none,loo]]"]
    samples = 4000
    [training]                  # models with a discrete bottleneck
    tasks = ["digits-vae"]
    estimators = ["st-gumbel", "vq-commitment"]
    steps = 150
    lr = 5e-4                   # optional: the optimizer's learning rate (absent: the task's default)
    optimizer = "radam"         # optional: "adam" or "radam" (absent: Adam)
    gradient_checkpoints = [0, 75, 150]  # optional, categorical VAEs only: ELBO-gradient accuracy at these steps
    ladder = [150, 600, 2400]   # optional: a budget ladder (absolute steps; the last rung is the budget)

Lists inside brackets expand into the cartesian grid. Every (kind, task, estimator, repetition) is a *unit*; its
seed is a hash of (base seed, kind, task, estimator, repetition, and the learning rate and optimizer where a section
gives them), so results depend neither on order nor on the worker that ran them; a section without ``lr`` or
``optimizer`` makes the same units, ids and seeds as before those keys existed. In a [gradstats] section
repetition r measures problem instance r (:func:`gumbench.benchmarks.problems.instance_spec`: the spec's seed + r;
a problem without a seed, such as ``bernoulli``, has one instance and its repetitions are fresh draws on it).
``gradient_checkpoints`` (a ``digits-vae`` or ``fashion-vae`` whose codes can be enumerated) adds, at each listed
step, the unit's estimator's relative bias, relative standard deviation and cosine against the exact ELBO
gradient (:func:`gumbench.benchmarks.studies.elbo.gradient_probe`: :data:`GRADIENT_POINTS`
evaluation images, :data:`GRADIENT_SAMPLES` estimates each) as rows
``elbo_gradient_relative_bias``, ``elbo_gradient_relative_std``, ``elbo_gradient_cosine`` (means
over the images); it changes neither the training run nor the seed. ``ladder`` (at least 3 distinct
steps; ``steps`` may be left out, else it must equal the last rung) evaluates each run at every rung as
well as every ``eval_every`` steps, so one run per unit gives the budget ladder that
:func:`gumbench.benchmarks.sweep.ladder.ladder_orderings` reads; it enters the unit id but not the seed,
so a ladder's first rung repeats the run of a section without one. The runner
(:mod:`gumbench.benchmarks.sweep.runner`) runs the units and the store
(:mod:`gumbench.benchmarks.sweep.store`) keeps their rows.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import tomllib

from gumbench.benchmarks.sweep.units import Unit, derive_seed  # noqa: F401  (re-exported)
from gumbench.errors import GumbenchError
from gumbench.plugin import LEARNING_RATE, SAMPLES, SEED, STEPS
from gumbench.registry import parse_spec

KINDS = ("gradstats", "training")

TEMPERATURES = "[0.1,0.25,0.5,1,2]"
INSTANCES = 5  # independently seeded problem instances per gradient question (draws nested inside each)

DEFAULT_CONFIG: dict[str, Any] = {
    "name": "default",
    "base_seed": 0,
    "repetitions": 3,
    "gradstats": [
        {
            "tasks": [
                "categorical[loss=quadratic]",
                "categorical[loss=linear]",
                "polynomial[p=[1.5,2,3],L=8]",
                "bernoulli",
            ],
            "estimators": [
                f"soft-gumbel[tau={TEMPERATURES}]",
                f"st-gumbel[tau={TEMPERATURES}]",
                f"straight-through[tau={TEMPERATURES}]",
                f"gumbel-rao[tau={TEMPERATURES}]",
                f"gst[tau={TEMPERATURES},variant=[1.0,p]]",
                "reinmax[tau=[1,2]]",
                "reinforce[baseline=[none,ema,loo]]",
                "disarm",
                "zgr",
                "decoupled-st-gumbel[tau=2]",
                "decoupled-st-gumbel[tau=1.3,tau_forward=1.6]",
                "indecater",
                # issue 26: ReinMax's Rao-Blackwellised and control-variate forms, FOGZO, samples without replacement,
                # and the learned control variates (trained at the logits first: warmup=200; about 5 s a task each)
                "reinmax-rao",
                "reinmax-cv",
                "fogzo",
                "unordered-set",
                "reinforce-wor",
                "rebar[warmup=200]",
                "relax[warmup=200]",
            ],
            "samples": 4000,
            "repetitions": INSTANCES,
        },
        {
            # VQ as a categorical choice (gumbench.benchmarks.problems.quantizers): the exact gradient of J_T in z and
            # in the codebook from large to small T (at T = 0.01 the gradient in z has vanished, so only the
            # codebook's), and the Gaussian-smoothed objectives of the deterministic quantizers; estimators that do
            # not apply to a problem are left out with the reason
            "tasks": [
                "vq-distance[T=[10,1,0.1],wrt=[z,codebook]]",
                "vq-distance[T=0.01,wrt=codebook]",
                "vq-distance[encoder=mlp,loss=cross-entropy,T=[10,1,0.1],wrt=[z,codebook]]",
                "vq-distance[stages=2,T=[10,1,0.1],wrt=[z,codebook]]",
                "quantizer-smoothed[quantizer=[vq,fsq,lfq],sigma=[0.1,0.5]]",
            ],
            "estimators": [
                "vq-commitment",
                "vq-commitment[rotation=true]",
                "nsvq",
                "ibq",
                "simvq",
                # issue 26: DiVeQ (its error aligned with the chosen code) and VQBridge (a projector over the
                # codebook); SF-DiVeQ and FSP are refused on these problems with the reason
                "diveq",
                "vqbridge",
                "residual-vq[stages=2]",
                "residual-vq[stages=2,quantizer=nsvq]",
                "fsq[levels=5-5-5-5]",
                "lfq",
                "st-gumbel",
                "soft-gumbel",
                "straight-through",
                "gumbel-rao",
                "gst",
                "reinmax",
                "reinforce[baseline=loo]",
                "zgr",
                "decoupled-st-gumbel[tau=1.3,tau_forward=1.6]",
                "indecater",
                "reinmax-rao",
                "reinmax-cv",
                "fogzo",
                "unordered-set",
                "reinforce-wor",
                "rebar[warmup=200]",
                "relax[warmup=200]",
            ],
            "samples": 4000,
            "repetitions": INSTANCES,
        },
    ],
    "training": [
        {
            "tasks": ["digits-vae", "tones", "gmm-vq"],
            "estimators": [
                "st-gumbel",
                "soft-gumbel",
                "straight-through",
                "gumbel-rao",
                "reinmax",
                "gst[variant=p]",
                "reinforce[baseline=loo]",
                "vq-commitment",
                "vq-commitment[ema=true]",
                "vq-commitment[rotation=true]",
                "vq-commitment[init=kmeans]",
                "vq-commitment[restart=true]",
                "vq-commitment[cosine=true]",
                # today's tokenizers' quantizers with learned codebooks, at the task's code count K (residual-vq splits
                # it into 2 books of K/2: more bits per frame; split=product: books of K's bits, the rivals' bits)
                "residual-vq[stages=2]", "residual-vq[stages=2,split=product]",
                "simvq", "ibq", "nsvq",
                "diveq", "sf-diveq", "vqbridge",  # issue 26's quantizers with learned codebooks
            ],
            "steps": 150,
            "eval_every": 25,
        },
        {  # implicit codebooks against vq-commitment at the same code count, so the same bits per group:
            # 8 codes (digits-vae's latents), 16 (tones), 32 (gmm-vq); LFQ and BSQ need log2(codes) dimensions
            "tasks": ["digits-vae[code_dim=3]", "tones[code_dim=4]", "gmm-vq[code_dim=5]"],
            "estimators": ["vq-commitment", "lfq", "bsq"],
            "steps": 150,
            "eval_every": 25,
        },
        # FSQ needs one dimension per level (each level at least 3): one block per task; FSP (issue 26: FSQ-like with
        # Lloyd-Max bin centres) beside it at the same levels
        {
            "tasks": ["digits-vae[code_dim=1]"],
            "estimators": ["vq-commitment", "fsq[levels=8]", "fsp[levels=8]"],
            "steps": 150,
            "eval_every": 25,
        },
        {
            "tasks": ["tones[code_dim=2]"],
            "estimators": ["vq-commitment", "fsq[levels=4-4]", "fsp[levels=4-4]"],
            "steps": 150,
            "eval_every": 25,
        },
        {
            "tasks": ["gmm-vq[code_dim=2]"],
            "estimators": ["vq-commitment", "fsq[levels=8-4]", "fsp[levels=8-4]"],
            "steps": 150,
            "eval_every": 25,
        },
        {  # a budget ladder on a subset (issue 24): the same runs as the first section's (same seeds), evaluated at
            # x1, x4 and x16 its 150 steps; an ordering counts as settled only where 600 and 2,400 steps agree
            "tasks": ["tones", "gmm-vq"],
            "estimators": ["st-gumbel", "reinmax", "vq-commitment"],
            "ladder": [150, 600, 2400],
            "eval_every": 2400,
        },
        {  # real speech, vendored: a wav2vec 2.0-style model and a VQ-VAE on log-mel frames
            "tasks": ["wav2vec2[batch=4,crop=0.5]", "logmel-vqvae"],
            "estimators": [
                "st-gumbel",
                "gumbel-rao",
                "reinforce[baseline=loo]",
                "vq-commitment",
                "vq-commitment[restart=true]",
            ],
            "steps": 100,
            "eval_every": 25,
        },
        {  # today's quantizers on the log-mel VQ-VAE (128 codes): learned codebooks at its 16 dimensions,
            # LFQ and BSQ at 7 (2^7 codes), FSQ 8-4-4 at 3, each beside vq-commitment at the same dimension
            "tasks": ["logmel-vqvae"],
            "estimators": ["residual-vq[stages=2]", "residual-vq[stages=2,split=product]", "simvq", "ibq", "nsvq"],
            "steps": 100,
            "eval_every": 25,
        },
        {
            "tasks": ["logmel-vqvae[code_dim=7]"],
            "estimators": ["vq-commitment", "lfq", "bsq"],
            "steps": 100,
            "eval_every": 25,
        },
        {
            "tasks": ["logmel-vqvae[code_dim=3]"],
            "estimators": ["vq-commitment", "fsq[levels=8-4-4]"],
            "steps": 100,
            "eval_every": 25,
        },
    ],
}

SECTION_KEYS = {
    "gradstats": {"tasks": list, "estimators": list, "samples": int, "repetitions": int},
    "training": {"tasks": list, "estimators": list, "steps": int, "eval_every": int, "lr": float, "optimizer": str,
                 "gradient_checkpoints": tuple, "ladder": tuple, "repetitions": int},
}
OPTIMIZERS = ("adam", "radam")  # gumbench.benchmarks.training.base.OPTIMIZERS, by name
GRADIENT_POINTS, GRADIENT_SAMPLES = 4, 1000  # per gradient checkpoint: evaluation images, estimates per image
MAX_UNITS = 100_000  # a grid past this is refused before any unit is built
# the largest values a config may ask for: sizes beyond these are refused before anything runs
LIMITS = {
    "samples": SAMPLES.high,
    "steps": STEPS.high,
    "eval_every": STEPS.high,
    "repetitions": 1000,
    "base_seed": SEED.high,
}
LOWEST = {"samples": int(SAMPLES.low)}  # the smallest values (others: 1): fewer than 4 estimates give no interval
TOP_KEYS = {"name": str, "base_seed": int, "repetitions": int, "gradstats": (dict, list), "training": (dict, list)}


def sections(config: dict, kind: str) -> list[dict]:
    """A kind's sections: one table, or several ([[training]] in TOML) with their own grids and budgets."""
    value = config.get(kind) or []
    return [value] if isinstance(value, dict) else list(value)


def load_config(path: str | Path | None) -> dict:
    """The default config, or a TOML/YAML file merged over an empty config (unknown keys are errors)."""
    if path is None:
        return copy.deepcopy(DEFAULT_CONFIG)
    if not isinstance(path, (str, Path)):
        raise GumbenchError(f"a config is a path to a .toml or .yaml file, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise GumbenchError(f"config {str(path)!r} is a folder; give a .toml or .yaml file")
    if not path.exists():
        raise GumbenchError(f"config file {str(path)!r} does not exist")
    if not path.is_file():
        raise GumbenchError(f"config {str(path)!r} is not a regular file; give a .toml or .yaml file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GumbenchError(
            f"config {path.name!r} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise GumbenchError(f"config {path.name!r}: use a .toml, .yaml or .yml file")
    except RecursionError:
        raise GumbenchError(f"config {path.name!r} nests too deeply to be a sweep config") from None
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise GumbenchError(
            f"config {path.name!r} is not valid {path.suffix[1:].upper()}: {str(exc).splitlines()[0]}"
        ) from None
    except Exception as exc:  # yaml.YAMLError has no common base with ValueError
        if type(exc).__module__.startswith("yaml"):
            raise GumbenchError(f"config {path.name!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
        raise
    if not isinstance(data, dict):
        raise GumbenchError(f"config {path.name!r} must be a mapping of keys to values")
    check_config(data)
    return data


NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_name(name: str) -> str:
    """A sweep name is one folder name: letters, digits, '-', '_' and '.', not starting with '.' or '-'."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise GumbenchError(f"sweep name {name!r} is not allowed: use letters, digits, '-', '_' and '.', "
                            "not starting with '.' or '-' (no path separators)")
    return name


def check_config(config: dict) -> None:
    """Unknown keys or wrongly typed values: an error naming the valid ones."""
    if not isinstance(config, dict):
        raise GumbenchError(f"a sweep config is a mapping (a dict, or a .toml/.yaml file), got {type(config).__name__}")
    for key, value in config.items():
        if key not in TOP_KEYS:
            raise GumbenchError(f"unknown config key {key!r}; valid keys: {', '.join(TOP_KEYS)}")
        if not isinstance(value, TOP_KEYS[key]) or isinstance(value, bool) and TOP_KEYS[key] is int:
            kind = "table (or a list of tables)" if TOP_KEYS[key] == (dict, list) else TOP_KEYS[key].__name__
            raise GumbenchError(f"config key {key!r} must be a {kind}, got {value!r}")
    for section in KINDS:
        tables = sections(config, section)
        if not all(isinstance(t, dict) for t in tables):
            raise GumbenchError(f"[{section}] must be a table or a list of tables")
        for key, value in (item for t in tables for item in t.items()):
            allowed = SECTION_KEYS[section]
            if key not in allowed:
                raise GumbenchError(f"unknown key {key!r} in [{section}]; valid keys: {', '.join(allowed)}")
            if key == "optimizer":
                if not isinstance(value, str) or value not in OPTIMIZERS:
                    raise GumbenchError(
                        f"[{section}] optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}, got {value!r}"
                    )
                continue
            if allowed[key] is tuple:  # a list of steps
                if (
                    not isinstance(value, list)
                    or not value
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                ):
                    raise GumbenchError(
                        f"[{section}] {key} must be a non-empty list of steps (integers), got {value!r}"
                    )
                if not all(0 <= v <= LIMITS["steps"] for v in value):
                    raise GumbenchError(f"[{section}] {key} must be steps from 0 to {LIMITS['steps']:,}, got {value!r}")
                continue
            kinds = (int, float) if allowed[key] is float else allowed[key]
            if not isinstance(value, kinds) or (isinstance(value, bool) and allowed[key] in (int, float)):
                what = f"number {LEARNING_RATE.describe()}" if allowed[key] is float else allowed[key].__name__
                raise GumbenchError(f"[{section}] {key} must be a {what}, got {value!r}")
            if allowed[key] is list and not all(isinstance(v, str) for v in value):
                raise GumbenchError(f"[{section}] {key} must be a list of names like 'st-gumbel[tau=0.5]'")
            if allowed[key] is int and not LOWEST.get(key, 1) <= value <= LIMITS[key]:
                raise GumbenchError(f"[{section}] {key} must be from {LOWEST.get(key, 1)} to {LIMITS[key]:,}, "
                                    f"got {value}")
            if allowed[key] is float and not LEARNING_RATE.contains(float(value)):
                raise GumbenchError(f"[{section}] {key} must be a number {LEARNING_RATE.describe()}, got {value!r}")
    check_name(config.get("name", "sweep"))
    if not 1 <= config.get("repetitions", 1) <= LIMITS["repetitions"]:
        raise GumbenchError(f"repetitions must be from 1 to {LIMITS['repetitions']:,}, got {config['repetitions']}")
    if not 0 <= config.get("base_seed", 0) <= LIMITS["base_seed"]:
        raise GumbenchError(
            f"base_seed must be from 0 to {LIMITS['base_seed']:,} (2**63 - 1), got {config['base_seed']}"
        )


def apply_overrides(config: dict, **overrides) -> dict:
    """CLI flags win over file values; ``None`` means not given."""
    config = copy.deepcopy(config)
    for key in ("name", "base_seed", "repetitions"):
        if overrides.get(key) is not None:
            config[key] = overrides[key]
    for key, kind in (("samples", "gradstats"), ("steps", "training")):
        if overrides.get(key) is not None:
            for table in sections(config, kind):
                table[key] = overrides[key]
    if overrides.get("estimators"):
        for kind in KINDS:
            for table in sections(config, kind):
                table["estimators"] = list(overrides["estimators"])
    check_config(config)
    return config


def _grid_size(specs: list[str]) -> int:
    """How many single names the specs expand into, counted without expanding them."""
    return sum(
        math.prod(len(v) if isinstance(v, list) else 1 for v in parse_spec(text).params.values()) for text in specs
    )


def _expand(specs: list[str], make) -> list[Any]:
    return [make(single) for text in specs for single in parse_spec(text).grid()]


def expand_units(config: dict, max_memory=None) -> tuple[list[Unit], list[str]]:
    """Every unit of the grid, validated up front (bad names, sizes, pairs that cannot run and runs whose
    estimated peak memory exceeds ``max_memory`` (:mod:`gumbench.footprint`) raise before anything runs), and
    the (task, estimator) pairs left out because they cannot run together, with the reason."""
    from gumbench.benchmarks.problems import make_problem
    from gumbench.benchmarks.sweep.preflight import check_pair
    from gumbench.benchmarks.training import make_training_task
    from gumbench.estimators import make_estimator
    from gumbench.footprint import memory_limit

    check_config(config)
    limit = memory_limit(max_memory)
    base_seed, reps = int(config.get("base_seed", 0)), int(config.get("repetitions", 1))
    units: list[Unit] = []
    skipped: list[str] = []
    for kind, section in ((kind, table) for kind in KINDS for table in sections(config, kind)):
        if not section.get("tasks") or not section.get("estimators"):
            raise GumbenchError(f"[{kind}] needs non-empty 'tasks' and 'estimators' lists")
        section_reps = int(section.get("repetitions", reps))
        planned = _grid_size(section["tasks"]) * _grid_size(section["estimators"]) * section_reps
        if len(units) + planned > MAX_UNITS:
            raise GumbenchError(f"the sweep grid has more than {MAX_UNITS:,} units (tasks x estimators x repetitions); "
                                "split it into several sweeps")
        make_t = make_problem if kind == "gradstats" else make_training_task
        tasks = _expand(section["tasks"], make_t)
        estimators = _expand(section["estimators"], lambda s: make_estimator(s.name, **s.params))
        ladder = _ladder(section) if kind == "training" else ()
        budget = section.get("samples", 4000) if kind == "gradstats" else section.get("steps", (ladder or [None])[-1])
        lr, optimizer = float(section["lr"]) if "lr" in section else None, section.get("optimizer")
        probes = tuple(sorted(set(section.get("gradient_checkpoints", ()))))
        for task in tasks:
            steps = int(budget if budget is not None else task.default_steps)
            if probes and kind == "training" and probes[-1] > steps:
                raise GumbenchError(
                    f"[training] gradient_checkpoints must be steps from 0 to the section's {steps:,} steps, "
                    f"got {probes[-1]:,}"
                )
            for est in estimators:
                if kind == "gradstats":
                    problem = task.incompatibility(est)
                    if problem:
                        skipped.append(f"{kind}: {task.spec} x {est.spec} ({problem})")
                        continue
                check_pair(kind, task, est, steps if kind == "training" else int(budget), limit, study=bool(probes))
                for rep in range(section_reps):
                    units.append(Unit(kind, task.spec, est.spec, rep,
                                      derive_seed(base_seed, kind, task.spec, est.spec, rep, lr, optimizer),
                                      steps if kind == "training" else int(budget), int(section.get("eval_every", 25)),
                                      lr, probes, optimizer, ladder))
    if not units:
        raise GumbenchError(
            "the sweep grid is empty: no (task, estimator) pair can run (VQ estimators need training tasks or "
            "the quantizer problems vq-distance and quantizer-smoothed; binary-only estimators need tasks with "
            "2 categories)"
        )
    if len({u.unit_id for u in units}) != len(units):
        raise GumbenchError("the sweep grid lists a (task, estimator, learning rate, optimizer, repetition) twice")
    return units, skipped


def _ladder(section: dict) -> tuple[int, ...]:
    """A section's budget ladder: at least 3 distinct rungs (steps >= 1), the last one the section's steps."""
    if "ladder" not in section:
        return ()
    rungs = tuple(sorted(set(section["ladder"])))
    if len(rungs) < 3 or rungs[0] < 1:
        raise GumbenchError(f"[training] ladder must list at least 3 distinct steps from 1, got {section['ladder']!r}")
    if section.get("steps", rungs[-1]) != rungs[-1]:
        raise GumbenchError(f"[training] a ladder's last rung is the budget: steps = {section['steps']:,} but the "
                            f"last rung is {rungs[-1]:,} (leave steps out, or make them equal)")
    return rungs


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
