"""GPU profile of the fused Gumbel-softmax against PyTorch: ``gumbench profile-kernel``.

Providers (all with hard=True unless a sweep says otherwise):

    eager            F.gumbel_softmax(x, tau, hard)
    compile          torch.compile(F.gumbel_softmax)
    fused_saved      gumbel_softmax(x, tau, hard, save_y=True)   backward reads a saved y
    fused_recompute  gumbel_softmax(x, tau, hard)                backward regenerates y
    fairseq          F.gumbel_softmax(x.float(), tau, hard=True).type_as(x)   (wav2vec 2.0)
    rao_reference    gumbel_rao(x, tau, M, backend="reference")   materialises M draws
    rao_fused        gumbel_rao(x, tau, M, backend="triton")      M draws in registers

The ``gumbel_rao`` sweep varies M at a fixed size; its target is that the fused peak
memory does not grow with M (the reference's grows linearly).

Modes: forward, backward (given a forward's graph), full (forward + backward). Each
(sweep, size, provider, mode) is timed with ``triton.testing.do_bench`` (median, 20% and
80% quantiles); peak memory is measured around one call. Achieved bandwidth uses the
same useful-byte count for every provider (read x + write y forward; read dy, read x or
y, write dx backward), so GB/s compares providers and, divided by a device-to-device
copy measured in the same run, shows the distance to the floor. The fused paths run
with check=False: the baselines do not validate their input either (validation adds one
host sync, no memory traffic).

Nothing here touches a GPU at import; ``profile_kernel`` raises GumbenchError without one.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from gumbench.errors import GumbenchError
from gumbench.files import write_csv, write_figure, write_json, write_text

PROVIDERS = ("eager", "compile", "fused_saved", "fused_recompute", "fairseq", "rao_reference", "rao_fused")
MODES = ("forward", "backward", "full")
KERNEL = "gumbel_softmax"
HEADLINE_ELEMENTS = 1 << 26  # 256 MB per fp32 tensor

# Useful passes over the tensor per mode: forward reads x, writes y; backward reads dy and
# x (or y) and writes dx. The floor of a full step is 4 (see the byte table in the docs).
PASSES = {"forward": 2, "backward": 3, "full": 5}


@dataclass(frozen=True)
class Case:
    """One problem size of a sweep: ``rows`` rows of ``n_cols`` logits in ``dtype``."""

    sweep: str
    rows: int
    n_cols: int
    dtype: str = "float32"
    hard: bool = True
    x_name: str = "rows"
    samples: int = 0  # M, the Gumbel-Rao conditional draws (gumbel_rao sweep only)

    @property
    def x(self) -> int:
        return {"rows": self.rows, "K": self.n_cols, "M": self.samples}[self.x_name]

    @property
    def elements(self) -> int:
        return self.rows * self.n_cols


def sweep_cases(quick: bool = False) -> list[Case]:
    """The sweeps: rows at K = 320 (G = 2, V = 320: rows = batch * frames * G), K at a fixed
    256 MB (equal bytes), the soft output, and the wav2vec 2.0 fp16 call pattern."""
    if quick:
        return [
            Case("rows_k320", 1 << 12, 320),
            Case("equal_bytes", (1 << 20) // 1024, 1024, x_name="K"),
            Case("wav2vec_fp16", 1 << 12, 320, dtype="float16"),
            Case("gumbel_rao", 1 << 10, 320, x_name="M", samples=4),
        ]
    cases = [Case("rows_k320", 1 << p, 320) for p in range(10, 19)]  # up to 2**18 rows: 335 MB
    cases += [
        Case("equal_bytes", HEADLINE_ELEMENTS // k, k, x_name="K")
        for k in (2, 8, 32, 128, 320, 1024, 4096, 16384, 65536)
    ]
    cases += [Case("soft_k320", 1 << p, 320, hard=False) for p in (14, 16, 18)]
    cases += [Case("wav2vec_fp16", 1 << p, 320, dtype="float16") for p in range(12, 20)]
    cases += [Case("gumbel_rao", 1 << 15, 320, x_name="M", samples=m) for m in (1, 4, 16, 64)]
    return cases


def providers_for(case: Case) -> tuple[str, ...]:
    if case.sweep.startswith("wav2vec"):
        return ("fairseq", "fused_recompute", "fused_saved")
    if case.sweep == "gumbel_rao":
        return ("rao_reference", "rao_fused")
    return ("eager", "compile", "fused_saved", "fused_recompute")


def _require_gpu():
    try:
        import torch
    except ImportError:  # pragma: no cover
        raise GumbenchError("profile-kernel needs torch") from None
    if not torch.cuda.is_available():
        raise GumbenchError(
            "no CUDA GPU found: profile-kernel needs one (the CPU-side audit is `gumbench audit-kernel`)"
        )
    try:
        import triton  # noqa: F401
    except ImportError:
        raise GumbenchError("profile-kernel needs the triton package: pip install 'gumbench[kernel]'") from None
    return torch


def _operator(provider: str, case: Case, tau: float):
    """A function logits -> y for the provider."""
    import torch
    import torch.nn.functional as F

    from gumbench.kernels import gumbel_rao, gumbel_softmax

    if provider.startswith("rao_"):
        backend = "triton" if provider == "rao_fused" else "reference"
        return lambda x: gumbel_rao(x, tau, case.samples, backend=backend, check=False)[0]
    if provider == "eager":
        return lambda x: F.gumbel_softmax(x, tau=tau, hard=case.hard)
    if provider == "compile":
        compiled = torch.compile(F.gumbel_softmax, dynamic=False)
        return lambda x: compiled(x, tau=tau, hard=case.hard)
    if provider == "fairseq":
        return lambda x: F.gumbel_softmax(x.float(), tau=tau, hard=True).type_as(x)
    save_y = provider == "fused_saved"
    return lambda x: gumbel_softmax(x, tau, case.hard, save_y=save_y, check=False, backend="triton")


def _bench(fn, grad_to_none, rep_ms: int):
    from triton.testing import do_bench

    median, q20, q80 = do_bench(fn, warmup=25, rep=rep_ms, grad_to_none=grad_to_none, quantiles=[0.5, 0.2, 0.8])
    return median, q20, q80


def _peak_bytes(torch, fn) -> int:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def measure(torch, provider: str, case: Case, mode: str, tau: float, rep_ms: int) -> dict:
    """Median/20%/80% milliseconds and peak memory of one (provider, case, mode)."""
    dtype = getattr(torch, case.dtype)
    op = _operator(provider, case, tau)
    x = torch.randn(case.rows, case.n_cols, device="cuda", dtype=dtype, requires_grad=True)
    dy = torch.randn_like(x)
    if mode == "forward":
        fn = lambda: op(x)  # noqa: E731  graph recorded, as in training
    elif mode == "full":
        fn = lambda: op(x).backward(dy)  # noqa: E731
    else:
        y = op(x)
        fn = lambda: y.backward(dy, retain_graph=True)  # noqa: E731
    fn()  # compile / autotune / first-launch costs stay out of the timing
    median, q20, q80 = _bench(fn, [x], rep_ms)
    x.grad = None
    peak = _peak_bytes(torch, fn)
    return {"ms": (median, q20, q80), "peak_bytes": peak}


def copy_bandwidth(torch, elements: int, rep_ms: int) -> float:
    """Device-to-device copy bandwidth in GB/s (read + write) on an fp32 buffer."""
    src = torch.randn(elements, device="cuda")
    dst = torch.empty_like(src)
    median, _, _ = _bench(lambda: dst.copy_(src), None, rep_ms)
    return 2 * src.numel() * src.element_size() / (median * 1e-3) / 1e9


def check_against_reference(torch, tau: float = 0.5) -> dict:
    """Fused forward/backward vs the reference fed the kernel's uniforms, on the GPU."""
    from gumbench.kernels import (
        gumbel_rao,
        gumbel_rao_reference,
        gumbel_softmax,
        gumbel_softmax_reference,
        gumbel_uniforms,
    )

    errors = {}
    for n_cols in (320, 1000, 20000):
        x = torch.randn(64, n_cols, device="cuda", requires_grad=True)
        dy = torch.randn_like(x)
        u = gumbel_uniforms(x.shape, 7, device="cuda")
        xr = x.detach().clone().requires_grad_(True)
        y_ref, i_ref = gumbel_softmax_reference(xr, tau, False, uniforms=u)
        y_ref.backward(dy)
        y, index = gumbel_softmax(x, tau, False, seed=7, backend="triton", return_index=True)
        y.backward(dy)
        errors[f"K={n_cols}"] = {
            "y_max_abs": float((y - y_ref).abs().max()),
            "grad_max_abs": float((x.grad - xr.grad).abs().max()),
            "index_agreement": float((index == i_ref).float().mean()),
        }
    # Gumbel-Rao: the reference fed the kernel's sample and its M draws (Philox streams 1..M)
    for n_cols in (320, 20000):
        x = torch.randn(64, n_cols, device="cuda", requires_grad=True)
        dy = torch.randn_like(x)
        y, index = gumbel_rao(x, tau, 4, seed=7, backend="triton")
        y.backward(dy)
        exponentials = torch.stack(
            [-torch.log(gumbel_uniforms(x.shape, 7, stream=m + 1, device="cuda")) for m in range(4)]
        )
        xr = x.detach().clone().requires_grad_(True)
        y_ref, _ = gumbel_rao_reference(xr, tau, 4, index=index, exponentials=exponentials)
        y_ref.backward(dy)
        errors[f"gumbel_rao K={n_cols} M=4"] = {
            "y_max_abs": float((y - y_ref).abs().max()),
            "grad_max_abs": float((x.grad - xr.grad).abs().max()),
        }
    return errors


