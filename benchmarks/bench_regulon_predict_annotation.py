"""A real annotation-channel network applied to new input the way users apply it: the NCBI
GFF3 (or the run's gene table) through ``genomelab predict regulon --gff``, on each held-out
block of E. coli, against what training predicted there.

    PYTHONPATH=workflow/scripts nice -n 5 python benchmarks/bench_regulon_predict_annotation.py \
        [--epochs 4] [--shared ../shared/data] [--out /tmp/bench_regulon_predict_annotation]

Trains the ``annot`` variant of ``bench_regulon_operons.py`` (same data, config, fixed blocks,
seed 0, one thread) unless ``--out`` already holds it, then for every test block: predicts
the span training tiled with windows from the genome FASTA with the GFF3 (``GCF_000005845.2_ASM584v2_genomic.gff.gz``) and with the
run's ``data/genes.tsv``, and reports the largest difference from the run's
``model/predictions.h5`` per head, the channel differences (bp), and the per-bp pooled-strand
operon AUROC of the predicted track on the test blocks (the ``CNN track`` figure).

The pair readout saved with the model (``extra["operon_readout"]``): predict's pair
probabilities (``operon_pairs.tsv``'s ``p_operon``) on the test pairs the evaluation scores,
their largest difference from the evaluation's, the pair AUROC and the per-bp AUROC of the
readout track (``operon_readout.*.bedGraph``) through predict, next to the run's own
``metrics.json`` figures for the readout and the distance LL rule. A run in ``--out`` made
before the readout was saved is retrained (``--retrain`` forces it). Writes
``benchmarks/results/bench_regulon_predict_annotation_e<epochs>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from bench_regulon_operons import config  # noqa: E402
from genomelab.predict.regulon import RegulonPredictor, read_genes_for_prediction  # noqa: E402
from genomelab.regulon.cli import run  # noqa: E402
from genomelab.regulon.data import read_genes  # noqa: E402
from genomelab.regulon.evaluate import set_readout  # noqa: E402
from genomelab.regulon.features import annotation_track  # noqa: E402
from genomelab.regulon.metrics import binary_metrics  # noqa: E402
from genomelab.regulon.operons import COMBINED, DISTANCE_LL, OperonEvaluation  # noqa: E402
from genomelab.regulon.targets import TargetData  # noqa: E402
from genomelab.regulon.tracks import read_readout, read_tracks  # noqa: E402
from genomelab.runtime import setup_logging  # noqa: E402

GFF = "ecoli_genome/GCF_000005845.2_ASM584v2_genomic.gff.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default="/tmp/bench_regulon_predict_annotation")
    parser.add_argument("--retrain", action="store_true", help="train again even if --out holds a run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out, shared = Path(args.out), Path(args.shared)
    setup_logging(out / "bench.log")
    genome = ROOT / "resources" / "regulon" / "genome.fna.gz"
    t0 = time.perf_counter()
    predictions = out / "model" / "predictions.h5"
    trained = args.retrain or not predictions.is_file() or read_readout(predictions) is None
    if trained:
        cfg = config("annot", args.epochs, shared)
        run(str(ROOT / "resources" / "regulon" / "dump"), str(genome), out, cfg, device="cpu", seed=0)
    # None: the run in --out was reused (its whole chain took 124 s on one thread here).
    t_train = round(time.perf_counter() - t0, 1) if trained else None
    data = TargetData(out / "data" / "targets.h5")
    saved = read_tracks(out / "model" / "predictions.h5", data)["model"]
    predictor = RegulonPredictor(out / "model" / "best.pt")
    sources = {"gff3": shared / GFF, "genes.tsv": out / "data" / "genes.tsv"}
    result = {"epochs": args.epochs, "seed": 0, "chain_seconds": t_train, "sources": {}}
    _, operon_bp = data.bp_tracks()
    ev = OperonEvaluation(data, read_genes(out / "data" / "genes.tsv"))
    set_readout(ev, predictions, read_tracks(predictions, data))
    evaluated = ev.pair_probabilities("test")
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    result["evaluation"] = {
        name: {k: metrics[name][k] for k in ("pair_auroc", "pair_n", "operon_bp_auroc", "operon_bp_n")}
        for name in (COMBINED, DISTANCE_LL)
    } | {
        "CNN track": {k: metrics["CNN (3 heads, RC-averaged)"][k] for k in ("pair_auroc", "operon_bp_auroc")}
    }
    summary = json.loads((out / "summary.json").read_text())
    result["evaluation_tests"] = {
        c["primary"]: {
            k: {"p": t["p_value"], "favours": t["favours"]} for k, t in c["tests"].items() if COMBINED in k
        }
        for c in summary["comparisons"]
        if c["primary"] in ("pair_auroc", "operon_bp_auroc")
    }
    for name, path in sources.items():
        genes = read_genes_for_prediction(path, data.contig)
        channel_diff = int(
            (annotation_track(genes, data.region_start, data.region_end) != data.annotation).sum()
        )
        max_diff = dict.fromkeys(saved, 0.0)
        scores, truth, readout_bp, pairs = [], [], [], []
        t1 = time.perf_counter()
        for _, w in data.split_windows("test").groupby("block"):
            # The block's windows as training tiled them (a block's tail past its last whole
            # window is not predicted in training).
            start, end = int(w["start"].min()), int(w["start"].max()) + data.config.window_bp
            tracks = predictor.predict_fasta(genome, f"{data.contig}:{start}-{end}", path)
            for head, step in tracks.steps.items():
                a, z = (start - data.region_start) // step, (end - data.region_start) // step
                got, want = tracks.tracks[head], saved[head][:, a:z]
                max_diff[head] = max(max_diff[head], float(np.nanmax(np.abs(got - want))))
            r = tracks.steps["operon"]
            pooled = np.repeat(np.fmax(*tracks.tracks["operon"]), r)
            scores.append(pooled)
            readout_bp.append(np.repeat(np.fmax(*tracks.readout), r))
            pairs.append(tracks.pairs)
            lo = start - data.region_start
            truth.append(operon_bp[:, lo : lo + pooled.size].astype(bool).any(axis=0))
        auroc = binary_metrics(np.concatenate(scores), np.concatenate(truth))
        readout_auroc = binary_metrics(np.concatenate(readout_bp), np.concatenate(truth))
        # The evaluation's test pairs, found in predict's table by their genes' ids.
        got = evaluated.merge(
            pd.concat(pairs), left_on=["upstream", "downstream"], right_on=["upstream_id", "downstream_id"]
        )
        pair_auroc = binary_metrics(got["p_operon"].to_numpy(), got["same_operon"].to_numpy(float))
        result["sources"][name] = {
            "path": str(path),
            "n_genes": len(genes),
            "channel_bp_differing_from_training": channel_diff,
            "max_abs_diff_vs_training": max_diff,
            "predicted_operon_bp_auroc_test": auroc["auroc"],
            "readout_bp_auroc_test": readout_auroc["auroc"],
            "readout_pair_auroc_test": pair_auroc["auroc"],
            "n_test_pairs_evaluated": len(evaluated),
            "n_test_pairs_found_in_predict": int(got["p_operon"].notna().sum()),
            "max_abs_diff_pair_probability": float(np.abs(got["p_operon"] - got["probability"]).max()),
            "n_bp": auroc["n"],
            "predict_seconds": round(time.perf_counter() - t1, 1),
        }
    print(json.dumps(result, indent=1))
    dest = ROOT / "benchmarks" / "results" / f"bench_regulon_predict_annotation_e{args.epochs}.json"
    dest.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
