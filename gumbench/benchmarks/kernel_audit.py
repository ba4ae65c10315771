"""CPU-side compile audit of the fused kernels (``gumbench.kernels.fused``): no GPU needed.

Two jobs, both run by ``gumbench audit-kernel`` (``run_audit``):

* ``--check``: compile every kernel variant (each constexpr branch, each dtype) for
  sm_80 and sm_90 with ``triton.compile(..., target=GPUTarget("cuda", cc, 32))``, all the
  way through ptxas. This catches what Triton's interpreter forgives: typing, layouts,
  inline PTX, register allocation.
* ``--out DIR``: for sm_90, disassemble the cubins (the nvdisasm bundled with Triton),
  count SASS instructions per element and compare them with a budget that keeps the
  kernel memory-bound on an H100; also write the byte-count table
  (:mod:`gumbench.benchmarks.kernel_traffic`).

Counting. A single-block kernel is straight-line code run once per program, so
instructions per element = static SASS count / elements per thread. A looped kernel is
counted from its loop bodies (found by their backward branches) / elements per thread
per iteration; the prologue is amortised away at K = 65,536. Padding lanes count as
work: per useful element is per lane * lanes / K.

Budget. An H100 SXM issues 132 SMs * 4 schedulers * 32 lanes = 16,896 thread-instructions
per clock, 33.4e12 per second at its 1.98 GHz boost; its HBM3 moves 3.35e12 bytes/s, and
the target is 80% of it. Allowing 25% of issue slots for stalls, a kernel stays memory-
bound while  instructions / byte <= 0.75 * 33.4e12 / (0.8 * 3.35e12) = 9.36.  The
budget of a variant is that times the bytes it moves per element (8 for an fp32
forward, 12 for an fp32 backward). MUFU (exp2, lg2, rcp) runs on a 16-lane/clock unit,
so each MUFU counts 8 issue slots in a second, separate check.

Run it without TRITON_INTERPRET=1: the kernels must be defined as compilable functions.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from gumbench.benchmarks.kernel_traffic import byte_table
from gumbench.errors import GumbenchError
from gumbench.files import write_csv, write_text
from gumbench.kernels.launch import launch_config

# H100 SXM figures the budget is derived from (see the module docstring).
H100_SMS = 132
H100_BOOST_HZ = 1.98e9
H100_HBM_BYTES_PER_S = 3.35e12
TARGET_BANDWIDTH_SHARE = 0.8
ISSUE_EFFICIENCY = 0.75
INSTRUCTIONS_PER_BYTE = (
    ISSUE_EFFICIENCY * H100_SMS * 128 * H100_BOOST_HZ / (TARGET_BANDWIDTH_SHARE * H100_HBM_BYTES_PER_S)
)
MUFU_ISSUE_COST = 128 // 16

MIN_ARCH = 70  # the oldest compute capability the audit compiles for (Volta)
MAX_ARCH = 100  # Blackwell (sm_100); past the architectures the bundled LLVM knows, it aborts the process

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
FWD_MODES = ("soft", "hard", "hard_saved", "index")
BWD_MODES = ("recompute", "saved")


@dataclass(frozen=True)
class Variant:
    """One compiled specialisation: kernel, output mode, dtype and the K it is tiled for."""

    kernel: str  # fwd | fwd_looped | bwd | bwd_looped | rao | rao_looped | uniforms
    mode: str  # forward: soft | hard | hard_saved | index; backward: recompute | saved; rao: "draw"; uniforms: "-"
    dtype: str = "fp32"
    n_cols: int = 320
    check: bool = True
    unit_stride: bool = True
    n_rows: int = 1 << 20  # the launch config (rows per program, warps) depends on it

    @property
    def name(self) -> str:
        extra = ("" if self.check else ",nocheck") + ("" if self.unit_stride else ",strided")
        return f"{self.kernel}[{self.mode},{self.dtype},K={self.n_cols},rows={self.n_rows}{extra}]"

    def bytes_per_element(self) -> float:
        """HBM bytes this variant moves per logit (the index adds 8 bytes per row)."""
        s = DTYPE_BYTES[self.dtype]
        if self.kernel.startswith("fwd"):
            return {"soft": 2 * s, "hard": 2 * s, "hard_saved": 3 * s, "index": s + 8 / self.n_cols}[self.mode]
        if self.kernel.startswith("bwd"):
            return 3 * s
        if self.kernel.startswith("rao"):  # read dy and x, write dx; the index adds 8 bytes per row
            return 3 * s + 8 / self.n_cols
        return 4.0


def compile_variants() -> list[Variant]:
    """Every kernel in every output mode (fp32), every kernel in each half dtype with the
    loads and stores that differ, the unchecked and strided specialisations and the debug
    kernel. Single-block ones are specialised for a 4-row input (K = 320: tiles 256 + 64,
    4 rows per program, 2 warps), which compiles in about a second each."""
    single = dict(n_cols=320, n_rows=4)
    looped = dict(n_cols=65536)
    out = [Variant("fwd", mode, "fp32", **single) for mode in FWD_MODES]
    out += [Variant("bwd", mode, "fp32", **single) for mode in BWD_MODES]
    out += [Variant("fwd_looped", mode, "fp32", **looped) for mode in FWD_MODES]
    out += [Variant("bwd_looped", mode, "fp32", **looped) for mode in BWD_MODES]
    for dtype, (fwd_a, fwd_b, bwd, fwd_loop, bwd_loop) in {
        "fp16": ("soft", "hard_saved", "saved", "hard_saved", "recompute"),
        "bf16": ("hard", "index", "recompute", "soft", "saved"),
    }.items():
        out += [Variant("fwd", fwd_a, dtype, **single), Variant("fwd", fwd_b, dtype, **single)]
        out += [Variant("bwd", bwd, dtype, **single), Variant("fwd_looped", fwd_loop, dtype, **looped)]
        out += [Variant("bwd_looped", bwd_loop, dtype, **looped)]
    out += [
        Variant("fwd", "soft", "fp32", check=False, unit_stride=False, **single),
        Variant("fwd_looped", "hard", "fp32", check=False, unit_stride=False, **looped),
        Variant("bwd", "recompute", "fp16", unit_stride=False, **single),
        Variant("uniforms", "-", "fp32", **single),
    ]
    out += [Variant("rao", "draw", dtype, **single) for dtype in ("fp32", "bf16")]
    out += [Variant("rao_looped", "draw", dtype, **looped) for dtype in ("fp32", "fp16")]
    out += [Variant("rao", "draw", "fp16", unit_stride=False, **single)]
    return out


def audit_variants() -> list[Variant]:
    """What the instruction table shows: the headline K = 320 (G = 2, V = 320), a wide
    single block (K = 8192) and the looped path (K = 65,536), fp32 and bf16."""
    out = []
    for dtype in ("fp32", "bf16"):
        for n_cols, fwd, bwd in ((320, "fwd", "bwd"), (8192, "fwd", "bwd"), (65536, "fwd_looped", "bwd_looped")):
            out += [Variant(fwd, mode, dtype, n_cols) for mode in FWD_MODES]
            out += [Variant(bwd, mode, dtype, n_cols) for mode in BWD_MODES]
        out += [Variant("rao", "draw", dtype, n_cols) for n_cols in (320, 8192)]
    return out


def _kernels():
    """The op modules holding the kernels, loaded compiled (not interpreted)."""
    if importlib.util.find_spec("triton") is None:
        raise GumbenchError("the compile audit needs the triton package: pip install 'gumbench[kernel]'")
    from gumbench.kernels import fused
    from gumbench.kernels.fused import gumbel_rao_op, gumbel_softmax_op

    if fused.interpreting():
        raise GumbenchError("run the compile audit without TRITON_INTERPRET=1: interpreted kernels cannot be compiled")
    return gumbel_softmax_op, gumbel_rao_op


# Per kernel kind: (jit function, {argument: type}, constexprs, arguments Triton marks
# divisible by 16). A type {"constexpr": 1} is an int Triton specialises to a constant.


def _uniforms_spec(v: Variant, ptr: str, stride, aligned: bool):
    softmax_op, _ = _kernels()
    args = {"u_ptr": "*fp32", "n_rows": "i32", "n_cols": "i32", "seed_lo": "i32", "seed_hi": "i32", "stream": "i32"}
    return softmax_op.gumbel_uniforms_kernel, args, {}, ["u_ptr"] + (["n_cols"] if aligned else [])


def _forward_spec(v: Variant, ptr: str, stride, aligned: bool):
    softmax_op, _ = _kernels()
    looped = v.kernel == "fwd_looped"
    fn = softmax_op.gumbel_softmax_fwd_looped_kernel if looped else softmax_op.gumbel_softmax_fwd_kernel
    index = v.mode == "index"
    args = {
        "x_ptr": ptr, "y_ptr": ptr, "y_soft_ptr": ptr, "index_ptr": "*i64" if index else ptr,
        "status_ptr": "*i32" if v.check else ptr, "n_rows": "i32", "n_cols": "i32",
        "stride_x_row": "i32", "stride_x_col": stride, "scale": "fp32", "seed_lo": "i32", "seed_hi": "i32",
    }  # fmt: skip
    consts = dict(
        HARD=v.mode != "soft", WRITE_Y=not index, WRITE_SOFT=v.mode == "hard_saved",
        WRITE_INDEX=index, CHECK=v.check, FAST_MATH=True,
    )  # fmt: skip
    divisible = ["x_ptr", "y_ptr", "y_soft_ptr", "index_ptr", "status_ptr"]
    return fn, args, consts, divisible + (["n_cols", "stride_x_row"] if aligned else [])


def _backward_spec(v: Variant, ptr: str, stride, aligned: bool):
    softmax_op, _ = _kernels()
    looped = v.kernel == "bwd_looped"
    fn = softmax_op.gumbel_softmax_bwd_looped_kernel if looped else softmax_op.gumbel_softmax_bwd_kernel
    args = {
        "dy_ptr": ptr, "x_ptr": ptr, "y_ptr": ptr, "dx_ptr": ptr, "n_rows": "i32", "n_cols": "i32",
        "stride_dy_row": "i32", "stride_dy_col": stride, "stride_x_row": "i32", "stride_x_col": stride,
        "scale": "fp32", "inv_tau": "fp32", "seed_lo": "i32", "seed_hi": "i32",
    }  # fmt: skip
    consts = dict(RECOMPUTE=v.mode == "recompute", FAST_MATH=True)
    divisible = ["dy_ptr", "x_ptr", "y_ptr", "dx_ptr"]
    return fn, args, consts, divisible + (["n_cols", "stride_dy_row", "stride_x_row"] if aligned else [])


def _rao_spec(v: Variant, ptr: str, stride, aligned: bool):
    _, rao_op = _kernels()
    looped = v.kernel == "rao_looped"
    fn = rao_op.gumbel_rao_bwd_looped_kernel if looped else rao_op.gumbel_rao_bwd_kernel
    args = {
        "dy_ptr": ptr, "x_ptr": ptr, "index_ptr": "*i64", "dx_ptr": ptr, "n_rows": "i32", "n_cols": "i32",
        "stride_dy_row": "i32", "stride_dy_col": stride, "stride_x_row": "i32", "stride_x_col": stride,
        "inv_tau": "fp32", "grad_scale": "fp32", "n_samples": "i32", "seed_lo": "i32", "seed_hi": "i32",
    }  # fmt: skip
    consts = dict(FAST_MATH=True, **({"SAMPLES": 16} if looped else {}))
    divisible = ["dy_ptr", "x_ptr", "index_ptr", "dx_ptr"]
    return fn, args, consts, divisible + (["n_cols", "stride_dy_row", "stride_x_row"] if aligned else [])


_SPECS = {
    "uniforms": _uniforms_spec,
    "fwd": _forward_spec, "fwd_looped": _forward_spec,
    "bwd": _backward_spec, "bwd_looped": _backward_spec,
    "rao": _rao_spec, "rao_looped": _rao_spec,
}  # fmt: skip


def kernel_spec(v: Variant):
    """(jit function, signature, constexprs, attrs, num_warps, launch config) as a launch
    on a large contiguous (rows, K) tensor would specialise them."""
    cfg = launch_config(v.n_rows, v.n_cols)
    aligned = v.n_cols % 16 == 0  # Triton marks ints divisible by 16 (the row stride, K)
    stride = {"constexpr": 1} if v.unit_stride else "i32"
    fn, args, consts, divisible = _SPECS[v.kernel](v, "*" + v.dtype, stride, aligned)
    num_warps = cfg.num_warps
    if v.kernel == "uniforms":
        consts.update(BLOCK_K=256, ROWS=4)
        num_warps = 4
    elif v.kernel.endswith("looped"):
        consts.update(BLOCK_K=cfg.block_a)
    else:
        consts.update(BLOCK_A=cfg.block_a, BLOCK_B=cfg.block_b, ROWS=cfg.rows_per_program)
    signature, constexprs = {}, {}
    for name, kind in args.items():
        if isinstance(kind, dict):  # an int Triton specialises to a constant (stride 1)
            signature[name], constexprs[name] = "constexpr", kind["constexpr"]
        else:
            signature[name] = kind
    for name, value in consts.items():
        signature[name], constexprs[name] = "constexpr", value
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name in divisible if name in signature}
    return fn, signature, constexprs, attrs, num_warps, cfg


def compile_variant(v: Variant, cc: int = 90):
    import triton
    from triton.backends.compiler import GPUTarget

    fn, signature, constexprs, attrs, num_warps, _ = kernel_spec(v)
    source = triton.compiler.ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(
        source, target=GPUTarget("cuda", cc, 32), options={"num_warps": num_warps, "enable_fp_fusion": True}
    )


def _nvidia_tool(name: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


_SASS_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")
_LABEL_LINE = re.compile(r"^\s*(\.L_x_\d+):")


def disassemble(cubin: bytes) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """SASS as (opcode, operands) in order, and each label's instruction index."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "kernel.cubin")
        path.write_bytes(cubin)
        text = subprocess.run(
            [_nvidia_tool("nvdisasm"), "-c", str(path)], capture_output=True, text=True, check=True
        ).stdout
    instructions, labels = [], {}
    for line in text.splitlines():
        label = _LABEL_LINE.match(line)
        if label:
            labels[label.group(1)] = len(instructions)
            continue
        match = _SASS_LINE.search(line)
        if match:
            instructions.append((match.group(2), match.group(3).strip()))
    # Drop the padding after the last EXIT (a self-branch and NOPs).
    last_exit = max(i for i, (op, _) in enumerate(instructions) if op == "EXIT")
    return instructions[: last_exit + 1], labels


