"""The report's figures: every plotted point carries a 95% t interval over its replicates (problem instances or
training seeds), temperature figures show only tasks that vary one estimator's temperature, and no two texts of a
figure overlap when the report's figures of the committed reference run are drawn."""

from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[3]


def drawn_texts(fig) -> list:
    """(text, window bbox) of every non-empty Text artist that drawing ``fig`` draws: titles, axis and tick labels
    (only the ticks in view), legend texts, annotations. Recorded from Text.draw itself, so that hidden panels,
    ticks outside the view and invisible texts are left out exactly as matplotlib leaves them out."""
    from matplotlib.text import Text

    drawn, original = [], Text.draw

    def record(self, renderer):
        original(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)

    with mock.patch.object(Text, "draw", record):
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in dict.fromkeys(drawn)]


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose bounding boxes intersect with positive area."""
    import numpy as np

    texts = drawn_texts(fig)
    if len(texts) < 2:
        return []
    box = np.array([[b.x0, b.y0, b.x1, b.y1] for _, b in texts])
    width = np.minimum(box[:, None, 2], box[None, :, 2]) - np.maximum(box[:, None, 0], box[None, :, 0])
    height = np.minimum(box[:, None, 3], box[None, :, 3]) - np.maximum(box[:, None, 1], box[None, :, 1])
    hits = np.argwhere(np.triu((width > 0) & (height > 0), k=1))
    return [(texts[i][0], texts[j][0]) for i, j in hits]


def reference_run() -> Path:
    runs = sorted((ROOT / "results" / "reference").glob("default-*/results.parquet"))
    assert len(runs) == 1, f"expected one committed reference run of the default sweep, found {runs}"
    return runs[0].parent


@pytest.fixture(scope="module")
def reference():
    """(rows, compared, [(name, caption, Figure)]) of the committed reference run, drawn as the report draws them."""
    import matplotlib.pyplot as plt

    from gumbench.benchmarks.sweep.figures import figure_objects, set_style
    from gumbench.benchmarks.sweep.store import load_results
    from gumbench.benchmarks.sweep.verdict import compare, outcomes

    set_style()
    frame = load_results([reference_run()])
    compared = compare(outcomes(frame))
    figures = figure_objects(frame[frame["kind"] == "gradstats"], frame[frame["kind"] == "training"], compared)
    yield frame, compared, figures
    for _, _, fig in figures:
        plt.close(fig)


def test_the_overlap_check_finds_two_texts_that_touch_and_ignores_hidden_ones():
    import matplotlib.pyplot as plt

    from gumbench.benchmarks.sweep.figures import set_style

    set_style()
    fig, (left, hidden) = plt.subplots(1, 2, figsize=(6, 3))
    left.set_xlim(0, 1)
    left.set_xticks([0, 1])
    left.text(0.2, 0.5, "first label")
    left.text(0.25, 0.5, "second label")  # starts inside the first
    left.text(0.2, 0.1, "invisible").set_visible(False)
    left.text(0.21, 0.1, "far enough below")
    hidden.set_title("first label of a hidden panel")
    hidden.set_visible(False)
    assert overlapping_texts(fig) == [("first label", "second label")]
    plt.close(fig)


def test_no_two_texts_overlap_in_any_figure_of_the_reference_report(reference):
    from gumbench.benchmarks.sweep.figures import DPI

    _, _, figures = reference
    names = [name for name, _, _ in figures]
    assert {"bias-variance-1", "relative-bias", "total-variance", "training-loss-1"} <= set(names)
    for name, _, fig in figures:
        assert overlapping_texts(fig) == [], name
        box = fig.get_tightbbox(fig.canvas.get_renderer())  # in inches: what savefig(bbox_inches="tight") keeps
        assert box.width * DPI <= 1300 and box.height * DPI <= 900, (name, box.width * DPI, box.height * DPI)
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        panels = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()]
        beside = legend.get_window_extent(renderer)
        assert beside.x0 >= max(p.x1 for p in panels), f"{name}: the legend sits right of the panels"
        assert beside.y1 <= fig.bbox.y1 + 1 and beside.y0 >= min(p.y0 for p in panels) - 1, f"{name}: ... beside them"


def test_temperature_figures_show_only_tasks_that_vary_one_estimators_temperature(reference):
    import pandas as pd

    from gumbench.benchmarks.sweep.figure_data import temperature_tasks

    wide = pd.DataFrame({
        "task": ["toy"] * 3 + ["vq"] * 3,
        "series": ["st", "st", "reinforce", "st", "decoupled", "reinforce"],
        "tau": [0.5, 1.0, float("nan"), 1.0, 1.3, float("nan")],
    })
    assert temperature_tasks(wide) == ["toy"]  # two estimators each at its own temperature do not count
    _, _, figures = reference
    for name, _, fig in figures:
        if name in ("relative-bias", "total-variance"):
            titles = {ax.get_title() for ax in fig.axes if ax.get_visible()}
            assert titles and not any(t.startswith("vq-distance") or t.startswith("quantizer") for t in titles)
            assert "bernoulli" in titles


def _t_interval(values):
    """The 95% t interval of the mean, computed with scipy.stats, independently of gumbench.intervals."""
    import numpy as np
    from scipy import stats

    values = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


def test_a_points_interval_is_the_t_interval_of_the_mean_and_on_a_log_axis_of_the_mean_log():
    import numpy as np
    import pandas as pd

    from gumbench.benchmarks.sweep.figure_data import grouped_interval

    rng = np.random.default_rng(0)
    spread = rng.lognormal(0, 1, 5)
    frame = pd.DataFrame({
        "g": ["spread"] * 5 + ["zero"] * 3 + ["mixed"] * 3 + ["one"] + ["inf"] * 3,
        "v": [*spread, 0, 0, 0, 0.0, 2.0, 4.0, 7.0, 1.0, 3.0, np.inf],
    })
    linear = grouped_interval(frame, ["g"], "v").set_index("g")
    assert np.allclose(linear.loc["spread", ["mean", "low", "high"]], _t_interval(spread))  # not min-max
    assert np.allclose(linear.loc["inf", ["mean", "low", "high", "n"]], [*_t_interval([1.0, 3.0]), 2])
    assert linear.loc["one", "n"] == 1 and np.isnan(linear.loc["one", ["low", "high"]].astype(float)).all()
    log = grouped_interval(frame, ["g"], "v", log=True).set_index("g")
    mean, low, high = _t_interval(np.log10(spread))
    assert np.allclose(log.loc["spread", ["mean", "low", "high"]], [10 ** mean, 10 ** low, 10 ** high])
    assert list(log.loc["zero", ["mean", "low", "high"]]) == [0.0, 0.0, 0.0]
    mixed = _t_interval([0.0, 2.0, 4.0])
    assert np.allclose(log.loc["mixed", ["mean", "low", "high"]], [mixed[0], max(mixed[1], 0), mixed[2]])
    assert (log[["low"]].dropna() >= 0).all().all()


def test_training_bands_are_t_intervals_over_seeds_at_each_step():
    import numpy as np
    import pandas as pd

    from gumbench.benchmarks.sweep.figure_data import training_bands

    seeds = {0: [4.0, 2.0], 1: [5.0, 2.5], 2: [9.0, 1.0]}  # seed -> loss at steps 0 and 1
    rows = pd.DataFrame([
        {"task": "t", "label": "a", "estimator_name": "a", "step": step, "metric": "loss", "value": values[step]}
        for values in seeds.values() for step in (0, 1)
    ])
    bands = training_bands(rows, "loss").set_index("step")
    for step in (0, 1):
        values = [v[step] for v in seeds.values()]
        assert np.allclose(bands.loc[step, ["mean", "low", "high"]], _t_interval(values))
        assert bands.loc[step, "n"] == 3
    logged = training_bands(rows, "loss", log=True).set_index("step")
    mean, low, high = _t_interval(np.log10([4.0, 5.0, 9.0]))
    assert np.allclose(logged.loc[0, ["mean", "low", "high"]], [10 ** mean, 10 ** low, 10 ** high])


def test_every_point_of_the_reference_figures_has_its_interval(reference):
    import numpy as np
    from matplotlib.collections import PolyCollection
    from matplotlib.container import ErrorbarContainer

    from gumbench.benchmarks.sweep.figure_data import (
        bias_variance_points,
        temperature_points,
        training_bands,
        wide_gradstats,
    )
    from gumbench.benchmarks.sweep.figures import finite_rows

    frame, compared, figures = reference
    wide = wide_gradstats(finite_rows(frame[frame["kind"] == "gradstats"])[0])
    points = bias_variance_points(wide, compared)
    temperature = temperature_points(wide, "relative_bias", log=False)
    bands = training_bands(frame[frame["kind"] == "training"], "loss", log=True)
    for tidy, ends in ((points, ("bias", "variance")), (temperature, ("",)), (bands, ("",))):
        for end in ends:
            mean, low, high = (tidy[f"{c}_{end}" if end else c].to_numpy(float) for c in ("mean", "low", "high"))
            n = tidy[f"n_{end}" if end else "n"]
            assert (n >= 2).all() and np.isfinite(low).all() and np.isfinite(high).all()
            assert (low <= mean * (1 + 1e-12) + 1e-300).all() and (mean <= high * (1 + 1e-12) + 1e-300).all()
    drawn = {name: fig for name, _, fig in figures}
    bars = [c for name, fig in drawn.items() if name.startswith("bias-variance") for ax in fig.axes
            for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == len(points) and all(c.has_xerr and c.has_yerr for c in bars)
    varied = [c for ax in drawn["relative-bias"].axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert sum(len(c.lines[0].get_xdata()) for c in varied) == temperature["tau"].notna().sum()
    assert all(c.has_yerr for c in varied)
    for name, fig in drawn.items():
        if name.startswith("training-"):
            for ax in (ax for ax in fig.axes if ax.get_visible()):
                assert len(ax.lines) == sum(isinstance(c, PolyCollection) for c in ax.collections) > 0, name
