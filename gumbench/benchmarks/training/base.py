"""Training tasks: a model with a discrete bottleneck around any registry estimator.

A task subclasses :class:`TrainingTask` and defines

    build(bottleneck)           -> nn.Module holding the bottleneck and the rest of the model
    batch(step, generator)      -> the training batch of this step
    loss(model, batch, generator) -> StepOutput(total, terms, indices, logits)
    eval_batch()                -> a fixed batch for evaluations (optional)
    evaluate(model, batch)      -> task metrics (optional; e.g. purity and NMI against truth)

and never looks at which estimator it got: :class:`DiscreteBottleneck` turns features into
logits (categorical estimators) or vectors (VQ estimators), calls the estimator with the
downstream loss, and hands back quantized vectors from one codebook of shape (G, V, D/G)
either way. :func:`train` runs N steps from a seed and returns one tidy row per step: loss
terms, utilization, temperature, gradient norms, step time, peak memory. The utilization columns
(``code_perplexity``, ``used_fraction``, ...) are of the noiseless argmax(logits) for categorical
estimators (fairseq's convention, as the ``eval_`` columns), ``sampled_code_perplexity`` of the
codes the forward pass used and ``dead_codes`` of those too (a code the forward never picks gets no
codebook gradient); see :mod:`gumbench.benchmarks.utilization`. :func:`training_table` shows the last
step of each run as a text table (what ``gumbench train`` prints).
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from torch import nn

from gumbench.benchmarks.training.checkpoint import Checkpointing, RunState, Saver
from gumbench.benchmarks.training.columns import StageColumns, implicit_columns, step_usage
from gumbench.benchmarks.utilization import (
    UsageTracker,
    code_churn,
    summarize,
)
from gumbench.errors import GumbenchError
from gumbench.estimators import VQEstimator, make_estimator
from gumbench.plugin import LEARNING_RATE, SEED, STEPS, Plugin, Range, check_integer, check_number
from gumbench.registry import Registry, format_spec, format_value

# Ranges of the sizes the tasks share; the tasks' ``limits`` bound the products that size one
# step's tensors and weights together by gumbench.plugin.MAX_ELEMENTS.
WIDTH = Range(1, 4096)  # layer widths: a 4096 x 4096 weight is 64 MiB
BATCH = Range(1, 16_384)  # rows per step
CODES = Range(1, 65_536)  # codes or categories per group
# the optimizers train() offers, by name; torch's default betas and eps for each
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "radam": torch.optim.RAdam}

# the built-ins register when gumbench.benchmarks.training (the package) imports their modules
registry = Registry("training task")
register = registry.register


@dataclass
class BottleneckOutput:
    quantized: torch.Tensor  # (..., G * code_dim), with a leading sample dim if the estimator drew several
    indices: torch.Tensor  # (..., G)
    logits: torch.Tensor | None  # (..., G, V) for categorical estimators, None for VQ
    surrogate: torch.Tensor  # (...) per-row surrogate of the downstream loss (estimator's)
    loss: torch.Tensor  # (...) per-row downstream loss
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    stage_indices: torch.Tensor | None = None  # (..., G, S) per residual stage; None for single-stage estimators


class DiscreteBottleneck(nn.Module):
    """Features (..., in_dim) -> G groups of V codes -> quantized vectors (..., G * code_dim).

    Categorical estimators get logits from a linear layer and their (relaxed) one-hot value
    selects codebook rows, as in wav2vec 2.0's Gumbel quantizer; VQ estimators get vectors
    from the same kind of layer and pick the nearest codebook row.
    """

    def __init__(self, estimator, in_dim: int, groups: int, codes: int, code_dim: int):
        super().__init__()
        self.estimator = estimator
        self.groups, self.codes, self.code_dim = groups, codes, code_dim
        self.is_vq = isinstance(estimator, VQEstimator)
        self.project = nn.Linear(in_dim, groups * (code_dim if self.is_vq else codes))
        self.codebook = nn.Parameter(torch.randn(groups, codes, code_dim) / math.sqrt(code_dim))
        self._encoded = None  # (indices, vectors) of the last encode(), for decode()

    def logits_or_vectors(self, features: torch.Tensor) -> torch.Tensor:
        out = self.project(features)
        return out.unflatten(-1, (self.groups, self.code_dim if self.is_vq else self.codes))

    def lookup(self, onehot: torch.Tensor) -> torch.Tensor:
        """(..., G, V) (relaxed) one-hots -> (..., G * code_dim) codebook vectors."""
        return torch.einsum("...gv,gvd->...gd", onehot, self.codebook).flatten(-2)

    def forward(
        self, features: torch.Tensor, downstream: Callable[[torch.Tensor], torch.Tensor], generator=None
    ) -> BottleneckOutput:
        """``downstream`` maps quantized (..., G * code_dim) to a per-row loss (...)."""
        x = self.logits_or_vectors(features)
        kept = {}

        def loss_fn(value):
            quantized = value.flatten(-2) if self.is_vq else self.lookup(value)
            kept["quantized"] = quantized
            return downstream(quantized)

        if self.is_vq:
            out = self.estimator(x, loss_fn, codebook=self.codebook, generator=generator)
            logits = None
        else:
            if x.requires_grad:
                x.retain_grad()  # gradient norms at the logits are reported
            out = self.estimator(x, loss_fn, generator=generator)
            logits = x
        return BottleneckOutput(kept["quantized"], out.indices, logits, out.surrogate, out.loss, dict(out.aux),
                                out.stage_indices)

    @torch.no_grad()
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Deterministic codes (..., G): noiseless argmax of the logits, or the quantizer's codes
        (``VQEstimator.quantize``; their vectors are kept for :meth:`decode`)."""
        x = self.logits_or_vectors(features)
        if not self.is_vq:
            return x.argmax(-1)
        indices, vectors = self.estimator.quantize(x, self.codebook)
        self._encoded = (indices, vectors)
        return indices

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes (..., G) -> the vectors (..., G * code_dim) the downstream sees for them: codebook rows
        for categorical estimators, the quantizer's own vectors for VQ ones (those :meth:`encode` made
        with these very indices, as residual stages are not determined by the first stage's code)."""
        if not self.is_vq:
            return self.lookup(torch.nn.functional.one_hot(indices, self.codes).to(self.codebook.dtype))
        encoded = self._encoded
        if encoded is not None and encoded[0] is indices:
            return encoded[1].flatten(-2)
        return self.estimator.decode(indices, self.codebook).flatten(-2)


