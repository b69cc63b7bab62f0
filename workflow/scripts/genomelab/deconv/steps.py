"""The deconv module's rule steps: each ``*_step(smk)`` unpacks Snakemake's object and
calls a plain typed function that tests call directly."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.config import param
from genomelab.deconv.io import (
    JoinReport,
    join_dropped,
    join_regions,
    read_sources,
    read_table,
    sources_from_features,
    sources_from_sheet,
    write_sources,
    write_table,
)
from genomelab.deconv.metrics import deconv_metrics, headline
from genomelab.deconv.mixtures import PHASES, PhaseConfig, make_mixtures, read_mixtures, write_mixtures
from genomelab.deconv.nnls import deconvolve_nnls
from genomelab.deconv.reference import Reference, ReferenceConfig, build_reference, reference_dropped
from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.metrics import Metrics, read_json_file, read_metrics, write_metrics
from genomelab.io.sheets import is_sample_sheet

logger = logging.getLogger(__name__)

VARIANTS = {"nnls": "NNLS (MethAtlas)", "plain": "plain network", "sparse": "two-stage sparse network"}


# ---------------------------------------------------------------- helpers
def load_reference(path: str | os.PathLike) -> Reference:
    values, regions, tissues = read_table(path, "reference")
    return Reference(values, regions, tissues)


def save_predictions(
    path: str | os.PathLike, proportions: np.ndarray, tissues: np.ndarray, **extra: np.ndarray
) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            proportions=np.asarray(proportions, np.float32),
            tissues=np.asarray(tissues, dtype=str),
            **extra,
        )


def load_predictions(path: str | os.PathLike) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        return npz["proportions"].astype(np.float64)


# ---------------------------------------------------------------- simulate
def simulate_step(smk: Any) -> None:
    from genomelab.deconv.simulate import SimulationConfig, simulate_demo

    cfg = SimulationConfig.from_dict(param(smk, "simulate"), seed=int(smk.params.seed))
    simulate_demo(
        cfg,
        smk.output.samples,
        smk.output.sheet,
        smk.output.new_samples,
        smk.output.new_truth,
        smk.output.profiles,
    )


# ---------------------------------------------------------------- sources
def build_sources(
    sheet: str | None,
    features: str | None,
    fractions: list[float],
    seed: int,
    out_h5: str | os.PathLike,
    out_json: str | os.PathLike,
) -> None:
    """Read pure samples (sheet of NPZ files or region-means HDF5), split them by individual."""
    from genomelab.splits import group_split

    if bool(sheet) == bool(features):
        raise ValueError("give exactly one of a sample sheet or a region-means HDF5 as deconv input")
    src = sources_from_sheet(sheet) if sheet else sources_from_features(features)
    src.splits = group_split(src.groups, fractions, seed=seed, stratify=src.tissues)
    counts = {
        t: {s: int(((src.tissues == t) & (src.splits == s)).sum()) for s in ("train", "val", "test")}
        for t in sorted(set(src.tissues.tolist()))
    }
    short = [t for t, c in counts.items() if min(c.values()) == 0]
    if short:
        raise ValueError(
            f"tissue(s) {short} lack individuals in some split ({ {t: counts[t] for t in short} }); "
            "each tissue needs at least 3 source samples (individuals)"
        )
    write_sources(out_h5, src, {"input": str(sheet or features), "seed": seed})
    atomic_write_json(
        out_json,
        {
            "input": str(sheet or features),
            "n_samples": int(len(src.samples)),
            "n_regions": int(len(src.regions)),
            "per_tissue": counts,
            "missing_fraction": float((src.valid <= 0).mean()),
        },
    )


def sources_step(smk: Any) -> None:
    build_sources(
        smk.input.get("sheet"),
        smk.input.get("features"),
        list(param(smk, "fractions")),
        int(smk.params.seed),
        smk.output.h5,
        smk.output.json,
    )


# ---------------------------------------------------------------- reference
def reference_step(smk: Any) -> None:
    cfg = ReferenceConfig.from_dict(param(smk, "reference"))
    src = read_sources(smk.input.sources)
    train = src.subset(src.splits == "train")
    atlas = read_table(smk.input.atlas, "atlas") if smk.input.get("atlas") else None
    ref, record = build_reference(train, cfg, atlas)
    write_table(smk.output.reference, ref.profiles, ref.regions, ref.tissues)
    atomic_write_json(smk.output.markers, record)


# ---------------------------------------------------------------- mixtures
def mixtures_step(smk: Any) -> None:
    phase = smk.wildcards.phase
    mix_cfg = param(smk, "mixtures")
    cfg = PhaseConfig.from_dict(mix_cfg[phase], where=f"deconv.mixtures.{phase}")
    src = read_sources(smk.input.sources)
    ref = load_reference(smk.input.reference)
    sets = make_mixtures(
        src,
        ref.regions,
        list(ref.tissues),
        phase,
        cfg,
        float(mix_cfg["coverage"]),
        mix_cfg["mode"],
        int(smk.params.seed),
    )
    write_mixtures(
        smk.output[0],
        sets,
        {"phase": phase, "seed": int(smk.params.seed), "config": json.dumps(mix_cfg, sort_keys=True)},
    )


# ---------------------------------------------------------------- diagnostics
def diagnostics_step(smk: Any) -> None:
    from genomelab.deconv.diagnostics import run_checks
    from genomelab.diagnostics import write_results

    src = read_sources(smk.input.sources)
    ref = load_reference(smk.input.reference)
    phases = {}
    for path in smk.input.mixtures:
        phase = Path(path).stem
        phases[phase] = {s: read_mixtures(path, s) for s in ("train", "val", "test")}
    results = run_checks(
        src, ref, phases, param(smk, "model"), float(smk.params.presence_threshold), int(smk.params.seed)
    )
    write_results(smk.output[0], "deconv", results)


# ---------------------------------------------------------------- NNLS baseline
def evaluate_nnls(
    mixtures: str | os.PathLike,
    reference: str | os.PathLike,
    call: float,
    unknown_component: bool,
    split: str = "test",
) -> tuple[np.ndarray, dict[str, Any]]:
    ref = load_reference(reference)
    ms = read_mixtures(mixtures, split)
    if list(ms.tissues) != list(ref.tissues):
        raise ValueError(
            f"{mixtures}: tissues {list(ms.tissues)} differ from the reference's {list(ref.tissues)}"
        )
    res = deconvolve_nnls(ref.profiles, ms.beta.astype(np.float64), unknown_component)
    metrics = deconv_metrics(ms.proportions, res.proportions, ref.tissues, call)
    metrics["mean_residual"] = float(res.residual.mean())
    return res.proportions, metrics


def nnls_step(smk: Any) -> None:
    props, metrics = evaluate_nnls(
        smk.input.mixtures,
        smk.input.reference,
        float(smk.params.presence_threshold),
        bool(smk.params.unknown_component),
    )
    ref = load_reference(smk.input.reference)
    save_predictions(smk.output.predictions, props, ref.tissues)
    record = Metrics({"method": "nnls", "phase": smk.wildcards.phase, "test": metrics}, smk.output.metrics)
    write_metrics(smk.output.metrics, record)


# ---------------------------------------------------------------- training
def train_model(
    mixtures: str | os.PathLike,
    reference: str | os.PathLike,
    variant: str,
    model_cfg: dict,
    train_cfg: dict,
    presence_target: float,
    state_root: str | os.PathLike,
    out_model: str | os.PathLike,
    out_metrics: str | os.PathLike,
    out_predictions: str | os.PathLike,
    tensorboard_dir: str | os.PathLike | None,
    device: str = "auto",
    seed: int = 0,
    init_from: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train the plain or two-stage network on one phase; evaluate it on the test split.

    ``init_from`` names a previous phase's model (curriculum): its weights start this run.
    Resumable state lives in ``state_root/<fingerprint of settings and data>``. Returns
    the test metrics.
    """
    import torch
    from torch.utils.data import TensorDataset

    from genomelab.deconv.model import KIND, DeconvNet, DeconvNetConfig, load_model
    from genomelab.train import TrainConfig, resolve_device
    from genomelab.train.export import data_fingerprint
    from genomelab.train.run import RunOutputs, RunSpec, RunState, run_training

    if variant not in ("plain", "sparse"):
        raise ValueError(f"model variant must be 'plain' or 'sparse', not {variant!r}")
    ref = load_reference(reference)
    sets = {s: read_mixtures(mixtures, s) for s in ("train", "val", "test")}
    cfg = DeconvNetConfig.from_config(
        model_cfg, len(ref.regions), len(ref.tissues), variant == "sparse", presence_target
    )

    def build_model() -> DeconvNet:
        model = DeconvNet(cfg, ref.profiles.mean(1), ref.profiles)
        if init_from:
            prev, _ = load_model(init_from, ref.regions, ref.tissues)
            model.load_state_dict(prev.state_dict())
            logger.info("initialised from %s", init_from)
        return model

    def build_data(dev: torch.device) -> dict[str, TensorDataset]:
        # Mixtures are small next to GPU memory: preloading lets the engine slice on device.
        return {
            s: TensorDataset(torch.tensor(ms.beta, device=dev), torch.tensor(ms.proportions, device=dev))
            for s, ms in sets.items()
        }

    def eval_fn(m: torch.nn.Module, ds: TensorDataset, d: torch.device) -> dict[str, float]:
        x, y = ds.tensors
        pred = m.predict(x.to(d)).float().cpu().numpy()
        true = y.cpu().numpy()
        called, absent = pred >= presence_target, true == 0
        return {
            "mae": float(np.abs(pred - true).mean()),
            "spurious_per_sample": float((called & absent).sum(1).mean()),
        }

    def after_fit(state: RunState) -> dict[str, Any]:
        beta = torch.tensor(sets["test"].beta, device=state.device)
        pred = state.model.predict(beta).float().cpu().numpy()
        metrics = deconv_metrics(sets["test"].proportions, pred, ref.tissues, presence_target)
        state.values.update(pred=pred, metrics=metrics)
        return {
            "variant": variant,
            "seed": seed,
            "test": metrics,
            "test_losses": state.test_losses,
            "best_epoch": state.fit.best_epoch,
            "stopped_reason": state.fit.stopped_reason,
        }

    spec = RunSpec(
        kind=KIND,
        train_config=TrainConfig.from_dict(train_cfg, seed=seed),
        model_config=dataclasses.asdict(cfg),
        build_model=build_model,
        build_data=build_data,
        ids={"regions": ref.regions, "tissues": ref.tissues},
        data_fingerprint=data_fingerprint(
            ref.regions,
            ref.tissues,
            ref.profiles,
            *(a for ms in sets.values() for a in (ms.beta, ms.proportions)),
        ),
        run_config={"variant": variant, "init_from": str(init_from or "")},
        eval_fn=eval_fn,
        after_fit=after_fit,
        write_outputs=lambda state: save_predictions(out_predictions, state.values["pred"], ref.tissues),
        export_extra=lambda state: {"variant": variant, "seed": seed},
    )
    outputs = RunOutputs(out_metrics, out_model, tensorboard_dir)
    return run_training(spec, state_root, outputs, resolve_device(device)).values["metrics"]