def _nvidia_smi() -> dict:
    query = "name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,temperature.gpu"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        ).stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return {"nvidia_smi": "unavailable"}
    return {"nvidia_smi": dict(zip(query.split(","), (v.strip() for v in out[0].split(","))))} if out else {}


def run_metadata(torch) -> dict:
    """The store's run environment (versions, git commit, time) with the GPU's properties and clocks."""
    from gumbench.benchmarks.sweep.store import environment

    props = torch.cuda.get_device_properties(0)
    return {
        **environment(device=props.name),
        "sm_count": props.multi_processor_count,
        "memory_gb": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "cuda_version": torch.version.cuda,
        **_nvidia_smi(),
    }


def _rows(case: Case, provider: str, mode: str, result: dict, copy_gbps: float, device: str) -> list[dict]:
    element_size = 2 if case.dtype in ("float16", "bfloat16") else 4
    useful = PASSES[mode] * case.elements * element_size
    median, q20, q80 = result["ms"]
    base = {
        "kernel": KERNEL, "provider": provider, "mode": mode, "sweep": case.sweep, "x_name": case.x_name,
        "x": case.x, "rows": case.rows, "K": case.n_cols, "dtype": case.dtype, "hard": case.hard,
        "samples": case.samples, "device": device,
    }  # fmt: skip
    gbps = lambda ms: useful / (ms * 1e-3) / 1e9  # noqa: E731
    return [
        {**base, "metric": "ms", "value": median, "q20": q20, "q80": q80},
        {**base, "metric": "GB/s", "value": gbps(median), "q20": gbps(q80), "q80": gbps(q20)},
        {**base, "metric": "copy_share", "value": gbps(median) / copy_gbps, "q20": gbps(q80) / copy_gbps,
         "q80": gbps(q20) / copy_gbps},
        {**base, "metric": "peak_MB", "value": result["peak_bytes"] / 2**20, "q20": math.nan, "q80": math.nan},
    ]  # fmt: skip