@dataclass
class StepOutput:
    total: torch.Tensor  # scalar to minimize (includes the estimator's surrogate)
    terms: dict[str, float]  # named loss terms, for the record
    bottleneck: BottleneckOutput


class TrainingTask(Plugin):
    """Base class of training tasks; see the module docstring. ``has_quantizer_problem``: the
    task defines ``quantizer_problem`` (the speech quantizer gradient study needs it).

    The bottleneck's sizes are parameters: ``codes_key`` names the one holding the codes per group and
    ``code_dim_key`` the one the code dimension follows from (the dimension itself, or with
    ``code_dim_per_group`` False a width of groups x code dimension, as wav2vec2's final_dim). A quantizer
    with an implicit code space (``VQEstimator.implicit_codes``: fsq, lfq, bsq, residual stages of these)
    sizes the bottleneck (:meth:`sized_for`) unless the task's spec sets these parameters."""

    default_steps: ClassVar[int] = 200
    default_lr: ClassVar[float] = 2e-3
    # estimator labels whose runs on this task are gradient-path demonstrations only, with the reason: a ranking
    # (verdict, report) leaves those (task, estimator) rows out and prints the reason
    unranked: ClassVar[dict[str, str]] = {}
    has_quantizer_problem: ClassVar[bool] = False
    codes_key: ClassVar[str] = "codes"
    code_dim_key: ClassVar[str] = "code_dim"
    code_dim_per_group: ClassVar[bool] = True

    # --- to define in tasks -------------------------------------------------
    groups: int = 1
    codes: int = 2

    def build(self, estimator) -> nn.Module:
        raise NotImplementedError  # abstract: the task's model, with a DiscreteBottleneck at .bottleneck

    def batch(self, step: int, generator: torch.Generator):
        raise NotImplementedError  # abstract: the training batch of a step

    def loss(self, model: nn.Module, batch, generator: torch.Generator) -> StepOutput:
        raise NotImplementedError  # abstract: the total loss and its terms

    def eval_batch(self):
        """A fixed batch for evaluations (code churn, train-vs-eval usage); None to skip."""
        return None

    def features(self, model: nn.Module, batch) -> torch.Tensor:
        """Features fed to the bottleneck for ``batch`` (used by evaluations)."""
        raise NotImplementedError  # abstract where eval_batch() is defined

    def evaluate(self, model: nn.Module, batch, indices: torch.Tensor) -> dict[str, float]:
        """Task metrics on the evaluation batch (e.g. purity against the truth)."""
        return {}

    def check_estimator(self, estimator) -> None:
        """Refuse (GumbenchError) an estimator this task cannot train with; called before any work. Here:
        a quantizer whose implicit code space conflicts with the sizes the task's spec sets."""
        self.quantizer_sizes(estimator)

    def bottleneck_sizes(self) -> tuple[int, int]:
        """(codes per group, code dimension) as the parameters set them."""
        width = self.params[self.code_dim_key]
        return self.params[self.codes_key], width if self.code_dim_per_group else width // self.groups

    def size_settings(self, codes: int, code_dim: int) -> dict[str, int]:
        """The parameters that give the bottleneck ``codes`` codes per group of dimension ``code_dim``."""
        width = code_dim if self.code_dim_per_group else code_dim * self.groups
        return {self.codes_key: codes, self.code_dim_key: width}

    def quantizer_sizes(self, estimator) -> tuple[int, int] | None:
        """(codes, code dimension) that ``estimator``'s implicit code space gives this task's bottleneck, None
        for other estimators (the task's own sizes). A conflict with sizes the spec sets explicitly is one line
        naming this task and settings that work."""
        if not (isinstance(estimator, VQEstimator) and estimator.implicit_codes):
            return None
        codes = self.params[self.codes_key] if self.codes_key in self.given else None
        code_dim = self.bottleneck_sizes()[1] if self.code_dim_key in self.given else None
        space = estimator.code_space(codes, code_dim)
        if space is not None:
            return space
        fit = estimator.code_space(None, code_dim) or estimator.code_space(codes, None) or estimator.code_space()
        settings = {k: self.params[k] for k in self.given}  # the task as the user named it
        named = format_spec(self.name, settings)
        settings.update(self.size_settings(*fit))
        set_keys = [k for k in (self.codes_key, self.code_dim_key) if k in self.given]
        given, keys = ", ".join(f"{k}={format_value(self.params[k])}" for k in set_keys), " and ".join(set_keys)
        raise GumbenchError(f"{named}: {estimator.label} quantizes to implicit codes that {given} do not fit; use "
                            f"{format_spec(self.name, settings)} ({fit[0]} codes of dimension {fit[1]}), or leave "
                            f"{keys} out to size the bottleneck from the quantizer")

    def sized_for(self, estimator) -> "TrainingTask":
        """This task with its bottleneck sized from ``estimator``'s implicit code space (a new task where the
        sizes change; this one otherwise): see :meth:`quantizer_sizes`."""
        space = self.quantizer_sizes(estimator)
        if space is None or space == self.bottleneck_sizes():
            return self
        return self.with_params(**self.size_settings(*space))

    def temperature(self, step: int) -> float | None:
        """Temperature at ``step`` for estimators that have one; None keeps theirs."""
        return None

    def lr_factor(self, step: int) -> float | None:
        """The learning rate of ``step`` as a multiple of the run's; None: the run's, unscheduled (no ``lr`` column)."""
        return None

    def for_budget(self, steps: int) -> "TrainingTask":
        """This task for a run of ``steps`` steps (a task whose schedules span the run returns a copy that names
        their length); this one unchanged by default."""
        return self

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """Named groups whose gradient norms are recorded."""
        return {
            "bottleneck_codebook": [model.bottleneck.codebook],
            "model": [p for n, p in model.named_parameters() if "bottleneck.codebook" not in n],
        }


