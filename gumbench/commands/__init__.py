"""The ``gumbench`` commands by area, each a thin typer shell over library functions; :mod:`gumbench.cli`
registers them on the app, next to its own (list, sweep, report) and the entry point.

options   the options several areas share (output files and folders, --threads)
toys      gradstats and optimize: estimators on toys with exact gradients
training  train: a model with a discrete bottleneck
studies   explain, elbo-study and speech-study: gradients inside trained models
kernel    profile-kernel and audit-kernel: the fused Triton kernel on a GPU and compiled on the CPU

Heavy modules (torch, scipy, pandas) are imported inside the commands so that ``gumbench --help``
answers fast.
"""
