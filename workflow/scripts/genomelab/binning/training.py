"""Snakemake steps of the binning module that use torch: diagnostics (initial loss), the
TNF baseline (clustered like the model), VAE training, encoding and clustering."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from genomelab.binning.baselines import BaselineConfig, tnf_embedding
from genomelab.binning.cluster import ClusterConfig, cluster_contigs
from genomelab.binning.data import ModelInputs, load_inputs, split_indices
from genomelab.binning.diagnostics import overfit_check, recon_loss_of
from genomelab.binning.kmers import GROUP_SLICES, N_FEATURES, read_profiles_h5
from genomelab.binning.model import KmerVAE, VAEConfig
from genomelab.binning.steps import MODULE, REFERENCE_TERMS, _optional, _save_latent
from genomelab.config import param
from genomelab.diagnostics import FAIL, PASS, WARN, DiagnosticResult, write_results
from genomelab.diagnostics.checks import initial_loss_vs_chance
from genomelab.io.tables import check_names, read_depth_table, read_truth, write_table
from genomelab.train import TrainConfig, resolve_device
from genomelab.train.export import data_fingerprint, load_exported
from genomelab.train.run import RunOutputs, RunSpec, RunState, run_training

logger = logging.getLogger(__name__)

# Kind of the VAE's exported model (train/export.py).
KIND = "binning-vae"


# ------------------------------------------------------------ diagnostics
def profile_checks(
    features_h5: str | os.PathLike,
    min_contigs: int,
    truth: str | None,
    depth: str | None,
    model_cfg: dict[str, Any],
    seed: int,
) -> list[DiagnosticResult]:
    """Cheap checks before training: profile sanity, contig counts, names, initial loss."""
    prof = read_profiles_h5(features_h5)
    x = prof.features
    results = []
    sums = {g: x[:, s].sum(axis=1) for g, s in GROUP_SLICES.items() if g != "gc"}
    worst = max(float(np.abs(v - 1).max()) for v in sums.values())
    gc = x[:, GROUP_SLICES["gc"]]
    finite = bool(np.isfinite(x).all())
    if not finite or worst > 1e-3 or (gc < 0).any() or (gc > 1).any():
        results.append(
            DiagnosticResult(
                "profile_sanity",
                FAIL,
                f"k-mer profiles are malformed (finite: {finite}, "
                f"worst group sum off by {worst:.2g}, GC range {gc.min():.3g}..{gc.max():.3g})",
            )
        )
    else:
        results.append(
            DiagnosticResult(
                "profile_sanity",
                PASS,
                f"{len(x)} profiles finite, each k group sums to 1 "
                f"(max error {worst:.1e}), GC in {gc.min():.3f}..{gc.max():.3f}",
            )
        )
    n = len(x)
    status = PASS if n >= min_contigs else FAIL
    results.append(
        DiagnosticResult(
            "n_contigs",
            status,
            f"{n} contigs pass the length filter (need >= {min_contigs} to train and cluster)",
            details={"n": n},
        )
    )
    median = float(np.median(prof.lengths))
    results.append(
        DiagnosticResult(
            "contig_lengths",
            PASS if median >= 2500 else WARN,
            f"median contig length {median:.0f} bp"
            + ("" if median >= 2500 else ": k-mer profiles of short contigs are noisy"),
            blocking=False,
            details={"median": median, "n50": float(np.percentile(prof.lengths, 50))},
        )
    )
    for label, path, reader in (
        ("truth", truth, lambda p: read_truth(p).index),
        ("depth", depth, lambda p: read_depth_table(p)[0]),
    ):
        if not path:
            continue
        try:
            check_names(prof.names, reader(path), "the k-mer profiles", f"{label} table {path}")
            results.append(DiagnosticResult(f"names_{label}", PASS, f"all {n} contigs are in {path}"))
        except (ValueError, FileNotFoundError) as exc:
            results.append(DiagnosticResult(f"names_{label}", FAIL, str(exc)))
    usable_depth = depth if not any(r.status == FAIL and r.name == "names_depth" for r in results) else None
    results.append(_initial_loss_check(prof.features, model_cfg, usable_depth, prof.names, seed))
    results.append(overfit_check(_with_depth(prof.features, prof.names, usable_depth), model_cfg, seed))
    return results


def _with_depth(x: np.ndarray, names: np.ndarray, depth: str | None) -> np.ndarray:
    """The model's inputs: k-mer profiles [n, N_FEATURES], then depth columns if given."""
    if not depth:
        return x
    from genomelab.binning.depth import depth_features

    return np.concatenate([x, depth_features(names, depth)], axis=1)


