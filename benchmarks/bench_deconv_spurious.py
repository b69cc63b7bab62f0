"""Issue 19: where the two-stage sparse model's spurious calls come from, and decision rules
that might halve them without more missed calls than NNLS.

Stage 1 (skipped with --reuse when the raw file exists) follows bench_deconv_recall.py: the
Moss 2018 atlas (../shared/data, read, never copied), individuals simulated around it,
split by individual, markers chosen on validation, phase-3 training mixtures, the sparse
network trained from scratch. Its raw outputs (NNLS, proportions, presence probabilities)
are saved for the phase-3 validation mixtures (the calibration set) and the independent test
sets at 30x and 10x (test-split individuals), with the references and the sets' betas.

Stage 2 (seconds) breaks the spurious calls down by tissue, blood vs solid, and what kept
them (presence head or NNLS guard), then scores decision rules, every one set on the
validation mixtures only, against NNLS on the same test mixtures with paired Wilcoxon tests.

Writes benchmarks/results/deconv_spurious.json from deconv_spurious_raw.npz (--raw X_raw.npz: X.json).
Not a test.

    nice -n 5 python benchmarks/bench_deconv_spurious.py [--reuse] [--epochs 25] [--n-train 2000]
        [--log-prior-input] [--monitor val/loss] [--sparsity-weight 0.01] [--seed 0]
        [--sparsity-below-nnls 1.0] [--samples-per-tissue 4] [--calibrate-choice highest]
        [--background-alpha 2.0]
    python benchmarks/bench_deconv_spurious.py --table benchmarks/results/deconv_spurious_X.json ...
        [--rules current "mask recalibrated"]   # markdown rows of finished runs

Stage 1 also saves the training mixtures' presence outputs and the training history, which
``bench_deconv_presence.py`` reads (presence-head AUC on training, validation, independent).
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

RAW = ROOT / "benchmarks" / "results" / "deconv_spurious_raw.npz"
ATLAS = Path("/work/shared/data/methylation_atlas/meth_atlas_moss2018/reference_atlas.csv.gz")


def train_and_dump(args) -> None:
    """Stage 1 (see the module docstring)."""
    from genomelab.deconv import io as dio
    from genomelab.deconv.independent import write_independent
    from genomelab.deconv.mixtures import (
        PhaseConfig,
        coverage_of,
        make_mixtures,
        read_mixtures,
        write_mixtures,
    )
    from genomelab.deconv.model import load_model
    from genomelab.deconv.nnls import deconvolve_nnls
    from genomelab.deconv.reference import ReferenceConfig, Validation, build_references
    from genomelab.deconv.simulate import SimulationConfig, simulate_demo
    from genomelab.deconv.tissues import looks_like_blood
    from genomelab.deconv.training import train_model
    from genomelab.splits import group_split

    t0 = time.perf_counter()
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
        phase3 = {
            "n_train": args.n_train,
            "n_val": 400,
            "n_test": 400,
            "background": blood,
            "max_solid": args.max_solid,
            "background_alpha": args.background_alpha,
        }
        train_coverage = coverage_of(
            args.train_coverage[0] if len(args.train_coverage) == 1 else args.train_coverage
        )
        ref, record, ref_all = build_references(
            src.subset(src.splits == "train"),
            ReferenceConfig(atlas=str(ATLAS)),
            atlas,
            Validation(src, phase3, train_coverage, args.seed),
        )
        dio.write_table(d / "reference.tsv", ref.profiles, ref.regions, ref.tissues)
        dio.write_table(d / "all.tsv", ref_all.profiles, ref_all.regions, ref_all.tissues)
        print(f"[{time.perf_counter() - t0:.0f} s] reference: {record['n_markers']} regions", flush=True)
        sets = make_mixtures(
            src,
            ref.regions,
            list(ref.tissues),
            "phase3",
            PhaseConfig(**phase3),
            train_coverage,
            "reads",
            args.seed,
        )
        write_mixtures(d / "phase3.h5", sets, {"phase": "phase3"})
        train = {
            "max_epochs": args.epochs,
            "batch_size": 64,
            "lr": 0.002,
            "monitor": args.monitor,
            "patience": 8,
        }
        out = d / "sparse"
        train_model(
            d / "phase3.h5",
            d / "reference.tsv",
            "sparse",
            {
                "hidden": [256, 128],
                "presence_from_nnls": args.presence_from_nnls,
                "log_prior_input": args.log_prior_input,
                "prior_weight_floor": args.prior_weight_floor,
                "loss_weights": {"sparsity": args.sparsity_weight},
                "sparsity_below_nnls": args.sparsity_below_nnls,
                "calibrate_choice": args.calibrate_choice,
            },
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
        print(f"[{time.perf_counter() - t0:.0f} s] trained", flush=True)
        model, _ = load_model(out / "model.pt", ref.regions, ref.tissues)
        pos = {r: i for i, r in enumerate(ref_all.regions.tolist())}
        cols = np.asarray([pos[r] for r in ref.regions.tolist()])
        dump: dict[str, np.ndarray] = {
            "tissues": np.asarray(ref.tissues, dtype=str),
            "blood": np.asarray(blood, dtype=str),
            "thresholds": model.thresholds.numpy().astype(np.float64),
            "guard": np.asarray(model.cfg.nnls_guard),
            "reference": ref.profiles,
        }
        named = {"val": (sets["val"].beta, sets["val"].proportions)}
        for cov in args.coverages:
            h5 = d / f"ind_{cov:g}.h5"
            write_independent(
                d / "sources.h5", d / "all.tsv", blood, {"n_mixtures": args.n_independent}, cov, args.seed, h5
            )
            ms = read_mixtures(h5, "test")
            named[f"ind{cov:g}"] = (ms.beta[:, cols], ms.proportions)
        for name, (beta, props) in named.items():
            raw = model.raw_outputs(torch.tensor(beta, dtype=torch.float32))
            for k, v in raw.items():
                dump[f"{name}_{k}"] = v.double().numpy()
            # The baseline is MethAtlas's plain NNLS whatever prior the network uses.
            dump[f"{name}_baseline"] = deconvolve_nnls(ref.profiles, beta.astype(np.float64)).proportions
            dump[f"{name}_true"] = np.asarray(props, dtype=np.float64)
            dump[f"{name}_beta"] = np.asarray(beta, dtype=np.float32)
        # For bench_deconv_presence.py: the training set's presence outputs (keys that do not
        # end in "_true", so the study below skips them) and the training history.
        fit = model.raw_outputs(torch.tensor(sets["train"].beta, dtype=torch.float32))
        dump["fitset_presence"] = fit["presence"].double().numpy()
        dump["fitset_nnls"] = fit["nnls"].double().numpy()
        dump["fitset_truth"] = np.asarray(sets["train"].proportions, dtype=np.float64)
        dump["metrics_json"] = np.asarray((out / "metrics.json").read_text())
        dump["args_json"] = np.asarray(json.dumps(vars(args), default=str))
        args.raw.parent.mkdir(exist_ok=True)
        np.savez_compressed(args.raw, **dump)
        print(f"[{time.perf_counter() - t0:.0f} s] raw outputs saved to {args.raw}", flush=True)


def breakdown(raw: dict, name: str, final: np.ndarray, call: float) -> dict:
    """Where the spurious calls of ``final`` [N, T] on set ``name`` come from."""
    true, nnls, pres = raw[f"{name}_true"], raw[f"{name}_nnls"], raw[f"{name}_presence"]
    tissues = raw["tissues"].tolist()
    blood = np.isin(raw["tissues"], raw["blood"])
    spur = (true == 0) & (final >= call)
    guard_kept = spur & (nnls >= float(raw["guard"]))
    head_kept = spur & ~guard_kept
    n = len(true)
    by_tissue = {t: int(spur[:, j].sum()) for j, t in enumerate(tissues) if spur[:, j].any()}
    vals = final[spur]
    return {
        "spurious_per_sample": float(spur.sum() / n),
        "blood_per_sample": float(spur[:, blood].sum() / n),
        "solid_per_sample": float(spur[:, ~blood].sum() / n),
        "kept_by_nnls_guard_per_sample": float(guard_kept.sum() / n),
        "kept_by_presence_head_per_sample": float(head_kept.sum() / n),
        "nnls_spurious_per_sample": float(((true == 0) & (nnls >= call)).sum() / n),
        "by_tissue": dict(sorted(by_tissue.items(), key=lambda kv: -kv[1])),
        "predicted_fraction_quantiles": np.quantile(vals, [0.1, 0.5, 0.9]).tolist() if len(vals) else [],
        "presence_of_spurious_quantiles": np.quantile(pres[spur], [0.1, 0.5, 0.9]).tolist()
        if len(vals)
        else [],
        "absent_blood_share_of_absent": float(((true == 0) & blood).sum() / max((true == 0).sum(), 1)),
    }


def cut(p: np.ndarray, score: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``p`` [N, T] zeroed where ``score`` < the tissue's cut ``c`` [T], renormalised."""
    q = np.where(score >= c[None, :], p, 0.0)
    s = q.sum(1, keepdims=True)
    return np.where(s > 0, q / np.maximum(s, 1e-12), p)


