"""Assoc on real E. coli regulator -> gene links, measured as link-prediction users do.

Data: the demo tables in ``resources/assoc`` (PRECISE ``trn.csv``: 236 regulators, 2,568
genes, 7,897 links, both directions; descriptions from RefSeq GenBank, 150 bp upstream).
Known source (``exclude_known``): regulator -> gene links implied by PRECISE's iModulons
(``../shared/data/ecoli_expression``: an iModulon whose ``regulator`` names that gene's
regulator, the gene a member when |M| exceeds the iModulon's ``threshold``), i.e. what an
expression decomposition already recovers; the report's extra row is on held-out links
absent from it.

The split is the workflow's drawn links split with ``--seed`` (70/15/15 of pairs). The
baselines (popularity, kNN, ridge) and the network (the demo's grid point, with
``--variant`` changes) see the same split and features. Prints per-link MRR and Hits@10 in
both directions with paired Wilcoxon p-values of the network against each baseline, and
writes everything to ``--out``/results.json.

    PYTHONPATH=workflow/scripts nice -n 5 python benchmarks/bench_assoc_linkpred.py \\
        --shared ../shared/data --out /tmp/assoc_lp [--seed 42] [--variant name key=value ...]

``--collect`` gathers every run's results.json under ``--out`` into
benchmarks/results/bench_assoc_linkpred.json (the figures docs/assoc.md quotes).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.assoc import baselines as bl  # noqa: E402
from genomelab.assoc import data as D  # noqa: E402
from genomelab.assoc import features as Fe  # noqa: E402
from genomelab.assoc import summary as Su  # noqa: E402
from genomelab.assoc import training as T  # noqa: E402
from genomelab.config import schema_defaults  # noqa: E402
from genomelab.io.atomic import atomic_write_json  # noqa: E402

DEMO_MODEL = {"d_model": 32, "n_layers": 2, "link_dim": 32, "cold_start": "knn"}
DEMO_POINT = {"lr": 0.01, "batch_size": 512, "dropout": 0.1, "bridge_dim": 32}
DEMO_TRAIN = {"max_epochs": 60, "patience": 10, "monitor": "val/link_mrr_mean", "mode": "max"}


def imodulon_links(shared: Path, out: Path) -> Path:
    """(regulator, gene) pairs of iModulon membership, as a known links TSV."""
    table = shared / "ecoli_expression" / "imodulon_table.csv"
    with open(table) as fh:
        rows = list(csv.DictReader(fh))
    with gzip.open(shared / "ecoli_expression" / "M.csv.gz", "rt") as fh:
        reader = csv.reader(fh)
        names = next(reader)[1:]
        genes, weights = [], []
        for r in reader:
            genes.append(r[0])
            weights.append([float(x) for x in r[1:]])
    m = np.asarray(weights)
    col = {n: i for i, n in enumerate(names)}
    pairs = set()
    for row in rows:
        if not row["regulator"] or row["name"] not in col:
            continue
        members = np.flatnonzero(np.abs(m[:, col[row["name"]]]) > float(row["threshold"]))
        for reg in row["regulator"].replace("+", "/").split("/"):
            pairs.update((reg.strip(), genes[g]) for g in members)
    path = out / "imodulon_links.tsv"
    with open(path, "w") as fh:
        fh.write("source\ttarget\n")
        fh.writelines(f"{s}\t{t}\n" for s, t in sorted(pairs))
    logging.info("%d iModulon regulator -> gene pairs", len(pairs))
    return path


def prepare(shared: Path, out: Path, seed: int) -> Path:
    data_dir = out / f"data_seed{seed}"
    if not (data_dir / "splits.npz").exists():
        known = imodulon_links(shared, out)
        res = ROOT / "resources" / "assoc"
        words = schema_defaults("assoc.data")["confidence_words"]
        D.prepare_data(
            res / "links.tsv",
            res / "sources.tsv",
            res / "targets.tsv",
            data_dir,
            seed,
            confidence_words=words,
            exclude_known=known,
        )
        cfg = Fe.FeatureConfig.from_dict(schema_defaults("assoc.features"))
        Fe.build_features(data_dir, data_dir / "feat.npz", data_dir / "featurizer.npz", cfg, seed)
    return data_dir


def parse_variant(items: list[str]) -> tuple[str, dict, dict, dict]:
    """``name key=value ...``: keys of the model section, ``train.key`` or ``point.key``."""
    if not items:
        return "demo", {}, {}, {}
    model, train, point = {}, {}, {}
    for kv in items[1:]:
        key, value = kv.split("=", 1)
        target = train if key.startswith("train.") else point if key.startswith("point.") else model
        target[key.split(".", 1)[-1]] = json.loads(value)
    return items[0], model, train, point


def comparisons(data_dir: Path, run_dir: Path, name: str) -> list:
    """The summary's tables for one finished run, from its report and the split's baselines."""
    report = json.loads((run_dir / "training_report.json").read_text())
    base = json.loads((data_dir / "baselines.json").read_text())
    grid = {"best_run": name, "best": {"test": report["test"]}, "test_ranks": report["test_ranks"]}
    return Su.scheme_comparisons("links", grid, base)


def collect(out: Path) -> None:
    """Every run under ``out`` (tables rebuilt with the current summary code) into one JSON."""
    runs = {}
    for path in sorted(out.glob("seed*/results.json")):
        result = json.loads(path.read_text())
        comps = comparisons(out / f"data_seed{result['split_seed']}", path.parent, result["variant"])
        result["comparisons"] = [c.to_dict() for c in comps]
        result["verdicts"] = [f"{c.title}: {c.verdict()}" for c in comps]
        runs[path.parent.name] = result
    atomic_write_json(ROOT / "benchmarks" / "results" / "bench_assoc_linkpred.json", runs)
    print(markdown_table(runs))


def _cell(comp: dict, method: str) -> str:
    row = comp["rows"][method]
    hits = comp["primary"].replace("_mrr", "_hits@10")
    return f"{row[comp['primary']]:.3f} / {row[hits]:.3f}"


def markdown_table(runs: dict) -> str:
    """One row per run: network and best baseline (by MRR) per per-link table, with p."""
    head = "| run | " + " | ".join(("s->t", "t->s", "s->t not in known", "t->s not in known")) + " |"
    lines = [head, "|---" * 5 + "|"]
    for name, result in runs.items():
        cells = []
        for comp in [c for c in result["comparisons"] if c["primary"].endswith("link_mrr")]:
            net, *bases = comp["rows"]
            best = max(bases, key=lambda b: comp["rows"][b][comp["primary"]])
            test = comp.get("tests", {}).get(Su.pair_key(net, best), {})
            cells.append(
                f"{_cell(comp, net)} vs {best} {_cell(comp, best)}, p = {test.get('p_value', float('nan')):.2g}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--variant", nargs="*", default=[])
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--collect", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.collect:
        collect(args.out)
        return
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = prepare(args.shared, args.out, args.seed)
    base_path = data_dir / "baselines.json"
    if not base_path.exists():
        atomic_write_json(base_path, bl.run_baselines(data_dir, data_dir / "feat.npz", "links"))
    name, model_over, train_over, point_over = parse_variant(args.variant)
    model = {**schema_defaults("assoc.model"), **DEMO_MODEL, **model_over}
    train = {**schema_defaults("assoc.train"), **DEMO_TRAIN, **train_over, "seed": args.train_seed}
    point = {**DEMO_POINT, **point_over}
    run_dir = args.out / f"seed{args.seed}_{name}_t{args.train_seed}"
    t0 = time.time()
    report = T.train_run(
        data_dir, data_dir / "feat.npz", "links", model, train, point, run_dir, run_dir / "state", "cpu"
    )
    comps = comparisons(data_dir, run_dir, name)
    result = {
        "variant": name,
        "model": model,
        "train": train,
        "point": point,
        "split_seed": args.seed,
        "train_seed": args.train_seed,
        "seconds": time.time() - t0,
        "epochs_run": report["epochs_run"],
        "best_epoch": report["best_epoch"],
        "comparisons": [c.to_dict() for c in comps],
        "verdicts": [f"{c.title}: {c.verdict()}" for c in comps],
    }
    atomic_write_json(run_dir / "results.json", result)
    for c in comps:
        print(f"\n## {c.title}")
        for method, row in c.rows.items():
            cells = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
            test = c.tests.get(Su.pair_key(next(iter(c.rows)), method))
            p = f" p={test['p_value']:.2g} ({test['favours']})" if test else ""
            print(f"{method}: {cells}{p}")
        print("verdict:", c.verdict())


if __name__ == "__main__":
    main()
