"""Train on arrays, predict sequencing, on real TCGA glioma betas (issue 18).

Per fold (the workflow's ``group_kfold`` + ``fold_split``, regions chosen in-fold): a model
trained on the array betas (``train_model``, the workflow's config for its kind) classifies
its held-out samples twice, (1) as arrays (same platform: betas as region means, 150 calls)
and (2) as sequencing: each held-out sample's betas drawn as Binomial(depth, beta) reads per
probe CpG, written as a bedMethyl file over a regions BED that names each region by its probe
(``genomelab.tissue.sequencing``; synthetic coordinates), ingested to NPZ by ``ingest``'s
``convert_sample`` (``ingest.call`` sample and threshold), listed in a sample sheet and
classified by the tissue ``predict`` path (``predict_files``). Reports accuracy per route and
the exact McNemar test of each sequencing route against the same-platform predictions of the
same samples (pooled over folds).

``--kind`` picks the model: ``mlp``, ``attention`` or ``masked`` are trained by
``train_model`` (one network, ``--max-epochs``), ``reads`` (the read-profile model, the
default model of ``tissue.models``) is fitted as the ``tissue_reads`` rule fits it:
``fit_read_model`` on the fold's array betas with the schema's ``tissue.reads`` (plus any
``--model-config`` overrides) and ``tissue.calibration`` defaults, its exported ``model.pt``
(temperature and threshold included) loaded by ``TissuePredictor``/``predict_files`` as
``tissue_predict`` loads it. For ``reads`` the result also has ``fit_test_accuracy``, the
test accuracy ``fit_read_model`` itself reports for each fold, which the ``array`` route must
equal (the exported model and the prediction path score the same inputs). ``--poisson`` draws
Poisson(depth) reads per CpG instead of ``depth`` each, so depth varies across regions and
some get no reads (uncovered), as in real low-pass sequencing.

Usage (5 folds, niced on a shared 2-core machine; at all 843 probes with ``--regions 0``, the
workflow's default ``tissue.task.select_regions``, round 21: reads 15-29 s, masked 32-53 s;
at the default 200 regions: masked about 1.5 CPU-minutes, attention 1.2-1.6 minutes, reads
15-35 s, round 20):
    PYTHONPATH=workflow/scripts python benchmarks/bench_tissue_crossplatform.py \
        ../shared/data/methylation_tcga_glioma/glioma.idhwt.trainingData.csv.gz \
        --out benchmarks/results/tissue_crossplatform_idhwt --kind masked --depth 5
    PYTHONPATH=workflow/scripts python benchmarks/bench_tissue_crossplatform.py \
        ../shared/data/methylation_tcga_glioma/glioma.idhwt.trainingData.csv.gz \
        --out /tmp/xp_reads --kind reads --depth 5 --seed 42 [--depth 1] [--regions 0] [--poisson]

Round 21's results (the final read-profile code, the masked model's count channels):
``*_all843_depth{5,1}_round21_seed<seed>.json`` and ``masked_depth5_round21_seed42.json`` (200
regions). Round 20's: ``benchmarks/results/tissue_crossplatform_idhwt/*_round20_seed<seed>.json``
(``reads_depth{5,1}``: 200 regions; ``reads_all843_*``: ``--regions 0``; ``*_poisson*``:
``--poisson``; ``attention_depth{5,1}``: ``--kind attention --model-config '{"hidden": [128,
64], "dim": 16}'``), each the ``crossplatform.json`` of one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from genomelab.ingest.builds import genome_build
from genomelab.ingest.convert import IngestConfig, convert_sample
from genomelab.ingest.regions import read_regions
from genomelab.predict.tissue import TissuePredictor, predict_files
from genomelab.report.stats import mcnemar_predictions
from genomelab.splits import fold_split, group_kfold
from genomelab.tissue.calibration import CalibrationConfig
from genomelab.tissue.kinds import FILE_LEVEL
from genomelab.tissue.sequencing import draw_counts, write_bedmethyl, write_probe_regions
from genomelab.tissue.task import select_regions
from genomelab.tissue.training import fit_read_model, train_model

sys.path.insert(0, str(Path(__file__).parent))
from bench_tissue_sparse import load, task_of  # noqa: E402

CALLS = ("sample", "threshold")
# Not a file route: the drawn counts fed to the model as region means (methylated / reads) at
# their depth. The ingest NPZ keeps per-region counts (``methylated``/``coverage``) and the
# tissue features read them, so the file routes should match it (``agree_with_counts``);
# before the counts were kept, 5 reads at a probe's single CpG became one call.
COUNTS = "counts_kept"


def sequencing_calls(
    data,
    betas,
    probe_ids,
    test,
    pos,
    bed,
    depth,
    seed,
    work: Path,
    predictor_path: Path,
    poisson: bool = False,
):
    """Predicted class index [n_test] per ingest call mode for the held-out samples as bedMethyl
    (``betas`` [n, all probes]: every probe of the table is sequenced, the model picks its own;
    ``poisson``: Poisson(``depth``) reads per CpG, so some CpGs get none)."""
    regions = read_regions(bed, genome_build("hg38"), 150)
    rng = np.random.default_rng(seed)
    files = {}
    col = {p: j for j, p in enumerate(probe_ids)}
    cols = np.array([col[r] for r in data.regions])
    kept = np.full((len(test), len(cols)), np.nan, np.float32), np.zeros((len(test), len(cols)), np.float32)
    for j, i in enumerate(test):
        meth, total = draw_counts(betas[i], depth, rng, poisson)
        files[i] = write_bedmethyl(work / f"{data.samples[i]}.bed", pos, meth, total)
        with np.errstate(invalid="ignore", divide="ignore"):
            kept[0][j] = np.where(total[cols] > 0, meth[cols] / total[cols], np.nan)
        kept[1][j] = total[cols]
    out = {COUNTS: TissuePredictor.load(predictor_path).predict_arrays(*kept)["ensemble"].argmax(1)}
    for call in CALLS:
        cfg = IngestConfig(call=call)
        sheet = ["sample\tfile\ttissue"]
        for i in test:
            npz = work / f"{call}_{data.samples[i]}.npz"
            convert_sample(files[i], "", str(data.samples[i]), regions, cfg, npz, seed=seed)
            sheet.append(f"{data.samples[i]}\t{npz.name}\tGlioma")
        (work / f"{call}.tsv").write_text("\n".join(sheet) + "\n")
        pred = predict_files(
            predictor_path, work / f"{call}.tsv", work / f"{call}_p.tsv", work / f"{call}_p.json", 0.9, 0.0
        )
        assert pred.samples == [str(s) for s in data.samples[test]]
        out[call] = np.searchsorted(data.classes, pred.call)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--kind",
        default="masked",
        choices=FILE_LEVEL,
        help="the model: reads is fitted as tissue_reads fits it, the others trained by train_model",
    )
    ap.add_argument("--model-config", default="{}", help="JSON overrides of the model's config")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--regions", type=int, default=200)
    ap.add_argument("--depth", type=float, default=5)
    ap.add_argument(
        "--poisson", action="store_true", help="Poisson(depth) reads per CpG, not depth each (some get none)"
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-epochs", type=int, default=100)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    samples, labels, probes, betas = load(args.csv)
    folds = group_kfold(samples, args.folds, seed=args.seed, stratify=labels)
    train_cfg = {"max_epochs": args.max_epochs, "batch_size": 32, "lr": 0.001, "patience": 15}
    routes = ("array", *CALLS, COUNTS)
    pooled = {r: {"sample": [], "true": [], "pred": []} for r in routes}
    per_fold = {r: [] for r in routes}
    fit_test: list[float] = []  # reads: fit_read_model's own test accuracy per fold
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Every probe of the table in the BED: the model's in-fold regions are found by name.
        pos = write_probe_regions(probes, work / "regions.bed")
        for k in range(args.folds):
            split = fold_split(folds, k, samples, 0.25, args.seed, labels)
            data = select_regions(task_of(samples, labels, probes, betas, split), args.regions)
            model_dir = work / f"fold{k}"
            cfg = json.loads(args.model_config)
            if args.kind == "reads":
                # As the tissue_reads rule: no sparsity grid (not read here), the run's seed.
                fitted = fit_read_model(
                    data, cfg, model_dir, CalibrationConfig(), None, grid_seed=args.seed, seed=args.seed
                )
                fit_test.append(float(fitted["accuracy"]))
            else:
                train_model(
                    args.kind, data, cfg, train_cfg, work / "state" / str(k), model_dir, "cpu", args.seed
                )
            test = data.index("test")
            predictor = TissuePredictor.load(model_dir / "model.pt")
            same = predictor.predict_arrays(data.means[test], data.coverage[test].astype(np.float32))
            preds = {"array": same["ensemble"].argmax(1)}
            fold_work = work / f"seq{k}"
            fold_work.mkdir()
            preds.update(
                sequencing_calls(
                    data,
                    betas,
                    probes,
                    test,
                    pos,
                    work / "regions.bed",
                    args.depth,
                    args.seed + k,
                    fold_work,
                    model_dir / "model.pt",
                    args.poisson,
                )
            )
            for r in routes:
                pooled[r]["sample"] += [str(s) for s in data.samples[test]]
                pooled[r]["true"] += data.y[test].tolist()
                pooled[r]["pred"] += np.asarray(preds[r]).tolist()
                per_fold[r].append(float(np.mean(preds[r] == data.y[test])))
            print(f"fold {k}: " + ", ".join(f"{r} {per_fold[r][-1]:.3f}" for r in routes), flush=True)
    result = {
        "args": {k: str(v) for k, v in vars(args).items()},
        **({"fit_test_accuracy": fit_test} if fit_test else {}),
        "seconds": time.perf_counter() - t0,
        "n_samples": len(samples),
        "accuracy": {r: float(np.mean(np.equal(pooled[r]["true"], pooled[r]["pred"]))) for r in routes},
        "accuracy_per_fold": per_fold,
        "agree_with_counts": {
            r: float(np.mean(np.equal(pooled[r]["pred"], pooled[COUNTS]["pred"]))) for r in CALLS
        },
        "vs_array": {
            r: {"p_value": t.p_value, "favours": t.favours, **t.details}
            for r in (*CALLS, COUNTS)
            for t in [mcnemar_predictions(pooled[r], pooled["array"])]
        },
    }
    (args.out / "crossplatform.json").write_text(json.dumps(result, indent=2))
    print(
        json.dumps({k: result[k] for k in ("accuracy", "agree_with_counts", "vs_array", "seconds")}, indent=2)
    )
    if fit_test and not np.allclose(fit_test, per_fold["array"]):
        # The exported model read back by the prediction path must score the test samples as
        # the fit did; anything else is a bug in the export or the prediction path.
        raise RuntimeError(
            f"fit_read_model's test accuracy per fold {fit_test} differs from the prediction path's "
            f"on the same array inputs {per_fold['array']} (results written all the same)"
        )


if __name__ == "__main__":
    main()