def resource_usage(cubin: bytes) -> dict[str, int]:
    """Registers, spill (local) bytes and static shared memory from cuobjdump."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "kernel.cubin")
        path.write_bytes(cubin)
        text = subprocess.run(
            [_nvidia_tool("cuobjdump"), "-res-usage", str(path)], capture_output=True, text=True, check=True
        ).stdout
    found = dict(re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", text))
    return {"registers": int(found.get("REG", 0)), "local_bytes": int(found.get("LOCAL", 0))}


def _loop_bodies(instructions, labels) -> list[tuple[int, int]]:
    """(first, last) instruction index of each loop: a branch back to an earlier label."""
    loops = []
    for i, (op, operands) in enumerate(instructions):
        if op.startswith("BRA"):
            target = re.search(r"\.L_x_\d+", operands)
            if target and labels.get(target.group(0), i + 1) <= i:
                loops.append((labels[target.group(0)], i))
    return loops


def count_variant(v: Variant, cc: int = 90) -> dict:
    """Compile ``v`` and count its SASS per element; returns one row of the audit table."""
    start = time.perf_counter()
    compiled = compile_variant(v, cc)
    seconds = time.perf_counter() - start
    _, _, _, _, num_warps, cfg = kernel_spec(v)
    instructions, labels = disassemble(compiled.asm["cubin"])
    ops = [op for op, _ in instructions if op != "NOP"]
    threads = 32 * num_warps
    if v.kernel.endswith("looped") or v.kernel == "rao":
        # looped kernels: the loop bodies; the single-block Gumbel-Rao kernel: its loop over
        # the draws, so its figure is per element per draw (M draws cost M times that)
        loops = _loop_bodies(instructions, labels)
        if not loops:
            raise GumbenchError(f"{v.name}: no loop found in the SASS")
        body = [instructions[i][0] for first, last in loops for i in range(first, last + 1)]
        counted = [op for op in body if op != "NOP"]
        if v.kernel == "rao":
            lanes_per_thread = cfg.rows_per_program * (cfg.block_a + cfg.block_b) / threads
            lanes = cfg.block_a + cfg.block_b
        else:
            lanes_per_thread = cfg.block_a / threads
            lanes = -(-v.n_cols // cfg.block_a) * cfg.block_a
    else:
        counted = ops
        width = cfg.block_a + cfg.block_b
        lanes_per_thread = cfg.rows_per_program * width / threads
        lanes = width
    per_lane = len(counted) / lanes_per_thread
    mufu = sum(op.startswith("MUFU") for op in counted) / lanes_per_thread
    per_element = per_lane * lanes / v.n_cols
    budget = INSTRUCTIONS_PER_BYTE * v.bytes_per_element()
    usage = resource_usage(compiled.asm["cubin"])
    return {
        "variant": v.name, "kernel": v.kernel, "mode": v.mode, "dtype": v.dtype, "K": v.n_cols, "arch": f"sm_{cc}",
        "tiles": f"{cfg.block_a}+{cfg.block_b}" if not cfg.looped else f"{cfg.block_a} (loop)",
        "rows_per_program": cfg.rows_per_program, "num_warps": num_warps,
        "sass_instructions": len(ops), "counted": len(counted), "lanes_per_thread": lanes_per_thread,
        "instr_per_element": round(per_element, 1), "mufu_per_element": round(mufu * lanes / v.n_cols, 2),
        "bytes_per_element": round(v.bytes_per_element(), 2), "budget": round(budget, 1),
        "within_budget": per_element <= budget and MUFU_ISSUE_COST * mufu * lanes / v.n_cols <= budget,
        "registers": usage["registers"], "local_bytes": usage["local_bytes"], "compile_s": round(seconds, 2),
    }  # fmt: skip


def _compile_one(job):
    variant, cc = job
    start = time.perf_counter()
    try:
        compile_variant(variant, cc)
        return variant.name, cc, None, time.perf_counter() - start
    except Exception as error:  # report every failure, not just the first
        return variant.name, cc, f"{type(error).__name__}: {error}", time.perf_counter() - start


def check_all(archs=(80, 90), jobs: int | None = None) -> list[tuple[str, int, str | None, float]]:
    """Compile every variant for every arch; returns (name, cc, error or None, seconds)."""
    _kernels()
    work = [(v, cc) for cc in archs for v in compile_variants()]
    jobs = jobs or min(len(work), os.cpu_count() or 1)
    if jobs == 1:
        return [_compile_one(job) for job in work]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_compile_one, work))


# --------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------


def write_reports(out_dir: str | os.PathLike, rows: list[dict], bytes_rows: list[dict]) -> list[Path]:
    import pandas as pd
    import triton

    out = Path(out_dir)
    csv_path = write_csv(pd.DataFrame(rows), out / "ptx_audit.csv")

    lines = [
        "# Kernel audit: SASS instructions per element (sm_90, compiled on CPU)",
        "",
        f"Triton {triton.__version__}; ptxas and nvdisasm bundled with it. Regenerate with",
        "`gumbench audit-kernel --out results/kernel`.",
        "",
        f"Budget = {INSTRUCTIONS_PER_BYTE:.2f} instructions per byte moved (H100 SXM: {ISSUE_EFFICIENCY:.0%} of "
        f"{H100_SMS} SMs x 128 lanes at {H100_BOOST_HZ / 1e9:.2f} GHz over {TARGET_BANDWIDTH_SHARE:.0%} of "
        f"{H100_HBM_BYTES_PER_S / 1e12:.2f} TB/s); MUFU counted x{MUFU_ISSUE_COST} in a second check.",
        "Within budget means the instruction stream fits under the memory time at 80% of peak bandwidth.",
        "",
        "| kernel | mode | dtype | K | tiles | warps | regs | instr/elem | MUFU/elem | bytes/elem | budget | ok |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kernel']} | {r['mode']} | {r['dtype']} | {r['K']} | {r['tiles']} x{r['rows_per_program']} | "
            f"{r['num_warps']} | {r['registers']} | {r['instr_per_element']} | {r['mufu_per_element']} | "
            f"{r['bytes_per_element']} | {r['budget']} | {'yes' if r['within_budget'] else 'NO'} |"
        )
    lines += ["", "# Bytes per logit, forward + backward, hard=True", "",
              "| path | kernels | bytes/elem | how |", "|---|---:|---:|---|"]  # fmt: skip
    for r in bytes_rows:
        lines.append(f"| {r['path']} | {r['kernels']} | {r['bytes']:.1f} | {r['how']} |")
    return [csv_path, write_text(out / "ptx_audit.md", "\n".join(lines) + "\n")]


class ReportLine(NamedTuple):
    """One line of the audit's console report."""

    text: str
    error: bool = False  # a failure: belongs on stderr