def make_training_task(spec) -> TrainingTask:
    if isinstance(spec, TrainingTask):
        return spec
    return registry.create(spec)


def _grad_norm(params) -> float:
    grads = [p.grad.detach().double().pow(2).sum() for p in params if p.grad is not None]
    return float(torch.stack(grads).sum().sqrt()) if grads else 0.0


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory on CUDA; the process's peak resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def train(
    task,
    estimator,
    *,
    steps: int | None = None,
    seed: int = 0,
    lr: float | None = None,
    optimizer: str = "adam",
    eval_every: int = 25,
    eval_steps=(),
    dead_window: int = 50,
    device: str = "cpu",
    callback: Callable[[int, nn.Module], None] | None = None,
    checkpoint: Checkpointing | None = None,
):
    """Train ``task`` with ``estimator`` for ``steps`` from ``seed``; one row per step (a DataFrame).

    ``optimizer`` is ``"adam"`` (the default) or ``"radam"`` (:data:`OPTIMIZERS`), at learning rate ``lr``
    (the task's default when None). The evaluation columns are computed every ``eval_every`` steps, at each step
    of ``eval_steps`` (a budget ladder's rungs) and at the last step. ``callback(step, model)``, if given, runs
    before the first step (step 0) and after each step. A task's temperature schedule (``task.temperature(step)``)
    reaches estimators that have a temperature through ``with_params``: every scheduled value is validated, and a
    schedule that leaves an estimator's range (ReinMax needs tau >= 1) is refused before the first step.
    ``checkpoint`` (:class:`~gumbench.benchmarks.training.checkpoint.Checkpointing`): write the run's state there
    every few minutes, and resume from it when the file exists (bit-identical rows but for the timing columns).
    """
    import pandas as pd

    task = make_training_task(task)
    configured = make_estimator(estimator)
    budgeted, steps, lr = _checked_settings(task, configured, steps, lr, eval_every, seed, dead_window, device)
    eval_steps = {check_integer("train", "eval_steps", s, STEPS) for s in eval_steps}
    optimizer_name = check_optimizer("train", optimizer)
    task.check_estimator(configured)  # refusals name the task as given
    task = budgeted.sized_for(configured)
    device = torch.device(device)
    run = _fresh_state(task, configured, seed, device, lambda m: _optimizer(optimizer_name, m, lr), dead_window)
    saver = None
    if checkpoint is not None:
        identity = {"task": task.spec, "estimator": configured.spec, "seed": seed, "steps": steps, "lr": lr,
                    "optimizer": optimizer_name, "eval_every": eval_every, "eval_steps": sorted(eval_steps),
                    "dead_window": dead_window}
        saver = Saver(checkpoint, identity)
        run = saver.resume(run, lambda m: _optimizer(optimizer_name, m, lr))
    model, groups, eval_batch = run.model, task.parameter_groups(run.model), task.eval_batch()
    callback = callback or (lambda step, model: None)
    if run.step == 0:
        callback(0, model)
    for step in range(run.step + 1, steps + 1):
        row = _step_row(task, configured, run, groups, step, seed, device, lr)
        if eval_batch is not None and (step % eval_every == 0 or step == steps or step in eval_steps):
            row.update(_evaluate(task, model, eval_batch, run.previous_eval))
            run.previous_eval = row.pop("_codes")
        run.rows.append(row)
        run.step = step
        callback(step, model)
        if saver is not None:
            saver.maybe_save(run)
    return pd.DataFrame(run.rows)


