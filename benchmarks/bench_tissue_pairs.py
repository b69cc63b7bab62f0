"""Model against model, paired, at full coverage and every grid point, from the fold folders of
``bench_tissue_sparse.py`` runs (issue 18, round 22).

``bench_tissue_sparse.py``'s summary tests every model against the baselines; whether one
model is worth training beside another needs them tested against each other. Each model is
named ``RUN:NAME`` (a run's ``--out`` folder and a model name of its ``--models``); runs of the
same ``--seed`` and grid score the same test samples on the same degraded inputs, so models of
two runs pair too (runs that differ in cohort, folds, regions, seed or grid are refused: other
seeds test the same samples, on other folds and draws). Per point: each model's accuracy
pooled over the folds and the exact McNemar test of each model against the first (the
reference), with the wins and losses.

Usage:
    python benchmarks/bench_tissue_pairs.py RUN:reads RUN:att OTHER_RUN:masked \
        --out benchmarks/results/tissue_sparse_idhwt_r22_deep/pairs_s42.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from genomelab.report.stats import exact_mcnemar

FULL = "full coverage"
# The run settings (bench.json's args) that decide which samples each fold tests and the
# degraded inputs of every grid point: runs that differ in one score other inputs (another
# --seed: other folds and draws, though the same 430 samples), so their models do not pair.
PAIRING = ("csv", "folds", "regions", "seed", "depths", "observed")


def pairing_settings(run: Path) -> dict[str, str | None]:
    """The run's settings in PAIRING, from its bench.json."""
    path = run / "bench.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing (not a bench_tissue_sparse.py --out folder?)")
    args = json.loads(path.read_text())["args"]
    settings = {key: args.get(key) for key in PAIRING}
    # The cohort by its file name: runs started from other folders name it by other paths.
    settings["csv"] = Path(settings["csv"]).name if settings["csv"] else None
    return settings


def right_per_point(run: Path, name: str) -> dict[str, dict[str, bool]]:
    """Point ("full coverage" or "<depth> x <observed>") -> sample -> whether the model of
    ``name`` in the run's fold folders called it right."""
    out: dict[str, dict[str, bool]] = {}
    folds = sorted(run.glob("folds/*/"), key=lambda p: int(p.name))
    if not folds:
        raise SystemExit(f"{run}: no folds/<k>/ folders (not a bench_tissue_sparse.py --out folder?)")
    for fold in folds:
        path = fold / name / "metrics.json"
        if not path.exists():
            raise SystemExit(f"{path} is missing: is {name!r} one of the run's --models?")
        metrics = json.loads(path.read_text())
        points = [(FULL, metrics["predictions"])]
        points += [(f"{g['depth']} x {g['observed']:g}", g["predictions"]) for g in metrics.get("grid", [])]
        for key, p in points:
            cell = out.setdefault(key, {})
            for sample, true, pred in zip(p["sample"], p["true"], p["pred"], strict=True):
                cell[sample] = true == pred
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="RUN:NAME, the reference first")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if len(args.models) < 2:
        ap.error("name the reference model and at least one other")
    right = {}
    settings = {}
    for spec in args.models:
        run, _, name = spec.rpartition(":")
        if not run or not name:
            ap.error(f"{spec!r}: give RUN:NAME")
        settings[spec] = pairing_settings(Path(run))
        right[spec] = right_per_point(Path(run), name)
    reference, others = args.models[0], args.models[1:]
    for spec in others:
        differ = [k for k in PAIRING if settings[spec][k] != settings[reference][k]]
        if differ:
            raise SystemExit(
                f"{spec} and {reference} come from runs with different "
                + ", ".join(f"{k} ({settings[spec][k]} vs {settings[reference][k]})" for k in differ)
                + ": their test inputs differ, so their predictions do not pair"
            )
    rows = []
    for point, ref in right[reference].items():
        samples = sorted(ref)
        r = np.array([ref[s] for s in samples])
        row = {
            "point": point,
            "n": len(samples),
            "accuracy": {reference: round(float(r.mean()), 4)},
            "vs_reference": {},
        }
        for spec in others:
            cell = right[spec].get(point, {})
            if sorted(cell) != samples:
                raise SystemExit(f"{spec} and {reference} did not score the same samples at {point}")
            a = np.array([cell[s] for s in samples])
            test = exact_mcnemar(a.tolist(), r.tolist())
            row["accuracy"][spec] = round(float(a.mean()), 4)
            row["vs_reference"][spec] = {
                "wins": int((a & ~r).sum()),
                "losses": int((~a & r).sum()),
                "p_value": test.p_value,
            }
        rows.append(row)
        parts = [f"{point:>16s}  {reference.rpartition(':')[2]} {r.mean():.3f}"]
        for spec in others:
            v = row["vs_reference"][spec]
            a = np.array([right[spec][point][s] for s in samples])
            flag = " *" if v["p_value"] < 0.05 else ""
            parts.append(
                f"{spec.rpartition(':')[2]} {a.mean():.3f} (+{v['wins']}/-{v['losses']}, p {v['p_value']:.2g}{flag})"
            )
        print("  ".join(parts))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"models": args.models, "points": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
