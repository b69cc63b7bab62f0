"""The deconv_compare step: NNLS vs plain vs two-stage network on the same test mixtures."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from genomelab.deconv.io import load_predictions
from genomelab.deconv.metrics import headline
from genomelab.deconv.mixtures import read_mixtures
from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.metrics import read_metrics

VARIANTS = {"nnls": "NNLS (MethAtlas)", "plain": "plain network", "sparse": "two-stage sparse network"}


def compare(
    phase: str,
    mixtures: str | os.PathLike,
    nnls: tuple[str, str],
    runs: dict[str, list[tuple[str, str]]],
    out_json: str | os.PathLike,
    out_tsv: str | os.PathLike,
    plots: dict[str, str],
    n_miami: int = 24,
) -> dict:
    """NNLS vs plain vs two-stage on the same test mixtures: table, spread over repeats, plots.

    ``nnls`` = (metrics JSON, predictions NPZ); ``runs[variant]`` = one pair per repeat (the
    first is the one plotted and tabulated; the rest give mean and SD).
    """
    from genomelab.deconv import plots as P

    assert len({len(pairs) for pairs in runs.values()}) <= 1, "variants differ in their number of repeats"
    ms = read_mixtures(mixtures, "test")
    rows: dict[str, dict[str, float]] = {}
    preds: dict[str, np.ndarray] = {}
    full: dict[str, Any] = {}
    m = read_metrics(nnls[0]).test
    rows[VARIANTS["nnls"]], preds[VARIANTS["nnls"]], full["nnls"] = headline(m), load_predictions(nnls[1]), m
    spread: dict[str, Any] = {}
    for variant, pairs in runs.items():
        all_m = [read_metrics(p).test for p, _ in pairs]
        name = VARIANTS[variant]
        rows[name], preds[name], full[variant] = headline(all_m[0]), load_predictions(pairs[0][1]), all_m[0]
        if len(all_m) > 1:
            spread[variant] = {
                k: {
                    "mean": float(np.nanmean([headline(a)[k] for a in all_m])),
                    "sd": float(np.nanstd([headline(a)[k] for a in all_m], ddof=1)),
                    "n": len(all_m),
                }
                for k in ("mae", "spurious_per_sample", "presence_accuracy")
            }
    atomic_write_json(
        out_json,
        {
            "phase": phase,
            "n_test": int(len(ms.proportions)),
            "rows": rows,
            "kinds": {n: ("baseline" if n == VARIANTS["nnls"] else "model") for n in rows},
            "repeats": spread,
            "full": full,
        },
    )
    import pandas as pd

    with atomic_output(out_tsv) as tmp:
        pd.DataFrame(rows).T.rename_axis("method").to_csv(tmp, sep="\t", float_format="%.5g")
    true = ms.proportions.astype(np.float64)
    # The Miami plot shows the first test mixtures (mixture order is random already).
    k = min(n_miami, len(true))
    P.miami_plot(
        true[:k],
        {n: p[:k] for n, p in preds.items()},
        list(ms.tissues),
        plots["miami"],
        f"{phase}: true (up) vs predicted (down), first {k} test mixtures",
    )
    P.scatter_plot(true, preds, list(ms.tissues), plots["scatter"], f"{phase}: predicted vs true")
    P.tissue_error_plot(true, preds, list(ms.tissues), plots["errors"], f"{phase}: per-tissue MAE")
    return rows