def calibrate_cuts(
    score: np.ndarray, pred: np.ndarray, true: np.ndarray, nnls: np.ndarray, grid, call: float
):
    """Per tissue the highest cut on ``score`` whose missed calls stay <= NNLS's (same set)."""
    target = ((true >= call) & (nnls < call / 2)).sum(0)
    c = np.zeros(true.shape[1])
    for j in range(true.shape[1]):
        for g in grid:
            missed = ((true[:, j] >= call) & ((pred[:, j] < call / 2) | (score[:, j] < g))).sum()
            if missed > target[j]:
                break
            c[j] = g
    return c


def z_scores(raw: dict, name: str, q: np.ndarray) -> np.ndarray:
    """q / its standard error under the linear model (noise from the sample's residuals) [N, T]."""
    A, b = raw["reference"], raw[f"{name}_beta"].astype(np.float64)
    res = b - q @ A.T
    sig2 = np.nansum(res**2, 1) / np.maximum(np.isfinite(res).sum(1) - A.shape[1], 1)
    se = np.sqrt(sig2[:, None] * np.diag(np.linalg.pinv(A.T @ A))[None, :])
    return q / se


def weighted_nnls(raw: dict, name: str, eps: float) -> np.ndarray:
    """NNLS reweighted twice by 1 / sqrt(m (1 - m) + eps) at the fitted levels m [N, T]."""
    from scipy.optimize import nnls

    A, out = raw["reference"], []
    for b in raw[f"{name}_beta"].astype(np.float64):
        ok = np.isfinite(b)
        q, _ = nnls(A[ok], b[ok])
        for _ in range(2):
            m = np.clip(A[ok] @ q, 0, 1)
            w = 1 / np.sqrt(m * (1 - m) + eps)
            q, _ = nnls(A[ok] * w[:, None], b[ok] * w)
        out.append(q / max(q.sum(), 1e-12))
    return np.asarray(out)


