"""Embed and bin a new assembly with a trained binning encoder.

The assembly's contigs are profiled as in training (``binning_features``: the k-mer layout
is checked against the model's input width), encoded by the trained model and clustered as
``binning_encode`` clusters (same functions), then written as bins. Everything goes to a new
folder: a prediction never writes over a run's own bins.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.io.ids import check_same
from genomelab.predict.common import fresh_out_dir

logger = logging.getLogger(__name__)

# Output files, in the prediction's folder.
FILES = {
    "profiles": "profiles.h5",
    "latent": "latent.h5",
    "clusters": "clusters.tsv",
    "contig_bins": "contig_bins.tsv",
    "bin_summary": "bin_summary.tsv",
    "fasta_dir": "bins",
}


def remove_previous(out_dir: str | os.PathLike) -> None:
    """Remove, from the ``binning_predict`` rule's own folder, what an earlier prediction
    wrote there (the names of ``FILES``): from a FASTA it also wrote profiles, bins and their
    tables, which a later prediction from a profiles HDF5 does not declare, so Snakemake
    leaves them and the folder would not be empty. Other files are kept (and refused)."""
    import shutil

    out = Path(out_dir)
    for name in FILES.values():
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def is_profiles(path: str | os.PathLike) -> bool:
    """Whether an assembly input is a k-mer profiles HDF5 (no sequences: no bin FASTA files,
    no contig_bins or bin_summary) rather than a FASTA."""
    return Path(path).name.lower().endswith((".h5", ".hdf5"))


def check_layout(profiles: str | os.PathLike) -> None:
    """Refuse a profiles file whose k-mer columns are not the layout models are trained on
    (the number of abundance columns is checked against the model when it is loaded)."""
    import h5py

    from genomelab.binning.kmers import feature_names

    with h5py.File(profiles, "r") as h5:
        names = h5["feature_names"].asstr()[:].tolist() if "feature_names" in h5 else None
    if names is None:
        raise ValueError(f"{profiles}: no feature_names dataset; not a k-mer profiles file of this genomelab")
    check_same(names, feature_names(), "k-mer feature columns", str(profiles))


def check_model(model: str | os.PathLike, depth: str | os.PathLike | None) -> None:
    """Refuse, before any contig is profiled, a model that is not a binning encoder and one
    trained with abundances when no depth table is given (the number of abundance columns is
    checked against the depth table once it is read)."""
    from genomelab.binning.training import CONTRASTIVE_KIND, KIND, no_depth_message
    from genomelab.train.export import load_exported

    exported = load_exported(model)
    if exported.kind not in (KIND, CONTRASTIVE_KIND):
        raise ValueError(f"{model} holds a {exported.kind!r} model, not a binning model")
    trained = int(exported.extra.get("n_depth", 0))
    if trained and not depth:
        raise ValueError(no_depth_message(model, trained))


def recorded_settings(model: str | os.PathLike) -> dict[str, Any]:
    """The run settings an exported binning model records, by config key: the model kind
    and the model section it was built from (``binning.model.*``, or
    ``binning.model.contrastive.*``), and, in models exported since they are recorded,
    ``binning.features.min_length`` (its profiles' length filter) and ``seed``."""
    from genomelab.binning.training import CONTRASTIVE_KIND
    from genomelab.train.export import load_exported

    exported = load_exported(model)
    contrastive = exported.kind == CONTRASTIVE_KIND
    prefix = "binning.model.contrastive." if contrastive else "binning.model."
    out: dict[str, Any] = {"binning.model.kind": "contrastive" if contrastive else "vae"}
    out |= {prefix + k: _plain(k, v) for k, v in exported.config.items()}
    if "min_length" in exported.extra:
        out["binning.features.min_length"] = int(exported.extra["min_length"])
    if "seed" in exported.extra:
        out["seed"] = int(exported.extra["seed"])
    return out


def min_length_of(model: str | os.PathLike, extra: dict[str, Any], advice: str) -> int:
    """The profiles' length filter of ``model``'s run (``extra``: its exported ``extra``); a
    model exported before models recorded it gets the schema's
    ``binning.features.min_length``, with a warning that ends with ``advice``."""
    from genomelab.config import schema_default

    if "min_length" in extra:
        return int(extra["min_length"])
    value = int(schema_default("binning.features.min_length"))
    logger.warning(
        "%s records no profile length filter (exported before models recorded it): contigs "
        "shorter than the schema's binning.features.min_length %d bp are skipped; %s",
        model,
        value,
        advice,
    )
    return value


def _plain(key: str, value: Any) -> Any:
    """A config value in the form compared: lists, and contrastive groups in layout order."""
    from genomelab.binning.contrastive_views import check_groups

    if key == "groups":
        return list(check_groups(list(value)))
    return list(value) if isinstance(value, (list, tuple)) else value


def check_run_config(
    model: str | os.PathLike,
    run: dict[str, Any],
    source: str,
    advice: str = "give the config of the run that trained it, or leave it out (the model's "
    "recorded settings are used)",
) -> None:
    """Refuse a run config that contradicts what ``model`` records of the run that trained
    it (its model kind and settings, its profiles' length filter), naming each key; keys
    absent from ``run`` are not compared."""
    differ = []
    for key, value in recorded_settings(model).items():
        if key == "seed":  # the clustering seed: a config may choose another
            continue
        given: Any = run
        for part in key.split("."):
            given = given.get(part) if isinstance(given, dict) else None
        if given is not None and _plain(key.rsplit(".", 1)[-1], given) != value:
            differ.append(f"{key} is {given!r}, the model's {value!r}")
    if differ:
        raise ValueError(
            f"{source} contradicts the model {model}: {'; '.join(differ[:5])}"
            f"{f' (and {len(differ) - 5} more)' if len(differ) > 5 else ''}; {advice}"
        )


def check_kmer_layout(model: str | os.PathLike) -> None:
    """Refuse a model trained on another k-mer layout than this genomelab profiles."""
    from genomelab.binning.kmers import GROUP_SLICES
    from genomelab.train.export import load_exported

    recorded = load_exported(model).extra.get("kmer_layout")
    current = {name: [s.start, s.stop] for name, s in GROUP_SLICES.items()}
    if recorded is not None and dict(recorded) != current:
        raise ValueError(
            f"{model} was trained on k-mer profiles of layout {dict(recorded)} (columns of each "
            f"group); this genomelab profiles {current}: predict with the genomelab that trained it"
        )


def embed(
    model: str | os.PathLike,
    profiles: str | os.PathLike,
    depth: str | os.PathLike | None,
    cluster: dict[str, Any],
    min_bin_bp: int,
    device: str = "cpu",
    seed: int = 0,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """(model inputs, latent means [n, latent], cluster ids [n]) of a profiles file."""
    from genomelab.binning.cluster import ClusterConfig
    from genomelab.binning.data import load_inputs
    from genomelab.binning.encode import encode_and_cluster
    from genomelab.train import resolve_device

    check_layout(profiles)
    inputs = load_inputs(profiles, depth or None)
    cfg = ClusterConfig.from_dict(cluster, seed=seed)
    latent, labels = encode_and_cluster(model, inputs, cfg, resolve_device(device), min_bin_bp)
    return inputs, latent, labels


def predict_files(
    model: str | os.PathLike,
    contigs: str | os.PathLike,
    out_dir: str | os.PathLike,
    cluster: dict[str, Any],
    min_bin_bp: int,
    min_length: int,
    depth: str | os.PathLike | None = None,
    device: str = "cpu",
    seed: int = 0,
    protected: Sequence[str | os.PathLike] = (),
    engine: str = "auto",
) -> dict[str, str]:
    """Profiles, latent, clusters and bins of an assembly (FASTA, or a profiles HDF5 already
    made from it: then no bin FASTA files) in the new folder ``out_dir``; ``engine``: the
    k-mer counter (``binning.features.engine``; every engine gives the same profiles)."""
    import pandas as pd

    from genomelab.binning.bins import write_bins
    from genomelab.binning.kmers import write_profiles_h5
    from genomelab.binning.latent import save_latent
    from genomelab.io.tables import write_table

    contigs = Path(contigs)
    if not contigs.is_file():
        raise FileNotFoundError(f"assembly {contigs} does not exist")
    check_model(model, depth)
    check_kmer_layout(model)
    out = fresh_out_dir(out_dir, protected)
    files = {k: str(out / v) for k, v in FILES.items()}
    if is_profiles(contigs):
        profiles = contigs
    else:
        profiles = Path(files["profiles"])
        write_profiles_h5(contigs, profiles, min_length, engine=engine)
    inputs, latent, labels = embed(model, profiles, depth, cluster, min_bin_bp, device, seed)
    write_table(pd.DataFrame({"contig": inputs.names, "cluster": labels}), files["clusters"])
    save_latent(files["latent"], inputs.names, latent)
    if not is_profiles(contigs):
        write_bins(
            profiles,
            files["clusters"],
            contigs,
            min_bin_bp,
            files["fasta_dir"],
            files["contig_bins"],
            files["bin_summary"],
        )
    unclustered = np.asarray(labels).astype(str) == "-1"  # outliers: no cluster
    logger.info(
        "embedded %d contigs of %s into %d clusters (%d contigs in none) in %s",
        len(labels),
        contigs,
        len(set(np.asarray(labels)[~unclustered].tolist())),
        int(unclustered.sum()),
        out,
    )
    return files