def summarize(df, copy_gbps: float) -> list[dict]:
    """The issue's targets, each with the measured value and a verdict."""
    ms, peak, share = (
        df[df.metric == metric].pivot_table(index=["sweep", "x", "mode"], columns="provider", values="value")
        for metric in ("ms", "peak_MB", "copy_share")
    )
    return [
        *_fused_targets(ms, peak, share),
        *_gumbel_rao_targets(ms, peak),
        _target("device-to-device copy", copy_gbps, True, "GB/s, measured in the same run"),
    ]


def _target(name, value, ok, note="") -> dict:
    """One target row: its name, the measured value (rounded), whether it is met, and a note."""
    return {"target": name, "value": None if value is None else round(float(value), 3), "ok": ok, "note": note}


def _part(table, sweep, mode):
    """Rows of one sweep and mode, indexed by x; None when not measured."""
    if table.empty or (sweep, mode) not in {(s, m) for s, _, m in table.index}:
        return None
    return table.loc[sweep].xs(mode, level="mode")


def _fused_targets(ms, peak, share) -> list[dict]:
    """The fused Gumbel-softmax's targets: speed against eager, torch.compile and fairseq, bandwidth, memory."""
    out = []
    full = _part(ms, "rows_k320", "full")
    if full is not None:
        big = full[full.index >= (1 << 16)]
        if len(big) and {"eager", "fused_saved", "fused_recompute"} <= set(big.columns):
            best = big[["fused_saved", "fused_recompute"]].min(axis=1)
            r = (big["eager"] / best).mean()
            out.append(_target("hard fwd+bwd vs eager (mean, rows >= 2^16)", r, r >= 4.5, ">= 4.5x"))
            if "compile" in big:
                r = (big["compile"] / best).mean()
                out.append(_target("hard fwd+bwd vs torch.compile (mean)", r, r >= 1.2, ">= 1.2x"))
                r = (big["compile"] / best).min()
                out.append(_target("hard fwd+bwd vs torch.compile (worst size)", r, r >= 0.95, ">= 0.95x"))
    forward_share = _part(share, "rows_k320", "forward")
    if forward_share is not None and "fused_recompute" in forward_share:
        v = forward_share[forward_share.index >= (1 << 16)]["fused_recompute"].mean()
        out.append(_target("fp32 forward, share of copy bandwidth (mean, rows >= 2^16)", v, v >= 0.8, ">= 80%"))
    full_peak = _part(peak, "rows_k320", "full")
    if full_peak is not None and {"eager", "fused_recompute"} <= set(full_peak.columns):
        v = (full_peak["fused_recompute"] / full_peak["eager"]).max()
        out.append(_target("peak memory fwd+bwd, fused / eager (worst size)", v, v <= 0.5, "<= 0.5"))
    full = _part(ms, "wav2vec_fp16", "full")
    if full is not None and {"fairseq", "fused_recompute"} <= set(full.columns):
        big = full[full.index >= (1 << 16)]
        if len(big):
            r = (big["fairseq"] / big["fused_recompute"]).min()
            out.append(_target("wav2vec 2.0 call pattern vs fairseq (worst, rows >= 2^16)", r, r >= 6, ">= 6x"))
    return out


