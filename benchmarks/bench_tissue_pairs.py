"""Paired tests of one method against others across ``bench_tissue_sparse.py`` runs (issue 18).

Runs with the same data, folds, regions and seed degrade the same test samples alike at each
grid point, so a model of one run pairs with a model or baseline of another. For ``--model``
(``RUN:NAME``, NAME a model folder of the run or a baseline title), per grid point and for
full coverage (``test``): pooled accuracy and the exact McNemar test against each ``--other``.

Usage:
    PYTHONPATH=workflow/scripts python benchmarks/bench_tissue_pairs.py \\
        --model runA:masked --other runB:attention_sparse "runA:logistic regression" \\
        --out pairs.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from genomelab.report.stats import mcnemar_predictions


def _records(run: Path, name: str) -> dict[str, dict[str, list]]:
    """Pooled predictions of ``name`` per point key (``test``, ``<depth>/<observed>``)."""
    pooled: dict[str, dict[str, list]] = {}
    for fold in sorted((run / "folds").iterdir(), key=lambda p: int(p.name)):
        model = fold / name / "metrics.json"
        if model.is_file():
            m = json.loads(model.read_text())
            full, grid = m["predictions"], m["grid"]
        else:
            base = json.loads((fold / "baselines.json").read_text())
            res = base["methods"].get(name) or base.get("grid_methods", {}).get(name)
            if res is None:
                raise SystemExit(f"{fold}: no model folder or baseline named {name!r}")
            full, grid = res.get("predictions"), res["grid"]
        points = [("test", full)] + [(f"{p['depth']}/{p['observed']}", p["predictions"]) for p in grid]
        for key, rec in points:
            if rec is None:
                continue
            slot = pooled.setdefault(key, {"sample": [], "true": [], "pred": []})
            for f in slot:
                slot[f] += list(rec[f])
    return pooled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="RUN:NAME")
    ap.add_argument("--other", nargs="+", required=True, help="RUN:NAME ...")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    specs = [args.model, *args.other]
    recs = {s: _records(Path(s.split(":", 1)[0]), s.split(":", 1)[1]) for s in specs}
    out = {}
    for key, mine in recs[args.model].items():
        row = {"accuracy": {}, "p_value": {}, "favours": {}}
        row["accuracy"][args.model] = float(np.mean(np.equal(mine["true"], mine["pred"])))
        for other in args.other:
            theirs = recs[other].get(key)
            if theirs is None:
                continue
            t = mcnemar_predictions(mine, theirs)
            row["accuracy"][other] = float(np.mean(np.equal(theirs["true"], theirs["pred"])))
            row["p_value"][other], row["favours"][other] = t.p_value, t.favours
        out[key] = row
        cells = [f"{n.split(':', 1)[1]} {a:.4f}" for n, a in row["accuracy"].items()]
        tests = [f"{n.split(':', 1)[1]} p={p:.3g} ({row['favours'][n]})" for n, p in row["p_value"].items()]
        print(f"{key:>8}: " + ", ".join(cells) + " | " + "; ".join(tests))
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "others": args.other, "points": out}, indent=2))


if __name__ == "__main__":
    main()
