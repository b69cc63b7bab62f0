"""Issue 19: NNLS (markers and all regions) vs plain vs two-stage sparse network on the Moss
atlas, scored on independent test mixtures at 30x and 10x with paired tests.

The run follows the workflow's atlas-only path with the module's own functions: individuals
simulated around the Moss 2018 atlas (../shared/data, research-use licence: read here, never
copied), split by individual; the *atlas* is the reference; markers chosen on validation
mixtures of the validation individuals (fallback: all regions); phase-3 training mixtures
(blood background of the 7 Moss blood types, 0-3 solid types at 0.5-10 %, 30x); networks
trained from scratch, the sparse model's presence thresholds calibrated on validation against
NNLS's missed calls. Then test sets from the *independent* generator
(genomelab.deconv.independent: test-split individuals plus beta noise sd 0.05, 0-6 solid
types at 0.5-10 % over a sparse blood background, negative binomial depth) at 30x and 10x,
and the phase's own test split. Wilcoxon signed-rank tests per mixture (absolute error,
spurious, missed calls) of each network against each NNLS.

Writes benchmarks/results/deconv_recall.json and prints a markdown table. Not a test.

    nice -n 5 python benchmarks/bench_deconv_recall.py [--epochs 30] [--n-train 3000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from genomelab.deconv import io as dio  # noqa: E402
from genomelab.deconv.compare import (  # noqa: E402
    NNLS_ALL,
    VARIANTS,
    evaluate_independent,
    predict_all,
    score_set,
)
from genomelab.deconv.independent import write_independent  # noqa: E402
from genomelab.deconv.mixtures import PhaseConfig, make_mixtures, read_mixtures, write_mixtures  # noqa: E402
from genomelab.deconv.nnls import deconvolve_nnls  # noqa: E402
from genomelab.deconv.reference import (  # noqa: E402
    ReferenceConfig,
    Validation,
    build_references,
    select_markers,
)
from genomelab.deconv.simulate import SimulationConfig, simulate_demo  # noqa: E402
from genomelab.deconv.tissues import looks_like_blood  # noqa: E402
from genomelab.deconv.training import train_model  # noqa: E402
from genomelab.io.metrics import read_metrics  # noqa: E402
from genomelab.splits import group_split  # noqa: E402

ATLAS = (
    ROOT.parent / "shared" / "data" / "methylation_atlas" / "meth_atlas_moss2018" / "reference_atlas.csv.gz"
)
if not ATLAS.is_file():  # a worktree sits one level deeper than the main checkout
    ATLAS = Path("/work/shared/data/methylation_atlas/meth_atlas_moss2018/reference_atlas.csv.gz")
OUT = ROOT / "benchmarks" / "results" / "deconv_recall.json"
FIXED = "NNLS, default markers (not chosen)"
UNCALIBRATED = "two-stage sparse, uncalibrated (0.5, no guard)"
SHOWN = ("mae", "spurious_per_sample", "missed_per_sample", "presence_precision", "presence_recall")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--n-independent", type=int, default=300)
    p.add_argument("--coverages", type=float, nargs="+", default=[30.0, 10.0])
    p.add_argument("--samples-per-tissue", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not ATLAS.is_file():
        sys.exit(f"Moss atlas not found at {ATLAS}")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result: dict = {"args": vars(args), "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        atlas = dio.read_table(ATLAS, "atlas")
        blood = [t for t in atlas[2] if looks_like_blood(t)]
        sim = SimulationConfig(
            tissues=list(atlas[2]),
            blood=blood,
            samples_per_tissue=args.samples_per_tissue,
            profiles=str(ATLAS),
            n_new_samples=0,
            seed=args.seed,
        )
        simulate_demo(sim, d / "s", d / "sheet.tsv", d / "new.csv", d / "truth.csv", d / "prof.csv")
        src = dio.sources_from_sheet(d / "sheet.tsv")
        src.splits = group_split(src.groups, (0.5, 0.25, 0.25), seed=args.seed, stratify=src.tissues)
        dio.write_sources(d / "sources.h5", src)
        phase3 = {"n_train": args.n_train, "n_val": 400, "n_test": 400, "background": blood}
        ref, record, ref_all = build_references(
            src.subset(src.splits == "train"),
            ReferenceConfig(atlas=str(ATLAS)),  # schema defaults otherwise
            atlas,
            Validation(src, phase3, 30.0, args.seed),
        )
        dio.write_table(d / "reference.tsv", ref.profiles, ref.regions, ref.tissues)
        fixed, _ = select_markers(ref_all.profiles, ReferenceConfig(), list(ref_all.tissues))
        pos = {r: i for i, r in enumerate(ref_all.regions.tolist())}
        marker_cols = np.asarray([pos[r] for r in ref.regions.tolist()])
        dio.write_table(d / "all.tsv", ref_all.profiles, ref_all.regions, ref_all.tissues)
        result["reference"] = {
            "n_regions_all": len(ref_all.regions),
            "n_markers": record["n_markers"],
            "chosen_on_validation": record.get("chosen_on_validation"),
            "background": blood,
            "n_fixed_markers": len(fixed),
        }
        log(result, t0, f"reference: {record['n_markers']} of {len(ref_all.regions)} regions")
        sets = make_mixtures(
            src, ref.regions, list(ref.tissues), "phase3", PhaseConfig(**phase3), 30, "reads", args.seed
        )
        write_mixtures(d / "phase3.h5", sets, {"phase": "phase3"})
        models = {}
        train = {
            "max_epochs": args.epochs,
            "batch_size": 64,
            "lr": 0.002,
            "monitor": "val/mae",
            "patience": 8,
        }
        for variant in ("plain", "sparse"):
            out = d / variant
            train_model(
                d / "phase3.h5",
                d / "reference.tsv",
                variant,
                {"hidden": [256, 128]},
                train,
                0.01,
                out / "state",
                out / "model.pt",
                out / "metrics.json",
                out / "pred.npz",
                None,
                device="cpu",
                seed=args.seed,
            )
            models[variant] = out / "model.pt"
            if variant == "sparse":
                result["calibration"] = read_metrics(out / "metrics.json").data.get("calibration")
            log(result, t0, f"trained {variant}")
        # The phase's own test split (training generator), markers only.
        test = sets["test"]
        preds = {VARIANTS["nnls"]: deconvolve_nnls(ref.profiles, test.beta.astype(np.float64)).proportions}
        for variant in ("plain", "sparse"):
            preds[VARIANTS[variant]] = np.load(d / variant / "pred.npz")["proportions"].astype(np.float64)
        own = score_set(test.proportions.astype(np.float64), preds, ref.tissues, 0.01)
        result["sets"]["phase3 test (training generator), 30x"] = slim(own)
        for cov in args.coverages:
            h5 = d / f"ind_{cov:g}.h5"
            write_independent(
                d / "sources.h5", d / "all.tsv", blood, {"n_mixtures": args.n_independent}, cov, args.seed, h5
            )
            res = evaluate_independent(
                h5, d / "reference.tsv", d / "all.tsv", models, 0.01, d / "c.json", d / "c.tsv"
            )
            # NNLS on the fixed default marker selection (no choice on validation), for contrast.
            ms = read_mixtures(h5, "test")
            preds = predict_all(ms.beta, ref_all, ref, models)
            beta_fixed = ms.beta[:, fixed].astype(np.float64)
            preds[FIXED] = deconvolve_nnls(ref_all.profiles[fixed], beta_fixed).proportions
            preds[UNCALIBRATED] = uncalibrated(models["sparse"], ref, ms.beta[:, marker_cols])
            scored = score_set(ms.proportions.astype(np.float64), preds, ref.tissues, 0.01)
            curve = res["full"][VARIANTS["sparse"]]["presence_curve"]
            scored["full"][VARIANTS["sparse"]]["presence_curve"] = curve
            result["sets"][f"independent {cov:g}x"] = slim(scored)
            log(result, t0, f"independent {cov:g}x scored")
    print(table(result))


def uncalibrated(model_path: Path, ref, beta: np.ndarray) -> np.ndarray:
    """The sparse model as before issue 19: one presence threshold (0.5), no NNLS guard."""
    from genomelab.deconv.model import load_model

    model, _ = load_model(model_path, ref.regions, ref.tissues)
    model.thresholds.fill_(model.cfg.presence_threshold)
    model.cfg.nnls_guard = 1.0 + 1e-9  # a proportion never reaches it
    with torch.no_grad():
        return model.predict(torch.tensor(beta, dtype=torch.float32)).double().numpy()


def slim(res: dict) -> dict:
    """Rows, paired tests and the sparse model's presence curve (no per-tissue detail)."""
    curve = res["full"].get(VARIANTS["sparse"], {}).get("presence_curve")
    return {"rows": res["rows"], "tests": res["tests"], **({"presence_curve": curve} if curve else {})}


def log(result: dict, t0: float, what: str) -> None:
    result["seconds"] = time.perf_counter() - t0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"[{result['seconds']:.0f} s] {what}", flush=True)


def table(result: dict) -> str:
    lines = [
        "| set | method | MAE | spurious / sample | missed / sample | precision | recall |"
        " p MAE vs NNLS (all / markers) | p spurious | p missed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in result["sets"].items():
        for method, row in s["rows"].items():
            ps = []
            for metric in ("mae", "spurious_per_sample", "missed_per_sample"):
                got = [
                    s["tests"][metric].get(f"{method} vs {base}", {}).get("p_value")
                    for base in (NNLS_ALL, VARIANTS["nnls"])
                ]
                ps.append(" / ".join(f"{x:.2g}" for x in got if x is not None) or "-")
            vals = " | ".join(f"{row[k]:.4g}" for k in SHOWN)
            lines.append(f"| {name} | {method} | {vals} | {' | '.join(ps)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
