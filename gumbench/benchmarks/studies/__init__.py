"""Studies: gradients measured inside trained models, each a library function and one CLI command.

elbo               :func:`elbo_gradient_study` in the digits or Fashion-MNIST VAE, exact by enumeration
                   (``gumbench elbo-study``)
speech_quantizers  :func:`quantizer_gradient_study` in the speech quantizers (``gumbench speech-study``)
explain            :func:`explain.explain`: one wav2vec 2.0 step, term by term (``gumbench explain``)

The package re-exports the study functions, except ``explain``: bound here it would hide the module
of that name (``import gumbench.benchmarks.studies.explain`` would give the function).
"""

from __future__ import annotations

from pathlib import Path

from gumbench.benchmarks.studies.elbo import elbo_gradient_study, elbo_study, format_elbo_study
from gumbench.benchmarks.studies.explain import format_explanation
from gumbench.benchmarks.studies.speech_quantizers import (
    format_study,
    measure,
    quantizer_gradient_study,
    reference_gradient,
)

__all__ = ["elbo_gradient_study", "elbo_study", "format_elbo_study", "format_explanation", "format_study", "measure",
           "quantizer_gradient_study", "reference_gradient", "save_study"]


def save_study(prefix: str | Path, frame, text: str, settings: dict | None = None) -> list[Path]:
    """PREFIX.csv (the rows), PREFIX.txt (the text) and, with ``settings``, PREFIX.json; written atomically."""
    from gumbench.files import write_csv, write_json, write_text

    prefix = Path(prefix)
    paths = [write_csv(frame, prefix.with_suffix(".csv")), write_text(prefix.with_suffix(".txt"), text + "\n")]
    if settings is not None:
        paths.append(write_json(prefix.with_suffix(".json"), settings))
    return paths