def _gumbel_rao_targets(ms, peak) -> list[dict]:
    """Gumbel-Rao's targets: fused peak memory flat in M; the reference's memory and time against the fused."""
    out = []
    rao_peak = _part(peak, "gumbel_rao", "full")
    if rao_peak is not None and "rao_fused" in rao_peak and len(rao_peak) > 1:
        fused = rao_peak["rao_fused"].sort_index()
        v = fused.iloc[-1] / fused.iloc[0]
        out.append(_target(f"Gumbel-Rao fused peak memory, M={fused.index[-1]} / M={fused.index[0]}", v, v <= 1.05,
                           "<= 1.05 (flat in M)"))
        if "rao_reference" in rao_peak:
            v = rao_peak["rao_reference"].iloc[-1] / fused.iloc[-1]
            out.append(_target(f"Gumbel-Rao peak memory at M={fused.index[-1]}, reference / fused", v, True,
                               "informative"))
    rao_ms = _part(ms, "gumbel_rao", "full")
    if rao_ms is not None and {"rao_reference", "rao_fused"} <= set(rao_ms.columns):
        for m, row in rao_ms.iterrows():
            out.append(_target(f"Gumbel-Rao fwd+bwd at M={m}, reference / fused time",
                               row["rao_reference"] / row["rao_fused"], True, "informative"))
    return out