def _optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return OPTIMIZERS[name]([p for p in model.parameters() if p.requires_grad], lr=lr)


def _fresh_state(task, estimator, seed: int, device: torch.device, make_optimizer, dead_window: int) -> RunState:
    """A run's state before its first step: the model from ``seed``, its optimizer, the run's generator."""
    model = _built_model(task, estimator, seed, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    tracker = UsageTracker(model.bottleneck.groups, model.bottleneck.codes, dead_window)
    return RunState(0, model, make_optimizer(model), generator, tracker, StageColumns(model.bottleneck, dead_window))


def _step_row(task, configured, run: RunState, groups, step: int, seed: int, device, lr: float) -> dict:
    """One optimizer step of ``run`` and its row (without the evaluation columns)."""
    model = run.model
    est = _with_scheduled_temperature(task, model.bottleneck, step)
    scheduled = _scheduled_lr(task, run.optimizer, lr, step)
    out, norms, seconds = _optimizer_step(task, model, run.optimizer, run.generator, groups, est, step)
    indices, logits = out.bottleneck.indices, out.bottleneck.logits
    run.tracker.update(indices)
    usage, sampled = step_usage(indices, logits, model.bottleneck.codes)
    row = {"task": task.spec, "estimator": configured.spec, "label": configured.label, "seed": seed, "step": step,
           "loss": float(out.total.detach()), **{f"loss_{k}": v for k, v in out.terms.items()},
           **usage.as_row(), "sampled_code_perplexity": sampled, "dead_codes": float(run.tracker.dead_codes().sum()),
           "tau": est.temperature, **scheduled, **norms,
           "step_seconds": seconds, "peak_memory_mb": peak_memory_mb(device)}
    row.update(implicit_columns(est, indices, model.bottleneck),
               **run.stage_columns(est, out.bottleneck.stage_indices))
    return row


def _built_model(task: TrainingTask, estimator, seed: int, device: torch.device) -> nn.Module:
    """The task's model around ``estimator``, initialized from ``seed`` (the global RNG left as it was), in
    training mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # model initialization
        model = task.build(estimator).to(device)
    if not isinstance(getattr(model, "bottleneck", None), DiscreteBottleneck):
        raise GumbenchError(f"{task.spec}: build() must return a model with a DiscreteBottleneck at .bottleneck")
    return model.train()


def check_optimizer(owner: str, name) -> str:
    """An optimizer's name from :data:`OPTIMIZERS`, or one line naming them."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise GumbenchError(f"{owner}: optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    return name


def _checked_settings(task, estimator, steps, lr, eval_every, seed, dead_window, device):
    """(task for the run's budget, steps, learning rate) with the task's defaults, every setting checked; the
    temperature schedule at both ends."""
    steps = check_integer("train", "steps", task.default_steps if steps is None else steps, STEPS)
    task = task.for_budget(steps)
    lr = check_number("train", "lr", task.default_lr if lr is None else lr, LEARNING_RATE)
    check_integer("train", "eval_every", eval_every, STEPS)
    check_integer("train", "seed", seed, SEED)
    check_integer("train", "dead_window", dead_window, Range(1, 10_000))  # a (G, V) count per step is kept
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise GumbenchError(f"train: device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GumbenchError(
            f"train: device {str(device)!r} asks for CUDA, which this machine does not have; use device='cpu'"
        )
    if estimator.has_temperature:
        scheduled = [tau for tau in map(task.temperature, range(1, steps + 1)) if tau is not None]
        for tau in {min(scheduled), max(scheduled)} if scheduled else ():  # ranges are intervals: the extremes decide
            estimator.with_params(tau=tau)
    return task, steps, lr


def _scheduled_lr(task, optimizer, lr: float, step: int) -> dict[str, float]:
    """Set the learning rate of ``step`` where the task schedules one; its ``lr`` column (none otherwise)."""
    factor = task.lr_factor(step)
    if factor is None:
        return {}
    for group in optimizer.param_groups:
        group["lr"] = lr * factor
    return {"lr": lr * factor}


def _with_scheduled_temperature(task, bottleneck: DiscreteBottleneck, step: int):
    """The bottleneck's estimator for ``step``: a copy with the task's temperature where it has one
    (a fresh estimator: those with a temperature keep no state between calls)."""
    est = bottleneck.estimator
    tau = task.temperature(step)
    if tau is not None and est.has_temperature and tau != est.params["tau"]:
        est = bottleneck.estimator = est.with_params(tau=tau)
    return est


def _optimizer_step(task, model, optimizer, generator, groups, est, step):
    """One training step: (StepOutput, gradient norms of the parameter ``groups``, seconds)."""
    start = time.perf_counter()
    batch = task.batch(step, generator)
    out = task.loss(model, batch, generator)
    if not torch.isfinite(out.total):
        raise GumbenchError(f"{task.spec} with {est.spec}: the loss became {float(out.total)} at step {step}")
    optimizer.zero_grad(set_to_none=True)
    out.total.backward()
    norms = {f"grad_norm_{name}": _grad_norm(params) for name, params in groups.items()}
    logits = out.bottleneck.logits
    if logits is not None and logits.grad is not None:
        norms["grad_norm_logits"] = float(logits.grad.double().norm())
    optimizer.step()
    return out, norms, time.perf_counter() - start


def _evaluate(task, model, batch, previous):
    """The ``eval_`` columns on the evaluation batch, in eval mode (training mode again after), and ``_codes``."""
    model.eval()
    with torch.no_grad():
        features = task.features(model, batch)
        codes = model.bottleneck.encode(features)
        logits = None if model.bottleneck.is_vq else model.bottleneck.logits_or_vectors(features)
        usage = summarize(codes, model.bottleneck.codes, logits)
        row = {**usage.as_row("eval_"), **{f"eval_{k}": v for k, v in task.evaluate(model, batch, codes).items()}}
    churn = code_churn(previous, codes)
    if churn is not None:
        row["eval_churn"] = churn
    row["_codes"] = codes
    model.train()
    return row
