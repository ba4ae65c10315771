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