def train_step(smk: Any) -> None:
    import torch

    # Rules get a fixed number of cores; more intra-op threads than that only contend.
    torch.set_num_threads(max(1, int(smk.threads)))
    train_model(
        smk.input.mixtures,
        smk.input.reference,
        smk.wildcards.variant,
        param(smk, "model"),
        param(smk, "train"),
        float(smk.params.presence_threshold),
        smk.params.state_dir,
        smk.output.model,
        smk.output.metrics,
        smk.output.predictions,
        smk.output.tensorboard,
        device=smk.params.device,
        seed=int(smk.params.seed),
        init_from=smk.input.get("init"),
    )


# ---------------------------------------------------------------- comparison
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


def compare_step(smk: Any) -> None:
    n_rep = len(smk.input.plain_metrics)
    runs = {
        v: list(zip(smk.input[f"{v}_metrics"], smk.input[f"{v}_predictions"], strict=True))
        for v in ("plain", "sparse")
    }
    assert all(len(r) == n_rep for r in runs.values())
    compare(
        smk.wildcards.phase,
        smk.input.mixtures,
        (smk.input.nnls_metrics, smk.input.nnls_predictions),
        runs,
        smk.output.json,
        smk.output.tsv,
        {"miami": smk.output.miami, "scatter": smk.output.scatter, "errors": smk.output.errors},
        int(smk.params.n_miami),
    )


