"""Issue 19 diagnostic: how well the two-stage model's presence head separates present
(true proportion >= 1 %) from absent (0) tissues, next to NNLS's own proportion as a score.

Reads the raw outputs that ``bench_deconv_spurious.py`` saves (stage 1): the training
mixtures (``fitset_*``), the phase-3 validation mixtures (``val_*``, the training
generator) and the independent test sets (``ind30_*``, ``ind10_*``). A head near AUC 0.5 on
the training generator's own mixtures is a defect; high there and low only on the
independent sets is distribution shift. Also prints the presence loss per epoch and the
epoch whose weights were kept. Not a test.

    python benchmarks/bench_deconv_presence.py [benchmarks/results/deconv_spurious_raw.npz ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "benchmarks" / "results" / "deconv_spurious_raw.npz"


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive``; NaN with one class only."""
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, score))


def presence_aucs(raw: dict, call: float = 0.01) -> dict:
    """Per set: AUC of the presence head and of NNLS (all tissues; solid tissues only)."""
    solid = ~np.isin(raw["tissues"], raw["blood"])
    sets = {
        "train": "fitset_{}",
        **{n[: -len("_true")]: n[: -len("_true")] + "_{}" for n in raw if n.endswith("_true")},
    }
    out = {}
    for name, key in sets.items():
        truth_key = key.format("truth") if name == "train" else key.format("true")
        if truth_key not in raw:
            continue
        true, pres, nnls = raw[truth_key], raw[key.format("presence")], raw[key.format("nnls")]
        keep = (true >= call) | (true == 0)
        row = {}
        for label, cols in (("all", np.ones(true.shape[1], bool)), ("solid", solid)):
            m = keep & cols[None, :]
            row[f"head_{label}"] = round(auc(pres[m], true[m] >= call), 3)
            row[f"nnls_{label}"] = round(auc(nnls[m], true[m] >= call), 3)
        out[name] = row
    return out


def main() -> None:
    for path in [Path(p) for p in sys.argv[1:]] or [RAW]:
        raw = dict(np.load(path))
        print(path.name)
        for name, row in presence_aucs(raw).items():
            print(f"  {name:7s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
        if "metrics_json" in raw:
            m = json.loads(str(raw["metrics_json"]))
            hist = m.get("history", [])
            print(f"  best epoch {m.get('best_epoch')} of {len(hist)} ({m.get('monitor')})")
            for h in hist:
                print(
                    "   epoch {epoch:.0f}: train/presence_loss {tp:.4f} val/presence_loss {vp:.4f} val/mae {vm:.5f}".format(
                        epoch=h.get("epoch", -1),
                        tp=h.get("train/presence_loss", float("nan")),
                        vp=h.get("val/presence_loss", float("nan")),
                        vm=h.get("val/mae", float("nan")),
                    )
                )


if __name__ == "__main__":
    main()