def refit(raw: dict, name: str, kept: np.ndarray) -> np.ndarray:
    """NNLS of each mixture on its kept tissues only (``kept`` bool [N, T]), scaled to 1."""
    from scipy.optimize import nnls

    A, out = raw["reference"], np.zeros(kept.shape)
    for i, b in enumerate(raw[f"{name}_beta"].astype(np.float64)):
        ok, cols = np.isfinite(b), np.flatnonzero(kept[i])
        q, _ = nnls(A[np.ix_(ok, cols)], b[ok])
        out[i, cols] = q / max(q.sum(), 1e-12)
    return out


def decoupled(raw: dict, name: str, thresholds: np.ndarray, refit_on_support: bool) -> np.ndarray:
    """Issue 19 (c): the presence head decides the support (presence >= its tissue's threshold,
    or NNLS >= the guard; nothing kept = the most likely tissue), the proportions come from
    NNLS: refit on the support (``refit_on_support``) or NNLS's own masked and renormalised."""
    from genomelab.deconv.calibrate import support_mask
    from genomelab.deconv.nnls import nnls_torch

    nnls = raw[f"{name}_nnls"]
    keep = support_mask(raw[f"{name}_presence"], thresholds, nnls, float(raw["guard"]))
    if refit_on_support:
        x = nnls_torch(
            torch.tensor(raw["reference"]), torch.tensor(raw[f"{name}_beta"]), support=torch.tensor(keep)
        ).numpy()
    else:
        x = nnls * keep
    return x / np.maximum(x.sum(1, keepdims=True), 1e-12)


