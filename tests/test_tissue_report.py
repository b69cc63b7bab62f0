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


def test_calibration_note_says_when_the_temperature_is_per_sample_profile(tmp_path):
    """With calibration.by_profile the recorded T is a median over complete validation samples,
    not the T every call got: the summary note says so; one T reads as before."""
    from genomelab.tissue.calibration import CalibrationConfig, calibrate
    from genomelab.tissue.report import write_calibration

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    p = rng.dirichlet(np.ones(3), 60)
    p[np.arange(60), y] += 1.0
    p /= p.sum(1, keepdims=True)
    obs, depth = rng.choice([1.0, 0.1], 60), rng.choice([30.0, 1.0], 60)
    cfg = CalibrationConfig()
    deg = (p, y, obs, depth)
    profile = calibrate((p, y), (p, y), cfg, deg, ((obs, depth), (obs, depth)))[2]
    one = calibrate((p, y), (p, y), cfg)[2]
    (tmp_path / "plots").mkdir()
    notes: list[str] = []
    write_calibration({"profile model": [profile, profile], "one-T model": [one, one]}, tmp_path, notes)
    by_name = {n.split(":")[0]: n for n in notes}
    assert "T per sample profile; complete samples' median T = " in by_name["profile model"]
    assert "per sample profile" not in by_name["one-T model"]
    assert f"T = {one['temperature']:.2f}-{one['temperature']:.2f} over folds" in by_name["one-T model"]