def _initial_loss_check(
    x: np.ndarray,
    model_cfg: dict[str, Any],
    depth: str | None,
    names: np.ndarray,
    seed: int,
    n_sample: int = 256,
) -> DiagnosticResult:
    """The untrained VAE's reconstruction loss vs predicting every contig's mean profile."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x), min(n_sample, len(x)), replace=False))
    xs = _with_depth(x, names, depth)[rows]
    cfg = VAEConfig.from_dict(model_cfg, n_depth=xs.shape[1] - N_FEATURES)
    torch.manual_seed(seed)
    model = KmerVAE(cfg).eval()
    xt = torch.from_numpy(xs)
    with torch.no_grad():
        raw, mu, logvar = model(xt)
        initial = float(model.loss_terms(xt, raw, mu, logvar)["recon"])
    chance = recon_loss_of(model, xt, xt.mean(dim=0, keepdim=True).expand_as(xt).clone())
    return initial_loss_vs_chance(initial, chance, name="initial_recon_vs_mean_profile")


def diagnostics_step(smk: Any) -> None:
    results = profile_checks(
        smk.input.h5,
        int(smk.params.min_contigs),
        _optional(smk, "truth"),
        _optional(smk, "depth"),
        param(smk, "model"),
        int(smk.params.seed),
    )
    write_results(smk.output[0], MODULE, results)


# --------------------------------------------------------------- baseline
def baseline_step(smk: Any) -> None:
    inputs = load_inputs(smk.input.h5, _optional(smk, "depth"))
    emb = tnf_embedding(inputs.x, BaselineConfig.from_dict(param(smk, "baseline")), inputs.n_depth)
    ccfg = ClusterConfig.from_dict(param(smk, "cluster"), seed=int(smk.params.seed))
    labels = cluster_contigs(emb, inputs.lengths, ccfg, int(smk.params.min_bin_bp), "cpu")
    write_table(pd.DataFrame({"contig": inputs.names, "cluster": labels}), smk.output.clusters)
    _save_latent(smk.output.embedding, inputs.names, emb)


# ---------------------------------------------------------------- training
def _dataset(x: np.ndarray, rows: np.ndarray, device: torch.device, preload: bool):
    from torch.utils.data import TensorDataset

    t = torch.from_numpy(np.ascontiguousarray(x[rows]))
    # On a GPU the whole matrix lives in device memory when it fits: the engine then slices
    # batches on the device and epochs are never input-bound.
    if preload and device.type == "cuda":
        t = t.to(device)
    elif device.type == "cuda":
        t = t.pin_memory()
    return TensorDataset(t)


def inputs_fingerprint(inputs: ModelInputs, n_rows: int = 256) -> str:
    """:func:`~genomelab.train.export.data_fingerprint` of contig names, lengths and a fixed
    sample of input rows (cheap even for millions of contigs, yet it changes when the
    contigs or their profiles do)."""
    rows = np.linspace(0, len(inputs.x) - 1, min(n_rows, len(inputs.x))).astype(np.int64)
    return data_fingerprint(inputs.names, np.ascontiguousarray(inputs.lengths), inputs.x[rows])


def train_vae(
    inputs: ModelInputs,
    model_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    split_cfg: dict[str, Any],
    seed: int,
    state_dir: str | os.PathLike,
    metrics_path: str | os.PathLike,
    model_path: str | os.PathLike,
    tensorboard_dir: str | os.PathLike | None,
    device: torch.device,
    preload: bool = True,
) -> tuple[KmerVAE, dict[str, Any]]:
    """Fit the VAE on the train split; write metrics and the exported model (``model_path``).

    One state folder per configuration and input: a changed parameter or new contigs start
    a fresh run, an identical rerun (e.g. after SIGTERM) resumes from last.pt. Returns the
    best model and the metrics payload."""
    cfg = VAEConfig.from_dict(model_cfg, n_depth=inputs.n_depth)
    splits = split_indices(
        len(inputs.x), float(split_cfg["val_fraction"]), float(split_cfg["test_fraction"]), seed
    )

    def after_fit(state: RunState) -> dict[str, Any]:
        epoch_s = [h["time/epoch_s"] for h in state.fit.history]
        return {
            "test": state.test_losses,
            "n_contigs": {s: len(i) for s, i in splits.items()},
            "reference_terms": REFERENCE_TERMS,
            "fit_seconds": state.fit_seconds,
            "mean_epoch_seconds": float(np.mean(epoch_s)) if epoch_s else None,
            "train_contigs_per_second": (len(splits["train"]) / float(np.mean(epoch_s))) if epoch_s else None,
            "n_depth": inputs.n_depth,
        }

    spec = RunSpec(
        kind=KIND,
        train_config=TrainConfig.from_dict(train_cfg, seed=seed),
        model_config=dict(model_cfg),
        build_model=lambda: KmerVAE(cfg),
        build_data=lambda dev: {
            s: _dataset(inputs.x, idx, dev, preload) for s, idx in splits.items() if len(idx)
        },
        ids={"contigs": inputs.names},
        data_fingerprint=inputs_fingerprint(inputs),
        run_config={"n_depth": inputs.n_depth, "split": split_cfg, "n": len(inputs.x)},
        after_fit=after_fit,
        export_extra=lambda state: {"n_depth": inputs.n_depth},
    )
    result = run_training(spec, state_dir, RunOutputs(metrics_path, model_path, tensorboard_dir), device)
    return result.model, result.payload


def train_step(smk: Any) -> None:
    inputs = load_inputs(smk.input.h5, _optional(smk, "depth"))
    train_vae(
        inputs,
        param(smk, "model"),
        param(smk, "train"),
        param(smk, "split"),
        int(smk.params.seed),
        smk.params.state_dir,
        smk.output.metrics,
        smk.output.model,
        smk.output.tensorboard,
        resolve_device(smk.params.device),
        bool(smk.params.preload),
    )


def load_model(path: str | os.PathLike, n_depth: int) -> KmerVAE:
    """The VAE of an exported model (CPU, eval mode); refuses one trained with another
    number of abundance columns."""
    exported = load_exported(path, kind=KIND)
    if int(exported.extra["n_depth"]) != n_depth:
        raise ValueError(
            f"{path} was trained with {exported.extra['n_depth']} abundance columns, the inputs have {n_depth}"
        )
    model = KmerVAE(VAEConfig.from_dict(exported.config, n_depth=n_depth))
    model.load_state_dict(exported.weights)
    return model.eval()


# ---------------------------------------------------------------- encoding
def encode_and_cluster(
    model_path: str | os.PathLike,
    inputs: ModelInputs,
    cluster_cfg: ClusterConfig,
    device: torch.device,
    min_bin_bp: int = 0,
    batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """(latent means [n, latent], cluster ids [n]) for every contig."""
    model = load_model(model_path, inputs.n_depth).to(device)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(inputs.x), batch_size):
            xb = torch.from_numpy(inputs.x[start : start + batch_size]).to(device)
            chunks.append(model.encode(xb)[0].float())
    latent = torch.cat(chunks)
    labels = cluster_contigs(latent, inputs.lengths, cluster_cfg, min_bin_bp, device)
    return latent.cpu().numpy(), labels


def encode_step(smk: Any) -> None:
    inputs = load_inputs(smk.input.h5, _optional(smk, "depth"))
    device = resolve_device(smk.params.device)
    ccfg = ClusterConfig.from_dict(param(smk, "cluster"), seed=int(smk.params.seed))
    t0 = time.perf_counter()
    latent, labels = encode_and_cluster(smk.input.model, inputs, ccfg, device, int(smk.params.min_bin_bp))
    logger.info(
        "encoded and clustered %d contigs on %s in %.1f s", len(labels), device, time.perf_counter() - t0
    )
    write_table(pd.DataFrame({"contig": inputs.names, "cluster": labels}), smk.output.clusters)
    _save_latent(smk.output.latent, inputs.names, latent)