def decoupled_rules(raw: dict, names: list[str], call: float) -> dict:
    """Rule (c) with and without the refit, thresholds calibrated per tissue on validation
    against NNLS's missed calls (the package's calibrate_thresholds) for each final."""
    from genomelab.deconv.calibrate import calibrate_thresholds

    out, records = {}, {}
    for refit_on in (True, False):
        label = "decoupled: presence support, " + ("NNLS refit on it" if refit_on else "NNLS masked")
        th, rec = calibrate_thresholds(
            raw["val_proportions"],
            raw["val_presence"],
            raw["val_nnls"],
            raw["val_true"],
            call,
            float(raw["guard"]),
            per_tissue=True,
            final_fn=lambda t, r=refit_on: decoupled(raw, "val", t, r),
        )
        out[label] = scored(raw, {n: decoupled(raw, n, th, refit_on) for n in names}, call)
        records[label] = {
            k: rec[k]
            for k in (
                "thresholds",
                "nnls_missed",
                "model_missed",
                "nnls_spurious",
                "model_spurious",
                "grid",
                "grid_missed",
                "grid_spurious",
            )
        }
    return out, records


def baseline(raw: dict, name: str) -> np.ndarray:
    """Plain NNLS on set ``name`` (raw files before --prior-weight-floor: the model's prior,
    which was plain NNLS)."""
    return raw.get(f"{name}_baseline", raw[f"{name}_nnls"])


def scored(raw: dict, preds: dict[str, np.ndarray], call: float) -> dict:
    """Per set: spurious/missed/MAE of the rule and NNLS, the ratio, paired Wilcoxon p-values."""
    from genomelab.deconv.metrics import per_sample
    from genomelab.report.stats import wilcoxon_signed_rank

    out = {}
    for name, f in preds.items():
        true, nnls = raw[f"{name}_true"], baseline(raw, name)
        a, b = per_sample(true, f, call), per_sample(true, nnls, call)
        row = {}
        for key, obs in (("spurious", "spurious"), ("missed", "missed"), ("mae", "abs_error")):
            test = wilcoxon_signed_rank(a[obs], b[obs], higher_is_better=False)
            row[key] = float(a[obs].mean())
            row[f"nnls_{key}"] = float(b[obs].mean())
            row[f"p_{key}"] = test.p_value
            row[f"favours_{key}"] = test.favours
        row["spurious_ratio"] = row["spurious"] / max(row["nnls_spurious"], 1e-12)
        out[name] = row
    return out


