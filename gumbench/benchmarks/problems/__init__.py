"""Problems with a gradient to measure, behind one interface (:class:`GradientProblem`, see
:mod:`gumbench.benchmarks.problems.base`).

The named ones (``gumbench list tasks``, ``gradstats -t``, sweep ``[gradstats]`` sections) are registered here,
explicitly: the toys (:mod:`~gumbench.benchmarks.problems.toys`) and the quantizer problems
(:mod:`~gumbench.benchmarks.problems.quantizers`); third-party packages add theirs through the entry-point
group ``gumbench.problems``. Built from a model rather than a name: :class:`LogitsProblem` (any logits and
loss; the speech tasks' quantizer probe) and :class:`~gumbench.benchmarks.problems.elbo.ElboImageProblem`.
"""

from gumbench.benchmarks.problems.base import GradientProblem, LogitsGradient, LogitsProblem, Reference
from gumbench.benchmarks.problems.enumeration import MAX_ENUMERATION, exact_expectation, exact_gradient
from gumbench.benchmarks.problems.quantizers import QUANTIZER_PROBLEMS, QuantizerProblem
from gumbench.benchmarks.problems.toys import TOYS, ToyTask
from gumbench.registry import Registry

registry = Registry("task", group="gumbench.problems")
for _cls in (*TOYS, *QUANTIZER_PROBLEMS):
    registry.register(_cls)

DEFAULT_TASK = "categorical"


def make_problem(spec: "str | GradientProblem") -> GradientProblem:
    """A registered problem (a toy with logits, or a quantizer problem) from its name, e.g.
    ``categorical[groups=2]`` or ``vq-distance[T=0.1]``; a problem is returned as is."""
    if isinstance(spec, GradientProblem):
        return spec
    return registry.create(spec)


def instance_spec(spec: str, index: int) -> str:
    """The spec of problem instance ``index`` of the question ``spec``: its seed moved on by ``index`` (instance 0
    is the spec itself), so each instance draws its own logits, model and targets. A problem without a seed (a
    fixed problem such as ``bernoulli``) has one instance: every index gives the spec itself."""
    from gumbench.registry import format_spec, parse_spec

    parsed = parse_spec(spec)
    cls = registry.get(parsed.name)
    if "seed" not in cls.defaults:
        return spec
    params = {**parsed.params, "seed": int(parsed.params.get("seed", cls.defaults["seed"])) + int(index)}
    return format_spec(parsed.name, params)


def has_instances(spec: str) -> bool:
    """Whether ``spec`` names a problem with random instances (a ``seed`` parameter)."""
    from gumbench.registry import parse_spec

    return "seed" in registry.get(parse_spec(spec).name).defaults


__all__ = [
    "DEFAULT_TASK",
    "MAX_ENUMERATION",
    "GradientProblem",
    "LogitsGradient",
    "LogitsProblem",
    "QuantizerProblem",
    "Reference",
    "ToyTask",
    "exact_expectation",
    "exact_gradient",
    "has_instances",
    "instance_spec",
    "make_problem",
    "registry",
]
