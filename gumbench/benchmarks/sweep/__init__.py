"""Sweeps: a config's grid of (task, estimator, seed) units, run on a backend into the store, reported.

config    the config format, the default sweep, the grid of units and their seeds
runner    :func:`run_sweep` and :func:`run_unit`
backends  :func:`execute`: local processes, Dask or SLURM behind one function
store     atomic writes, run metadata, the parquet results of runs
report    HTML and Markdown reports from stored results
figures   the report's figures, drawn with seaborn into PNG bytes
"""

from gumbench.benchmarks.sweep.config import (
           DEFAULT_CONFIG,
           Unit,
           apply_overrides,
           derive_seed,
           expand_units,
           load_config,
)
from gumbench.benchmarks.sweep.runner import SweepRun, run_sweep, run_unit
from gumbench.benchmarks.sweep.store import load_results

__all__ = ["DEFAULT_CONFIG", "SweepRun", "Unit", "apply_overrides", "derive_seed", "expand_units", "load_config",
           "load_results", "run_sweep", "run_unit"]
