"""Bytes per logit that each Gumbel-softmax path moves, forward + backward, counted on the CPU.

Eager ``F.gumbel_softmax`` is counted op by op under a TorchDispatchMode (each op charged the
bytes of its tensor inputs and outputs: one unfused GPU kernel per op); ``torch.compile`` at the
boundaries of the forward and backward graphs AOTAutograd hands to inductor (a lower bound);
the fused kernels from what they read and write. ``gumbench audit-kernel --out`` writes the table.
"""

from __future__ import annotations


def eager_traffic(rows: int = 64, n_cols: int = 320, hard: bool = True, fairseq: bool = False) -> dict:
    """Kernels and bytes of eager ``F.gumbel_softmax`` fwd + bwd, counted op by op on CPU.

    A TorchDispatchMode sees every ATen op autograd runs; each op is charged the bytes of
    its tensor inputs and outputs, which is the traffic of one unfused GPU kernel per op.
    Views are free, ``*_like`` factories only write, ``scatter_`` touches one element per
    index, and per-row vectors (max's values and indices) are left out. ``fairseq`` wraps the call as wav2vec 2.0 does:
    ``F.gumbel_softmax(x.float(), tau, hard=True).type_as(x)`` with fp16 x.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils._python_dispatch import TorchDispatchMode

    free = {"view", "_unsafe_view", "detach", "alias", "expand", "t", "transpose", "unsqueeze", "squeeze",
            "empty", "empty_like", "lift_fresh", "new_empty_strided", "empty_strided"}  # fmt: skip
    write_only = {"zeros_like", "ones_like", "full_like", "rand_like", "randn_like"}

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops, self.bytes = [], 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if name == "scatter_":
                index = args[2]
                self.ops.append(name)
                self.bytes += index.numel() * (index.element_size() + args[0].element_size())
            elif name not in free:
                leaves = (out,) if name in write_only else (args, kwargs, out)
                tensors = [a for a in torch.utils._pytree.tree_leaves(leaves) if isinstance(a, torch.Tensor)]
                # an in-place op's output is its input: charge it once
                seen, moved = set(), 0
                for t in tensors:
                    key = (t.data_ptr(), t.numel())
                    if key not in seen and t.numel() > rows:  # skip per-row vectors and scalars
                        seen.add(key)
                        moved += t.numel() * t.element_size()
                if moved:
                    self.ops.append(name)
                    self.bytes += moved
            return out

    dtype = torch.float16 if fairseq else torch.float32
    x = torch.randn(rows, n_cols, dtype=dtype, requires_grad=True)
    dy = torch.randn(rows, n_cols, dtype=dtype)
    with Count() as count:
        if fairseq:
            y = F.gumbel_softmax(x.float(), tau=1.0, hard=hard).type_as(x)
        else:
            y = F.gumbel_softmax(x, tau=1.0, hard=hard)
        y.backward(dy)
    n = rows * n_cols
    return {"kernels": len(count.ops), "ops": count.ops, "bytes_per_element": count.bytes / n}


def compiled_traffic(rows: int = 64, n_cols: int = 320, hard: bool = True) -> dict:
    """Bytes of torch.compile's fwd + bwd graphs at their boundaries, counted on CPU.

    AOTAutograd splits F.gumbel_softmax into the forward and backward graphs inductor
    compiles, with the partitioner torch.compile uses (min-cut rematerialisation); a
    graph fused into kernels that read each input once and write each output once moves
    exactly its inputs and outputs. That is a lower bound on what inductor's kernels move.
    """
    import torch
    import torch.nn.functional as F
    from torch._functorch.aot_autograd import aot_function
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    moved = {}

    def recorder(name):
        def compiler(graph, example_inputs):
            inputs = sum(t.numel() * t.element_size() for t in example_inputs if isinstance(t, torch.Tensor))

            def run(*args):
                outputs = graph(*args)
                moved[name] = inputs + sum(
                    t.numel() * t.element_size() for t in torch.utils._pytree.tree_leaves(outputs)
                    if isinstance(t, torch.Tensor)
                )  # fmt: skip
                return outputs

            run._boxed_call = False
            return run

        return compiler

    fn = aot_function(
        lambda x: F.gumbel_softmax(x, tau=1.0, hard=hard),
        fw_compiler=recorder("forward"),
        bw_compiler=recorder("backward"),
        partition_fn=min_cut_rematerialization_partition,
    )
    x = torch.randn(rows, n_cols, requires_grad=True)
    fn(x).backward(torch.randn(rows, n_cols))
    n = rows * n_cols
    return {"forward": moved["forward"] / n, "backward": moved["backward"] / n}


def byte_table() -> list[dict]:
    """Bytes per logit of fwd + bwd for each path (hard=True), fp32 logits unless noted."""
    eager = eager_traffic()
    fairseq = eager_traffic(fairseq=True)
    compiled = compiled_traffic()
    return [
        {"path": "eager F.gumbel_softmax (fp32)", "kernels": eager["kernels"], "bytes": eager["bytes_per_element"],
         "how": "counted: ATen ops under a TorchDispatchMode"},
        {"path": "torch.compile (fp32)", "kernels": ">= 2", "bytes": compiled["forward"] + compiled["backward"],
         "how": "counted: AOTAutograd fwd/bwd graph boundaries, a lower bound (saves y_soft)"},
        {"path": "fused, saved y (fp32)", "kernels": 2, "bytes": 24.0,
         "how": "kernel: fwd reads x, writes y, y_soft; bwd reads dy, y_soft, writes dx"},
        {"path": "fused, recompute (fp32)", "kernels": 2, "bytes": 20.0,
         "how": "kernel: fwd reads x, writes y; bwd reads dy, x, writes dx"},
        {"path": "floor (fp32)", "kernels": "-", "bytes": 16.0, "how": "read x, write y, read dy, write dx"},
        {"path": "fairseq wav2vec 2.0 call (fp16 x)", "kernels": fairseq["kernels"],
         "bytes": fairseq["bytes_per_element"], "how": "counted: ATen ops under a TorchDispatchMode"},
        {"path": "fused, recompute (fp16 x)", "kernels": 2, "bytes": 10.0,
         "how": "kernel: same five passes at 2 bytes"},
    ]  # fmt: skip
