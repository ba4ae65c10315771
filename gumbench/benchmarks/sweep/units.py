"""A sweep's unit of work and its seed (:mod:`gumbench.benchmarks.sweep.config` makes them from a config)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    """One piece of work: a task, an estimator, a repetition, and its derived seed."""

    kind: str
    task: str
    estimator: str
    repetition: int
    seed: int
    budget: int  # samples (gradstats) or steps (training)
    eval_every: int = 25
    lr: float | None = None  # the optimizer's learning rate; None: the task's default (train()'s)
    gradient_checkpoints: tuple[int, ...] = ()  # steps at which the ELBO-gradient accuracy is measured
    optimizer: str | None = None  # "adam" or "radam"; None: train()'s default, Adam
    ladder: tuple[int, ...] = ()  # a budget ladder's rungs (steps, the last = budget): evaluations at each

    @property
    def unit_id(self) -> str:
        fields = [self.kind, self.task, self.estimator, self.repetition, self.seed, self.budget, self.eval_every]
        if self.lr is not None:  # only when given, so units without one keep the ids they always had
            fields.append({"lr": self.lr})
        if self.gradient_checkpoints:
            fields.append({"gradient_checkpoints": list(self.gradient_checkpoints)})
        if self.optimizer is not None:  # likewise: only when a config names one
            fields.append({"optimizer": self.optimizer})
        if self.ladder:  # likewise
            fields.append({"ladder": list(self.ladder)})
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"{self.kind} {self.task} {self.estimator} rep {self.repetition}"


def derive_seed(base_seed: int, kind: str, task: str, estimator: str, repetition: int, lr: float | None = None,
                optimizer: str | None = None) -> int:
    """A 31-bit seed from a hash of the unit's identity (never of its position in the grid); the
    learning rate and the optimizer enter only when given, so seeds without them are those they always were."""
    key = (f"{base_seed}|{kind}|{task}|{estimator}|{repetition}{'' if lr is None else f'|lr={lr!r}'}"
           f"{'' if optimizer is None else f'|optimizer={optimizer}'}").encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little") & 0x7FFFFFFF
