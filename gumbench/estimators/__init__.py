"""Gradient estimators behind one interface; see :mod:`gumbench.estimators.base`.

The built-ins register when this package imports their modules; third-party packages add
theirs through the entry-point group ``gumbench.estimators`` (the entry point's name is the
estimator's name).
"""

from gumbench.estimators import (  # noqa: F401  (each module registers its estimators)
    decoupled,
    disarm,
    diveq,
    fogzo,
    fsp,
    fsq,
    gapped,
    gumbel,
    gumbel_rao,
    ibq,
    indecater,
    lookup_free,
    nsvq,
    reinmax,
    reinmax_variants,
    relax,
    residual,
    score_function,
    simvq,
    straight_through,
    vq,
    vqbridge,
    without_replacement,
    zgr,
)
from gumbench.estimators.base import (
    FAMILIES,
    CategoricalEstimator,
    Estimator,
    EstimatorOutput,
    VQEstimator,
    make_estimator,
    register,
    registry,
)


def categorical_variants() -> list[str]:
    """Every registered categorical estimator, once per showcased variant (``variants``: e.g. each REINFORCE
    baseline): the default set of gradient statistics on toys and on the quantizer problems' distance logits."""
    from gumbench.registry import format_spec

    return [format_spec(name, variant) for name, cls in registry.classes().items() if not issubclass(cls, VQEstimator)
            for variant in cls.variants]


__all__ = [
    "FAMILIES",
    "CategoricalEstimator",
    "Estimator",
    "EstimatorOutput",
    "VQEstimator",
    "categorical_variants",
    "make_estimator",
    "register",
    "registry",
]