def plot(df, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    paths = []
    for sweep, part in df.groupby("sweep"):
        for metric, name in (("ms", "time"), ("GB/s", "bandwidth")):
            data = part[part.metric == metric]
            grid = sns.relplot(data=data, x="x", y="value", hue="provider", col="mode", kind="line", marker="o",
                               height=3.2, aspect=1.1, facet_kws={"sharey": False})  # fmt: skip
            grid.set(xscale="log", yscale="log" if metric == "ms" else "linear")
            grid.set_axis_labels(data["x_name"].iloc[0], metric)
            grid.figure.suptitle(f"{KERNEL}: {sweep}", y=1.04)
            paths.append(write_figure(grid, out / f"profile_{sweep}_{name}.png", dpi=120))
    return paths


def write_summary(out: Path, targets: list[dict], meta: dict, df) -> Path:
    lines = [
        "# Kernel profile",
        "",
        f"Device: {meta['device']} (torch {meta['torch_version']}, triton {meta['triton_version']}, "
        f"CUDA {meta['cuda_version']})",
        "",
    ]
    lines += ["| target | value | ok | note |", "|---|---:|---|---|"]
    for t in targets:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['ok'] else 'NO'} | {t['note']} |")
    table = df[(df.metric == "ms") & (df.sweep == "rows_k320")].pivot_table(
        index=["x", "mode"], columns="provider", values="value"
    )
    if len(table):
        lines += ["", "Milliseconds (median), hard=True, K = 320, fp32:", "", table.round(4).to_markdown()]
    return write_text(out / "profile_summary.md", "\n".join(lines) + "\n")


def profile_kernel(
    out_dir: str | Path = "results/kernel",
    quick: bool = False,
    *,
    providers: tuple[str, ...] | None = None,
    modes: tuple[str, ...] = MODES,
    tau: float = 1.0,
    rep_ms: int = 100,
) -> dict:
    """Run the profile on the current CUDA device; write CSV, figures and a summary.

    Returns {"csv": path, "figures": [...], "summary": path, "targets": [...]}. Raises
    GumbenchError when no CUDA GPU (or Triton) is available.
    """
    torch = _require_gpu()
    import pandas as pd
    from torch import _dynamo

    for name in providers or ():
        if name not in PROVIDERS:
            raise GumbenchError(f"unknown provider {name!r}; allowed: {', '.join(PROVIDERS)}")
    for name in modes:
        if name not in MODES:
            raise GumbenchError(f"unknown mode {name!r}; allowed: {', '.join(MODES)}")
    _dynamo.config.cache_size_limit = max(_dynamo.config.cache_size_limit, 256)
    out = Path(out_dir)
    meta = run_metadata(torch)
    meta["correctness"] = check_against_reference(torch)
    cases = sweep_cases(quick)
    copy_gbps = copy_bandwidth(torch, max(c.elements for c in cases), rep_ms)
    meta["copy_GBps"] = copy_gbps
    meta["errors"] = []
    rows = []
    for case in cases:
        for provider in providers_for(case):
            if providers and provider not in providers:
                continue
            for mode in modes:
                try:
                    result = measure(torch, provider, case, mode, tau, rep_ms)
                except RuntimeError as error:  # out of memory, a compile failure: record it, keep going
                    meta["errors"].append(f"{case.sweep} x={case.x} {provider} {mode}: {type(error).__name__}: {error}")
                    result = {"ms": (math.nan,) * 3, "peak_bytes": math.nan}
                rows += _rows(case, provider, mode, result, copy_gbps, meta["device"])
                torch.cuda.empty_cache()
    df = pd.DataFrame(rows)
    csv_path = write_csv(df, out / "profile.csv")
    targets = summarize(df, copy_gbps)
    write_json(out / "profile_meta.json", {**meta, "cases": [asdict(c) for c in cases]})
    return {
        "csv": csv_path,
        "figures": plot(df, out),
        "summary": write_summary(out, targets, meta, df),
        "targets": targets,
    }
