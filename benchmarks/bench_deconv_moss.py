"""NNLS vs plain vs two-stage sparse network on mixtures built from the real Moss 2018 atlas.

The Moss atlas (../shared/data, research-use licence: read here, never copied into the
repository) gives real per-cell-type profiles for 25 cell types. There are no per-sample data
for it in ../shared, so individuals are drawn around those profiles by the module's simulator
(logit-normal biological variation, 150 calls per region, missing calls), written as NPZ
files and taken through the module's own steps: sources split by individual, reference and
markers from the training individuals, phase-3 cfDNA mixtures (blood background, 0-3 solid
tissues at 0.5-10%) mixed read by read at 30x, then the three methods on the same test
mixtures. Writes benchmarks/results/deconv_moss.json. Not part of the test suite.

    python benchmarks/bench_deconv_moss.py [--epochs 30] [--n-train 3000] [--device cpu]
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
from genomelab.deconv import io as dio  # noqa: E402
from genomelab.deconv.baseline import evaluate_nnls  # noqa: E402
from genomelab.deconv.metrics import headline  # noqa: E402
from genomelab.deconv.mixtures import PhaseConfig, make_mixtures, write_mixtures  # noqa: E402
from genomelab.deconv.reference import ReferenceConfig, build_reference  # noqa: E402
from genomelab.deconv.simulate import SimulationConfig, simulate_demo  # noqa: E402
from genomelab.deconv.training import train_model  # noqa: E402
from genomelab.splits import group_split  # noqa: E402

ATLAS = (
    ROOT.parent / "shared" / "data" / "methylation_atlas" / "meth_atlas_moss2018" / "reference_atlas.csv.gz"
)
BLOOD = [
    "Neutrophils_EPIC",
    "Monocytes_EPIC",
    "B-cells_EPIC",
    "CD4T-cells_EPIC",
    "CD8T-cells_EPIC",
    "NK-cells_EPIC",
    "Erythrocyte_progenitors",
]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--samples-per-tissue", type=int, default=4)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if not ATLAS.is_file():
        sys.exit(f"Moss atlas not found at {ATLAS}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _, _, tissues = dio.read_table(ATLAS, "atlas")
        sim = SimulationConfig(
            tissues=list(tissues),
            blood=BLOOD,
            samples_per_tissue=args.samples_per_tissue,
            n_regions=100_000,
            profiles=str(ATLAS),
            n_new_samples=0,
            seed=0,
        )
        simulate_demo(sim, d / "samples", d / "sheet.tsv", d / "new.csv", d / "truth.csv", d / "profiles.csv")
        src = dio.sources_from_sheet(d / "sheet.tsv")
        src.splits = group_split(src.groups, (0.5, 0.25, 0.25), seed=0, stratify=src.tissues)
        ref_cfg = ReferenceConfig(
            hypo_per_tissue=40, hyper_per_tissue=10, pairwise_per_tissue=20, min_delta=0.15
        )
        ref, record = build_reference(src.subset(src.splits == "train"), ref_cfg)
        dio.write_table(d / "reference.tsv", ref.profiles, ref.regions, ref.tissues)
        phase = PhaseConfig(n_train=args.n_train, n_val=400, n_test=400, background=BLOOD)
        sets = make_mixtures(src, ref.regions, list(ref.tissues), "phase3", phase, 30, "reads", seed=0)
        write_mixtures(d / "phase3.h5", sets, {"phase": "phase3"})
        _, nn = evaluate_nnls(d / "phase3.h5", d / "reference.tsv", 0.01, False)
        rows = {"NNLS (MethAtlas)": headline(nn)}
        meta = {"n_markers": record["n_markers"], "condition_number": record["condition_number"]}
        write(args, meta, rows, t0)
        train = {
            "max_epochs": args.epochs,
            "batch_size": 64,
            "lr": 0.002,
            "monitor": "val/mae",
            "patience": 8,
        }
        for variant, name in (("plain", "plain network"), ("sparse", "two-stage sparse network")):
            out = d / variant
            m = train_model(
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
                device=args.device,
                seed=0,
            )
            rows[name] = headline(m)
            # Written after every method, so a run cut short keeps what it finished.
            write(args, meta, rows, t0)


def write(args: argparse.Namespace, meta: dict, rows: dict, t0: float) -> None:
    result = {
        "data": "Moss 2018 atlas profiles (25 cell types), simulated individuals, "
        "phase-3 read-level mixtures at 30x",
        **meta,
        "n_train": args.n_train,
        "n_test": 400,
        "epochs": args.epochs,
        "rows": rows,
        "seconds": time.perf_counter() - t0,
    }
    out = ROOT / "benchmarks" / "results" / "deconv_moss.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2), flush=True)


if __name__ == "__main__":
    main()
