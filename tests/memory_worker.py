"""A worker process under an address-space cap (RLIMIT_AS) that runs, or has refused up front, one plugin name per
line of its input: 'gradstats NAME' or 'training NAME'. It answers one line per name: 'ran', 'refused: MESSAGE'
or 'memory: MESSAGE' (an allocation failed: the estimate let through a run that did not fit). Used by
tests/test_memory_bounds.py; run as ``python -m tests.memory_worker CAP_BYTES``."""

import json
import resource
import sys


def status_bytes(key: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(key + ":"))


def run(kind: str, name: str) -> None:
    from gumbench.benchmarks.gradstats import run_gradstats
    from gumbench.benchmarks.problems import make_problem
    from gumbench.benchmarks.training import make_training_task, train
    from gumbench.estimators import make_estimator
    from gumbench.footprint import check_peak, combined

    if kind == "gradstats":
        problem = make_problem(name)
        run_gradstats(problem, [problem.default_estimators()[0]], samples=4)
        return
    task = make_training_task(name)
    est = make_estimator("vq-commitment")
    task.check_estimator(est)
    check_peak(f"{est.label} on {task.spec}", combined(task.peak_memory(est), est.peak_memory()))
    train(task, est, steps=1, eval_every=1)


def main() -> None:
    cap = int(sys.argv[1])
    import torch  # noqa: F401  (imported before the cap: the libraries' mappings are not what is measured)

    import gumbench.benchmarks.gradstats  # noqa: F401
    import gumbench.benchmarks.training  # noqa: F401
    from gumbench.errors import GumbenchError

    torch.set_num_threads(1)
    resource.setrlimit(resource.RLIMIT_AS, (status_bytes("VmSize") + cap, resource.RLIM_INFINITY))
    print("ready", flush=True)
    for line in sys.stdin:
        kind, name = json.loads(line)
        try:
            run(kind, name)
            answer = "ran"
        except GumbenchError as exc:
            answer = f"refused: {exc}"
        except MemoryError as exc:
            answer = f"memory: MemoryError {exc}"
        except RuntimeError as exc:
            text = str(exc)
            allocation = "alloc" in text.lower() or "memory" in text.lower()
            answer = f"{'memory' if allocation else 'error'}: {text[:300]}"
        except Exception as exc:  # an internal error: reported, so that the test names the case
            answer = f"error: {type(exc).__name__}: {str(exc)[:300]}"
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