def study(raw: dict, call: float) -> dict:
    """Stage 2 (see the module docstring)."""
    from genomelab.deconv.calibrate import apply_mask

    names = [k[: -len("_true")] for k in raw if k.endswith("_true")]
    tests = [n for n in names if n != "val"]

    def final(name: str) -> np.ndarray:
        return apply_mask(
            raw[f"{name}_proportions"],
            raw[f"{name}_presence"],
            raw["thresholds"],
            raw[f"{name}_nnls"],
            float(raw["guard"]),
        )

    out: dict = {"breakdown": {n: breakdown(raw, n, final(n), call) for n in names}, "rules": {}}
    fin = {n: final(n) for n in names}
    out["rules"]["current (calibrated presence mask, NNLS guard)"] = scored(raw, fin, call)
    grid = np.r_[0.0, np.arange(0.005, 0.05, 0.0005)]
    tv, nv = raw["val_true"], baseline(raw, "val")
    if "val_baseline" in raw:
        out["rules"]["the network's prior alone (weighted NNLS + offset)"] = scored(
            raw, {n: raw[f"{n}_nnls"] for n in names}, call
        )
    c = calibrate_cuts(fin["val"], fin["val"], tv, nv, grid, call)
    out["rules"]["per-tissue cut on the final proportion (val)"] = scored(
        raw, {n: cut(fin[n], fin[n], c) for n in names}, call
    )
    out["rules"]["per-tissue cut (val), then NNLS refit on the kept tissues"] = scored(
        raw, {n: refit(raw, n, cut(fin[n], fin[n], c) > 0) for n in names}, call
    )
    zgrid = np.arange(0.0, 20.0, 0.25)
    for label, base in (("final proportion", fin), ("NNLS", {n: raw[f"{n}_nnls"] for n in names})):
        z = {n: z_scores(raw, n, base[n]) for n in names}
        cz = calibrate_cuts(z["val"], fin["val"], tv, nv, zgrid, call)
        out["rules"][f"per-tissue z-test of the {label} (val)"] = scored(
            raw, {n: cut(fin[n], z[n], cz) for n in names}, call
        )
    # Not a method: cuts calibrated on each test set itself, the best any per-tissue cut could do.
    bound = {}
    for n in tests:
        cn = calibrate_cuts(fin[n], fin[n], raw[f"{n}_true"], baseline(raw, n), grid, call)
        bound[n] = cut(fin[n], fin[n], cn)
    out["rules"]["bound: per-tissue cut calibrated on the test set itself"] = scored(raw, bound, call)
    for eps in (0.03, 0.1):
        out["rules"][f"weighted NNLS (binomial weights, eps {eps})"] = scored(
            raw, {n: weighted_nnls(raw, n, eps) for n in names}, call
        )
    # The same mask, thresholds recalibrated with the other choice (model.calibrate_choice),
    # and no mask at all (the proportion head's own shares).
    from genomelab.deconv.calibrate import calibrate_thresholds

    guard = float(raw["guard"])
    for choice in ("highest", "fewest_spurious"):
        th, _ = calibrate_thresholds(
            raw["val_proportions"], raw["val_presence"], nv, tv, call, guard, choice=choice
        )
        out["rules"][f"mask recalibrated, choice {choice}"] = scored(
            raw,
            {
                n: apply_mask(raw[f"{n}_proportions"], raw[f"{n}_presence"], th, raw[f"{n}_nnls"], guard)
                for n in names
            },
            call,
        )
    out["rules"]["no mask (proportion head alone)"] = scored(
        raw, {n: raw[f"{n}_proportions"] for n in names}, call
    )
    dec, out["decoupled_calibration"] = decoupled_rules(raw, names, call)
    out["rules"].update(dec)
    out["summary"] = {
        rule: {
            n: {k: round(v[k], 4) for k in ("spurious_ratio", "missed", "nnls_missed", "mae", "nnls_mae")}
            for n, v in sets.items()
        }
        for rule, sets in out["rules"].items()
    }
    return out


