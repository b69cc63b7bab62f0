"""Figures of the tissue summary (genomelab.tissue.report) at the sizes real cohorts have."""

from __future__ import annotations

import numpy as np
from genomelab.tissue.report import plot_confusion
from PIL import Image


def _confusion(n: int) -> list[list[int]]:
    rng = np.random.default_rng(0)
    return (np.diag(rng.integers(5, 30, n)) + (rng.random((n, n)) < 0.02)).tolist()


def test_confusion_figure_stays_page_sized_for_many_classes(tmp_path):
    # Brain-tumour classifiers have 90-180 classes; the figure grew 0.45 inch per class
    # (184 classes: 7,551 px wide, 25 s and 2.3 GB to draw). It now stops at 18 inches.
    sizes = {}
    for n in (6, 40, 184):
        path = tmp_path / f"confusion_{n}.png"
        plot_confusion(_confusion(n), [f"class_{i}_with_a_long_name" for i in range(n)], f"{n} classes", path)
        with Image.open(path) as im:
            sizes[n] = im.size
    assert sizes[6][0] < sizes[40][0], "a few classes keep a small figure"
    assert max(sizes[184]) <= 2100 and max(sizes[40]) <= 2100
