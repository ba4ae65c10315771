"""Rows describing what is registered, for ``gumbench list``."""

from __future__ import annotations

from gumbench.errors import GumbenchError
from gumbench.registry import format_value


def _parameters(cls) -> str:
    params = []
    for key, default in cls.defaults.items():
        allowed = cls.choices.get(key)
        text = f"{key}={format_value(default)}"
        if allowed:
            text += f" ({'|'.join(map(format_value, allowed))})"
        params.append(text)
    return ", ".join(params) or "-"


def _evaluations(cls) -> str:
    """Loss evaluations per estimate at the default parameters: 'N per estimate', or 'N x G x V per estimate' where
    the count grows with the logits' shape (IndeCateR)."""
    from gumbench.estimators import Estimator

    est = cls()
    count = est.loss_evaluations
    shaped = type(est).evaluations_per_estimate is not Estimator.evaluations_per_estimate
    return f"{count}{' x G x V' if shaped else ''} loss evaluation{'s' * (count != 1 or shaped)} per estimate"


def describe(kind: str) -> list[tuple[str, str, str, str]]:
    """(name, family or formula, parameters with defaults, description) per registered plugin."""
    if kind == "estimators":
        from gumbench.estimators import registry

        return [(name, f"{cls.family}; {_evaluations(cls)}", _parameters(cls), cls.description)
                for name, cls in registry.classes().items()]
    if kind == "tasks":
        from gumbench.benchmarks.problems import registry

        return [(name, cls.formula, _parameters(cls), cls.description) for name, cls in registry.classes().items()]
    if kind == "training":
        from gumbench.benchmarks.training import registry

        return [
            (name, str(cls.default_steps), _parameters(cls), cls.description)
            for name, cls in registry.classes().items()
        ]
    raise GumbenchError(f"cannot describe {kind!r}; allowed: estimators, tasks, training")
