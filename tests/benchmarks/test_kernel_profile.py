"""The GPU profiler (gumbench.benchmarks.kernel_profile) on its CPU paths: no GPU, made-up timings."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gumbench.errors import GumbenchError

ROOT = Path(__file__).resolve().parents[2]


def run_clean(*args, timeout=300):
    """A fresh interpreter without TRITON_INTERPRET: kernels compile instead of interpret."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_profile_without_gpu_is_one_clear_error():
    from gumbench.benchmarks.kernel_profile import profile_kernel

    with pytest.raises(GumbenchError, match="no CUDA GPU found: profile-kernel needs one"):
        profile_kernel(out_dir="/nonexistent/never-written")
    result = run_clean("-m", "gumbench.cli", "profile-kernel", "--quick", timeout=120)
    assert result.returncode != 0
    assert (
        result.stderr.strip().startswith("gumbench: error: no CUDA GPU found")
        and len(result.stderr.strip().splitlines()) == 1
    )
    assert "Traceback" not in result.stderr


def test_profile_reports_from_synthetic_measurements(tmp_path):
    """summarize / plot / write_summary on made-up timings: the CSV shape and the targets."""
    import pandas as pd

    from gumbench.benchmarks import kernel_profile as profile

    rows = []
    speeds = {"eager": 6.0, "compile": 1.5, "fused_saved": 1.1, "fused_recompute": 1.0, "fairseq": 8.0}
    for case in [c for c in profile.sweep_cases(quick=False) if c.sweep in ("rows_k320", "wav2vec_fp16", "gumbel_rao")]:
        for provider in profile.providers_for(case):
            # made-up Gumbel-Rao costs: the reference's memory grows with M, the fused one's does not
            speed = speeds.get(provider, 1 + case.samples / 4 if provider == "rao_reference" else 1.0)
            for mode in profile.MODES:
                ms = speed * case.elements * 1e-9 * profile.PASSES[mode]
                result = {"ms": (ms, 0.95 * ms, 1.05 * ms), "peak_bytes": speed * case.elements * 4}
                rows += profile._rows(case, provider, mode, result, copy_gbps=3000.0, device="fake")
    df = pd.DataFrame(rows)
    assert set(df.columns) >= {"kernel", "provider", "mode", "metric", "x", "value", "q20", "q80", "device"}
    targets = {t["target"]: t for t in profile.summarize(df, 3000.0)}
    assert math.isclose(targets["hard fwd+bwd vs eager (mean, rows >= 2^16)"]["value"], 6.0)
    assert targets["wav2vec 2.0 call pattern vs fairseq (worst, rows >= 2^16)"]["ok"]
    assert targets["Gumbel-Rao fused peak memory, M=64 / M=1"]["value"] == 1.0
    assert math.isclose(targets["Gumbel-Rao peak memory at M=64, reference / fused"]["value"], 17.0)
    meta = {"device": "fake", "torch_version": "x", "triton_version": "y", "cuda_version": "z"}  # keys of run_metadata
    summary = profile.write_summary(tmp_path, list(targets.values()), meta, df)
    assert "| hard fwd+bwd vs eager" in summary.read_text()
    figures = profile.plot(df[df.sweep == "rows_k320"], tmp_path)
    assert figures and all(p.stat().st_size > 0 for p in figures)