def run_audit(
    check: bool = False, archs=(80, 90), jobs: int | None = None, out: str | os.PathLike | None = None
) -> tuple[int, list[ReportLine]]:
    """The audit ``gumbench audit-kernel`` runs; returns (exit status, report lines).

    ``check`` compiles every variant for each arch in ``archs`` (status 1 when one fails,
    each failure a FAIL line); ``out`` writes the sm_90 instruction and byte tables there.
    Raises GumbenchError without Triton or under TRITON_INTERPRET=1.
    """
    bad = [cc for cc in archs if not MIN_ARCH <= cc <= MAX_ARCH]
    if bad:  # LLVM aborts the whole process on them, no error to report
        raise GumbenchError(
            f"archs must be compute capabilities from {MIN_ARCH} to {MAX_ARCH} (e.g. 80, 90); got {bad[0]}"
        )
    status, lines = 0, []
    if check:
        start = time.perf_counter()
        results = check_all(tuple(archs), jobs)
        failures = [r for r in results if r[2]]
        lines += [ReportLine(f"FAIL sm_{cc} {name}: {error}", error=True) for name, cc, error, _ in failures]
        elapsed = time.perf_counter() - start
        lines.append(ReportLine(f"compiled {len(results) - len(failures)}/{len(results)} variants in {elapsed:.1f}s"))
        status = 1 if failures else 0
    if out is not None:
        rows = [count_variant(v) for v in audit_variants()]
        lines += [
            ReportLine(f"{r['variant']:<45} {r['instr_per_element']:>6} / {r['budget']:<6} {r['registers']} regs")
            for r in rows
        ]
        lines += [ReportLine(f"wrote {path}") for path in write_reports(out, rows, byte_table())]
    return status, lines