# ---------------------------------------------------------------- inference
def read_user_samples(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User samples as ``(betas [S, R], region IDs [R], sample names [S])``.

    ``.h5``/``.hdf5``: a region-means file; ``.tsv`` with a ``file`` column: a sample sheet
    of NPZ files; any other CSV/TSV: regions x samples (MethAtlas input).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".h5", ".hdf5")):
        src = sources_from_features(path)
        return src.beta.astype(np.float64), src.regions, src.samples
    if is_sample_sheet(path):
        src = sources_from_sheet(path)
        return src.beta.astype(np.float64), src.regions, src.samples
    values, regions, samples = read_table(path, "samples table")
    return values.T, regions, samples


def infer(
    model_path: str | os.PathLike,
    reference: str | os.PathLike,
    samples: str | os.PathLike,
    out_dir_files: dict[str, str],
    call: float,
    min_match: float,
    unknown_component: bool,
    other_threshold: float,
    truth: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Deconvolve user samples with the chosen network and NNLS side by side."""
    import torch

    from genomelab.deconv import plots as P
    from genomelab.deconv.model import load_model

    ref = load_reference(reference)
    # A model made for another reference is refused, naming both ID lists.
    model, exported = load_model(model_path, ref.regions, ref.tissues)
    betas, regions, names = read_user_samples(samples)
    aligned, report = join_regions(ref.regions, regions, betas, names, min_match, str(samples))
    empty = [str(n) for n, k in zip(names, np.isfinite(aligned).sum(1), strict=True) if k == 0]
    if empty:
        raise ValueError(f"{samples}: sample(s) {empty[:5]} have no value on any reference region")
    nn = deconvolve_nnls(ref.profiles, aligned, unknown_component)
    with torch.no_grad():
        net = model.predict(torch.tensor(aligned, dtype=torch.float32)).numpy().astype(np.float64)
    # Residual of each method: RMS of (reference @ proportions - sample) over valid regions.
    valid = np.isfinite(aligned)

    def rms(p: np.ndarray) -> np.ndarray:
        d = np.where(valid, p @ ref.profiles.T - np.where(valid, aligned, 0), 0)
        return np.sqrt((d**2).sum(1) / valid.sum(1))

    tissues = list(ref.tissues)
    nn_rows = (
        np.concatenate([nn.proportions, nn.unknown[:, None]], 1) if unknown_component else nn.proportions
    )
    nn_names = tissues + (["unknown"] if unknown_component else [])
    write_table(out_dir_files["nnls"], nn_rows.T, nn_names, names, index_name="tissue")
    write_table(out_dir_files["model"], net.T, tissues, names, index_name="tissue")
    res = np.stack([nn.residual, rms(nn.proportions), rms(net), valid.sum(1)], 1)
    write_table(
        out_dir_files["residuals"],
        res,
        names,
        ["nnls_raw_residual", "nnls_residual", "model_residual", "n_regions_used"],
        index_name="sample",
    )
    summary: dict[str, Any] = {
        "samples": [str(n) for n in names],
        "model": str(model_path),
        "variant": exported.extra.get("variant"),
        "join": report.to_dict(),
    }
    if truth:
        t_values, t_tissues, t_samples = read_table(truth, "truth table")
        order = [list(t_samples).index(n) for n in names]
        rows = [list(t_tissues).index(t) for t in tissues]
        true = t_values[np.ix_(rows, order)].T
        summary["vs_truth"] = {
            "nnls": headline(deconv_metrics(true, nn.proportions, tissues, call)),
            "model": headline(deconv_metrics(true, net, tissues, call)),
        }
    atomic_write_json(out_dir_files["join"], summary)
    P.stacked_bar_plot(
        {"NNLS": nn.proportions, f"network ({exported.extra.get('variant')})": net},
        list(names),
        tissues,
        out_dir_files["stacked"],
        other_threshold,
    )
    return summary


def infer_step(smk: Any) -> None:
    files = {k: smk.output[k] for k in ("nnls", "model", "residuals", "join", "stacked")}
    infer(
        smk.input.model,
        smk.input.reference,
        smk.input.samples,
        files,
        float(smk.params.presence_threshold),
        float(smk.params.min_match),
        bool(smk.params.unknown_component),
        float(smk.params.other_threshold),
        smk.input.get("truth"),
    )


# ---------------------------------------------------------------- summary
def summarise(
    comparisons: list[str],
    diagnostics: str,
    infer_json: str | None,
    curves: dict[str, list[str]],
    out_json: str | os.PathLike,
    out_md: str | os.PathLike,
    plot_paths: list[str],
    curves_png: str | os.PathLike | None = None,
    markers_json: str | None = None,
) -> None:
    from genomelab.deconv import plots as P
    from genomelab.diagnostics import read_results
    from genomelab.report import Comparison, ModuleSummary, write_module_summary

    comps, notes = [], []
    # Records the module's steps left out (reference regions, unmatched input regions).
    dropped = reference_dropped(markers_json) if markers_json else []
    for path in comparisons:
        data = read_json_file(path, "deconv comparison")
        phase = data["phase"]
        comps.append(
            Comparison(
                f"{phase}: NNLS vs plain vs two-stage sparse (MAE)",
                f"{phase} test",
                "mae",
                False,
                data["rows"],
                data["kinds"],
            )
        )
        comps.append(
            Comparison(
                f"{phase}: spurious calls per sample (absent tissue >= 1%)",
                f"{phase} test",
                "spurious_per_sample",
                False,
                data["rows"],
                data["kinds"],
            )
        )
        rows = data["rows"]
        sp, pl, nn = rows[VARIANTS["sparse"]], rows[VARIANTS["plain"]], rows[VARIANTS["nnls"]]
        bars = [
            f"fewer spurious calls than NNLS and plain: {'yes' if sp['spurious_per_sample'] < min(pl['spurious_per_sample'], nn['spurious_per_sample']) else 'NO'} "
            f"({sp['spurious_per_sample']:.3g} vs {nn['spurious_per_sample']:.3g} and {pl['spurious_per_sample']:.3g})",
            f"MAE no worse than NNLS: {'yes' if sp['mae'] <= nn['mae'] else 'NO'} ({sp['mae']:.4g} vs {nn['mae']:.4g})",
            f"presence accuracy > 90%: {'yes' if sp['presence_accuracy'] > 0.9 else 'NO'} ({sp['presence_accuracy']:.1%})",
        ]
        notes.append(f"{phase}, two-stage sparse model: " + "; ".join(bars))
        for variant, s in data.get("repeats", {}).items():
            notes.append(
                f"{phase}, {VARIANTS[variant]} over {s['mae']['n']} seeds: MAE {s['mae']['mean']:.4g} "
                f"+- {s['mae']['sd']:.2g}, spurious/sample {s['spurious_per_sample']['mean']:.3g} "
                f"+- {s['spurious_per_sample']['sd']:.2g}"
            )
    if infer_json:
        inf = read_json_file(infer_json, "deconv inference summary")
        j = inf["join"]
        dropped += [d for d in (join_dropped(j),) if d is not None]
        notes.append(
            f"inference on {len(inf['samples'])} new samples: {j['n_matched']} of {j['n_reference_regions']} "
            f"reference regions matched, {j['n_dropped']} input regions dropped"
        )
        if "vs_truth" in inf:
            v = inf["vs_truth"]
            notes.append(
                f"new samples vs truth: NNLS MAE {v['nnls']['mae']:.4g}, spurious {v['nnls']['spurious_per_sample']:.3g}; "
                f"network MAE {v['model']['mae']:.4g}, spurious {v['model']['spurious_per_sample']:.3g}"
            )
    plots = list(plot_paths)
    if curves_png and curves:
        hists = {name: read_metrics(p[0]).history for name, p in curves.items() if p}
        P.curves_plot(hists, curves_png)
        plots.append(str(curves_png))
    base = Path(out_json).parent
    diags = [
        {"name": r.name, "status": r.status, "message": r.message, "blocking": r.blocking}
        for r in read_results(diagnostics)
    ]
    summary = ModuleSummary(
        "deconv",
        "cfDNA tissue deconvolution (NNLS vs plain vs two-stage sparse)",
        comps,
        diags,
        [os.path.relpath(p, base) for p in plots],
        notes,
        dropped,
    )
    write_module_summary(summary, out_json, out_md)


def summary_step(smk: Any) -> None:
    curves = {
        f"{phase}/{v}": [p for p in smk.input.train_metrics if f"/{phase}/{v}/" in p]
        for phase in PHASES
        for v in ("plain", "sparse")
    }
    summarise(
        list(smk.input.comparisons),
        smk.input.diagnostics,
        smk.input.get("infer"),
        curves,
        smk.output.json,
        smk.output.md,
        list(smk.input.plots),
        smk.output.curves,
        smk.input.get("markers"),
    )


__all__ = ["JoinReport", "build_sources", "compare", "evaluate_nnls", "infer", "summarise", "train_model"]
