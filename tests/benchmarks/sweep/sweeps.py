"""Shared by the sweep tests: a small gradstats config, and rows made comparable across runs (no timing, no commit)."""

TIMING = ["step_seconds", "peak_memory_mb"]


def small_config(name="t", samples=400, estimators=("st-gumbel[tau=[0.5,1]]", "reinforce[baseline=loo]")):
    return {"name": name, "repetitions": 2,
            "gradstats": {"tasks": ["bernoulli", "categorical[groups=2,categories=3]"], "estimators": list(estimators), "samples": samples}}


def comparable(frame):
    drop = [c for c in ("git_commit",) if c in frame]
    frame = frame[~frame["metric"].isin(TIMING)].drop(columns=drop)
    return frame.sort_values(["unit_id", "step", "metric"]).reset_index(drop=True)