def table(paths: list[Path], rules: list[str]) -> str:
    """Markdown rows, one per result file x rule (rules whose names start with one of
    ``rules``): per independent set spurious (ratio to NNLS, paired p), missed and MAE (NNLS's
    in brackets, paired p, and "trails"/"beats" where p < 0.05)."""
    sets = ("ind30", "ind10")
    head = " | ".join(f"{s} spurious vs NNLS | {s} missed (NNLS) | {s} MAE (NNLS)" for s in sets)
    lines = [f"| run | rule | {head} |", "|---|---|" + "---|" * 3 * len(sets)]

    def verdict(v: dict, key: str) -> str:
        if v[f"p_{key}"] >= 0.05 or v[f"favours_{key}"] == "neither":
            return "tie"
        won = v[f"favours_{key}"] == "model"
        # The signed-rank test follows the per-mixture differences' ranks, which can side
        # against the mean; say so rather than print "beats" next to a larger mean.
        if won != (v[key] < v[f"nnls_{key}"]):
            return ("beats" if won else "trails") + " (ranks; mean the other way)"
        return "beats" if won else "trails"

    for path in paths:
        res = json.loads(path.read_text())
        for rule, by_set in res["rules"].items():
            if not any(rule.startswith(r) for r in rules):
                continue
            cells = []
            for name in sets:
                v = by_set[name]
                cells += [
                    f"{v['spurious_ratio']:.2f}x (p {v['p_spurious']:.1g})",
                    f"{v['missed']:.3f} ({v['nnls_missed']:.3f}) {verdict(v, 'missed')}, p {v['p_missed']:.2g}",
                    f"{v['mae']:.5f} ({v['nnls_mae']:.5f}) {verdict(v, 'mae')}, p {v['p_mae']:.2g}",
                ]
            run = path.stem.replace("deconv_spurious_", "")
            lines.append(f"| {run} | {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--table", type=Path, nargs="+", help="only print a table of these result JSONs")
    p.add_argument("--rules", nargs="+", default=["current", "mask recalibrated", "no mask", "decoupled"])
    p.add_argument("--reuse", action="store_true", help="reuse the raw outputs of an earlier stage 1")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-independent", type=int, default=300)
    p.add_argument("--coverages", type=float, nargs="+", default=[30.0, 10.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples-per-tissue", type=int, default=4, help="simulated individuals per cell type")
    p.add_argument(
        "--background-alpha", type=float, default=2.0, help="phase-3 training law: Dirichlet over blood"
    )
    p.add_argument("--max-solid", type=int, default=3, help="phase-3 training law: most solid tissues")
    p.add_argument("--presence-from-nnls", action="store_true", help="model.presence_from_nnls")
    p.add_argument("--monitor", default="val/mae", help="train.monitor (best epoch, early stopping)")
    p.add_argument("--sparsity-weight", type=float, default=0.01, help="model.loss_weights.sparsity")
    p.add_argument(
        "--sparsity-below-nnls", type=float, default=1.0, help="model.sparsity_below_nnls (1 = everywhere)"
    )
    p.add_argument(
        "--calibrate-choice", default="highest", help="model.calibrate_choice (highest, fewest_spurious)"
    )
    p.add_argument("--log-prior-input", action="store_true", help="model.log_prior_input")
    p.add_argument("--prior-weight-floor", type=float, default=0.0, help="model.prior_weight_floor")
    p.add_argument(
        "--train-coverage",
        type=float,
        nargs="+",
        default=[30.0],
        help="mixtures.coverage: a number or lowest highest",
    )
    p.add_argument("--raw", type=Path, default=RAW, help="raw outputs file")
    args = p.parse_args()
    if args.table:
        print(table(args.table, args.rules))
        return
    torch.set_num_threads(1)
    if not (args.reuse and args.raw.is_file()):
        if not ATLAS.is_file():
            sys.exit(f"Moss atlas not found at {ATLAS}")
        train_and_dump(args)
    raw = dict(np.load(args.raw))
    result = study(raw, call=0.01)
    result["args"] = vars(args)
    if "args_json" in raw:  # the stage-1 options that made the raw file (--reuse keeps them)
        result["trained_with"] = json.loads(str(raw["args_json"]))
    out = args.raw.with_name(args.raw.name.replace("_raw", "").replace(".npz", ".json"))
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps(result["summary"], indent=1, default=float))


if __name__ == "__main__":
    main()
