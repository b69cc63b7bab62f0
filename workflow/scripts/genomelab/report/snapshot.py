"""Snapshots of a run's outputs that hold across machines, for snapshot tests of a configuration.

Float results differ between CPUs and BLAS kernels (AVX2 vs AVX-512 code paths, other block
sizes, other reduction orders), and training amplifies those last-bit differences into other
weights, other cluster assignments and other metrics. A digest of floats, even of rounded
ones, cannot survive that. So a snapshot stores, per file, a set of *facts* and how each is
compared:

- ``eq``: exact. IDs, names, string columns, array shapes and dtypes, integer outputs, the
  text of a file with its numbers masked. Digests (sha256, 16 hex digits) stand for long ones.
- ``num``: a float, a short list of floats, or summary statistics of a float array or column
  (``{"n", "mean", "std", "min", "max"}`` plus the first values), compared with the tolerance
  of the file's tier (below). Non-finite values are counted in an ``eq`` fact.
- ``in``: a metric of a trained model that must lie in its documented range (``[0, 1]`` for
  accuracies, AUCs, MRR, ARI, ...; ``[-1, 1]`` for correlations; ``<= 1`` for R^2).
- ``gap``: a model-vs-baseline fact of a module summary: how far the best model is ahead of
  the best baseline on the primary metric, relative to the larger of the two,
  ``sign * (model - baseline) / max(|model|, |baseline|)``. It may not fall more than
  ``GAP_SLACK`` below ``min(snapshot gap, 0)``: a model that beat its baseline may end up
  slightly behind it on another CPU (the test data are tiny), but not far behind.

Which tier a file is in comes from the ``RULES`` table (first matching path pattern wins):

- ``fixed``: computed without training or BLAS-heavy math (seeded simulation, parsing,
  splits, feature extraction by sums and means). Floats: ``rtol 1e-5, atol 1e-8``. The only
  differences between CPUs are the last bits of vectorised libm functions and of summation
  order (float32 sums of a few thousand values: ~1e-7 relative); a real change of the
  computation (another seed, formula or filter) moves values by far more than 1e-5.
- ``numeric``: no training, but BLAS/LAPACK solvers or iterative fits (NNLS, ridge, logistic
  regression, kNN distances). Floats: ``rtol 1e-3, atol 1e-6``. Solvers that stop at a
  convergence tolerance (~1e-4 relative in scikit-learn) can stop one iteration earlier or
  later on another CPU; the metrics derived from them move by less than 1e-3.
- ``trained``: downstream of a trained model (predictions, latent spaces, clusters and bins
  from learned embeddings, metrics of trained models, module summaries). Checked as behaviour:
  the file exists with the same array names, shapes, dtypes, table columns and, where the rule
  names them, the same ID columns; values are finite where they were; metrics lie in their
  range; model-vs-baseline gaps hold. No float value is compared with the snapshot's.

Plots, TensorBoard events, logs, benchmarks, resumable state and the run report are not
outputs to snapshot and are skipped.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 2
# Markdown files restate their JSON in prose, timings included.
SKIP_SUFFIXES = {".png", ".pdf", ".svg", ".log", ".pt", ".html", ".zip", ".md"}
SKIP_PARTS = {".state", "benchmarks", "tensorboard", "tb", "logs", ".snakemake"}
VOLATILE_KEY = re.compile(
    r"^notes$|time|_s$|seconds|per_second|per_s$|throughput|speed|duration|version|commit|platform|python|device|path|date|host|node|gpus|cuda|packages|config_sha256|log",
    re.I,
)
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|\bnan\b|\binf\b", re.I)
# Float arrays and columns with at most this many values are stored whole, larger ones as
# statistics plus their first HEAD values (which catch a reordering the statistics miss).
SMALL = 32
HEAD = 4
# Per-column statistics for 2-D float arrays with at most this many columns.
MAX_COLUMNS = 16


@dataclass(frozen=True)
class Tolerance:
    """``|a - b| <= atol + rtol * max(|a|, |b|, scale)``; ``scale`` is the largest magnitude of
    the array a statistic summarises, so that a mean near zero of large values is not held
    to a relative tolerance of itself."""

    rtol: float
    atol: float

    def close(self, a: float, b: float, scale: float = 0.0) -> bool:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if math.isinf(a) or math.isinf(b):
            return a == b
        return abs(a - b) <= self.atol + self.rtol * max(abs(a), abs(b), scale)


TOLERANCE = {"fixed": Tolerance(1e-5, 1e-8), "numeric": Tolerance(1e-3, 1e-6)}
# Model-vs-baseline gap (relative to the larger metric) a trained model may lose against the
# snapshot on another machine before the comparison counts as broken.
GAP_SLACK = 0.35


@dataclass(frozen=True)
class Rule:
    """Files matching ``pattern`` (fnmatch, relative to results/) are snapshot in ``tier``.

    ``ids``: columns of a trained table that list the same IDs in the same order on every
    machine (the rows' keys, not model output). ``rows_vary``: the row count of a trained table
    depends on the model (one row per bin, say), so only the columns are checked.
    ``files_vary``: how many files match depends on the model (one FASTA per bin): they make
    one entry, keyed by the pattern, that says they exist and hold non-empty records.
    """

    pattern: str
    tier: str
    why: str
    ids: tuple[str, ...] = ()
    rows_vary: bool = False
    files_vary: bool = False


RULES: tuple[Rule, ...] = (
    # -- binning: the VAE's latent space, and everything clustered from it
    Rule("binning/model/clusters.tsv", "trained", "clusters of the learned latent space", ids=("contig",)),
    Rule("binning/model/*", "trained", "VAE latent space and its training metrics"),
    Rule("binning/bins/contig_bins.tsv", "trained", "bins of the learned clusters", ids=("contig", "length")),
    Rule("binning/bins/fasta/*", "trained", "one FASTA per learned bin", rows_vary=True, files_vary=True),
    Rule("binning/bins/*", "trained", "bins of the learned clusters", rows_vary=True),
    Rule("binning/evaluation/*", "trained", "scores of the learned bins", rows_vary=True),
    Rule("binning/baseline/clusters.tsv", "trained", "clusters of a PCA embedding", ids=("contig",)),
    Rule("binning/baseline/*", "trained", "PCA embedding: component signs and rotations are the solver's"),
    # -- assoc: TF-IDF + randomized truncated SVD (rotations of near-equal singular values
    # depend on BLAS), and the kNN / ridge baselines on top of it
    Rule("assoc/features/*", "trained", "randomized truncated SVD embeddings of entity text"),
    Rule("assoc/*/baselines.json", "trained", "kNN / ridge baselines on the SVD embeddings"),
    # -- solvers and fitted baselines: no training, but LAPACK / scikit-learn solvers
    Rule("*/nnls/*", "numeric", "NNLS solves (LAPACK)"),
    Rule("deconv/infer/nnls_*", "numeric", "NNLS solves (LAPACK)"),
    Rule("tissue/baselines/*", "numeric", "scikit-learn baselines (iterative solvers, BLAS)"),
    Rule("regulon/baselines/*", "numeric", "GC and k-mer regression baselines (BLAS)"),
    Rule("tissue/diagnostics/subtypes.json", "numeric", "nearest-centroid distances (BLAS)"),
    # -- data checks without any model
    Rule("tissue/diagnostics/labels.json", "fixed", "label bookkeeping"),
    Rule("tissue/diagnostics/leakage.json", "fixed", "split bookkeeping"),
    Rule("tissue/diagnostics/variance.json", "fixed", "F statistics of the features"),
    Rule("ingest/diagnostics/*", "fixed", "coverage counts of parsed files"),
    Rule("ingest/summary.json", "fixed", "ingest has no model: counts of parsed files"),
    # -- everything downstream of a trained model
    Rule(
        "*/diagnostics/*",
        "trained",
        "diagnostics files mix data checks with training checks; gates count them",
    ),
    Rule("*/train/*", "trained", "trained models: metrics, diagnostics"),
    Rule("*/runs/*", "trained", "trained models: metrics, training reports"),
    Rule("*/rep[0-9]*/*", "trained", "trained models: metrics, predictions"),
    Rule("*/model/*", "trained", "trained model: metrics, predictions"),
    Rule("*/summary.json", "trained", "module summaries compare trained models with baselines"),
    Rule("*/metrics.json", "trained", "metrics of trained models (and their baselines)"),
    Rule("*/comparison.*", "trained", "tables comparing trained models with baselines"),
    Rule("*/grid.json", "trained", "grid search over trained networks"),
    Rule("assoc/inference/*", "trained", "ranked predictions of the trained network", ids=("query", "rank")),
    Rule(
        "regulon/tracks/*",
        "trained",
        "tracks of the trained model's predictions",
        ids=("chrom", "start", "end"),
    ),
    Rule(
        "deconv/infer/*",
        "trained",
        "proportions and residuals of the trained network",
        ids=("tissue", "sample"),
    ),
    # -- everything else: simulation, parsing, splits, features by sums and means
    Rule("*", "fixed", "seeded simulation, parsing, splits and features: no training, no solver"),
)


def rule_for(rel: str) -> Rule:
    """The first rule of ``RULES`` whose pattern matches the relative path ``rel``."""
    return next(r for r in RULES if fnmatch.fnmatchcase(rel, r.pattern))


# ------------------------------------------------------------------------- fact builders
def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:16]


def _float_facts(facts: dict[str, Any], key: str, values: np.ndarray, tier: str) -> None:
    """Facts about a float array: non-finite count (exact) and values or statistics."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(flat)
    facts[f"{key}:nonfinite"] = {"eq": int((~finite).sum())}
    if tier == "trained":
        return
    if flat.size <= SMALL:
        facts[f"{key}:values"] = {"num": [float(v) for v in flat]}
        return
    good = flat[finite]
    stats: dict[str, float] = {"n": int(good.size)}
    if good.size:
        stats.update(
            mean=float(good.mean()), std=float(good.std()), min=float(good.min()), max=float(good.max())
        )
    facts[f"{key}:stats"] = {"num": stats}
    facts[f"{key}:head"] = {"num": [float(v) for v in flat[:HEAD]]}


def _array_facts(facts: dict[str, Any], name: str, arr: np.ndarray, rule: Rule) -> None:
    facts[f"{name}:shape"] = {"eq": list(arr.shape)}
    facts[f"{name}:dtype"] = {"eq": arr.dtype.str.lstrip("<>|=")}
    kind = arr.dtype.kind
    if kind in "fc":
        values = arr.real if kind == "c" else arr
        _float_facts(facts, name, values, rule.tier)
        if rule.tier != "trained" and values.ndim == 2 and 1 < values.shape[1] <= MAX_COLUMNS:
            with np.errstate(invalid="ignore"):
                means = np.nanmean(values.astype(np.float64), axis=0) if values.shape[0] else []
            facts[f"{name}:column_means"] = {"num": [float(v) for v in means]}
    elif kind in "OSU":
        # Names and IDs: exact everywhere (a trained tier's arrays of names are its row keys).
        text = "\x00".join(v.decode() if isinstance(v, bytes) else str(v) for v in arr.ravel())
        facts[f"{name}:digest"] = {"eq": _sha(text)}
    elif rule.tier != "trained":
        facts[f"{name}:digest"] = {"eq": _sha(np.ascontiguousarray(arr).tobytes())}


def _classify(values: list[str]) -> str:
    """The kind of a column of text cells: int, float or str."""
    kind = "int"
    for v in values:
        try:
            int(v)
            continue
        except ValueError:
            pass
        try:
            float(v)
        except ValueError:
            return "str"
        kind = "float"
    return kind


def _table_facts(facts: dict[str, Any], rows: list[list[str]], names: list[str], rule: Rule) -> None:
    facts["columns"] = {"eq": names}
    if not (rule.tier == "trained" and rule.rows_vary):
        facts["rows"] = {"eq": len(rows)}
    for i, name in enumerate(names):
        column = [r[i] if i < len(r) else "" for r in rows]
        kind = _classify(column)
        key = f"column {name}"
        # "0" and "1e-9" are both numbers: only the fixed tier tells integers from floats.
        exact_ints = kind == "int" and (rule.tier == "fixed" or name in rule.ids)
        facts[f"{key}:kind"] = {"eq": "str" if kind == "str" else "int" if exact_ints else "number"}
        if kind == "str" or exact_ints:
            if rule.tier != "trained" or name in rule.ids:
                facts[f"{key}:digest"] = {"eq": _sha("\x00".join(column))}
        else:
            _float_facts(facts, key, np.array(column, dtype=np.float64), rule.tier)


def _read_text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", errors="replace") as fh:
        return fh.read()


def _fasta_facts(facts: dict[str, Any], text: str, rule: Rule) -> None:
    names: list[str] = []
    seqs: list[str] = []
    seq: list[str] = []
    for line in text.splitlines():
        if line.startswith(">"):
            if names:
                seqs.append("".join(seq))
            names.append(line[1:].strip())
            seq = []
        else:
            seq.append(line.strip())
    if names:
        seqs.append("".join(seq))
    if rule.tier == "trained" and rule.rows_vary:
        # Which contigs land in which bin is the model's choice; each record must still be
        # one of the input contigs, whole (checked by the binning tests), and non-empty.
        facts["records_nonempty"] = {"eq": bool(names) and all(seqs)}
        return
    facts["records"] = {"eq": len(names)}
    facts["names"] = {"eq": _sha("\n".join(names))}
    facts["sequences"] = {"eq": _sha("\n".join(seqs))}


# JSON metric names with a documented range (the first matching pattern wins).
# None: unbounded on that side (JSON has no infinity).
METRIC_RANGES: tuple[tuple[re.Pattern[str], tuple[float | None, float | None]], ...] = (
    # Marker-gene bin quality is in percent, as CheckM reports it; contamination (extra
    # copies per marker) may pass 100.
    (re.compile(r"(^|[_/])completeness$", re.I), (0.0, 100.0)),
    (re.compile(r"(^|[_/])contamination$", re.I), (0.0, None)),
    (re.compile(r"pearson|spearman|(^|[_/])r$|corr(?!ect)|cosine|silhouette", re.I), (-1.0, 1.0)),
    (re.compile(r"(^|[_/])r2$|r_squared", re.I), (None, 1.0)),
    (
        re.compile(
            r"(^|[_/])acc(uracy)?($|_|@)|auc|auroc|auprc|(^|[_/])ap$|precision|recall|(^|[_/])f1|mrr|(^|[_/])ari$|nmi|ami$|purity|"
            r"homogeneity|consistency|hit|@",
            re.I,
        ),
        (0.0, 1.0),
    ),
    # Not losses in general: a Gaussian or Poisson NLL may be negative.
    (re.compile(r"(^|[_/])(mae|rmse|mse)($|_|\d)", re.I), (0.0, None)),
)


# Counts that share a word with a metric ("n_consistency_pairs").
COUNT = re.compile(r"^(n|num)_|count|size|support", re.I)


def metric_range(key: str) -> tuple[float | None, float | None] | None:
    """Documented range of a metric named ``key`` (the last part of a JSON path), or None."""
    if COUNT.search(key):
        return None
    return next((rng for pattern, rng in METRIC_RANGES if pattern.search(key)), None)


def _leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """JSON leaves by path, without volatile keys (timings, versions, hosts, paths)."""
    if isinstance(obj, dict):
        out = []
        for key in sorted(obj, key=str):
            if not VOLATILE_KEY.search(str(key)):
                out += _leaves(obj[key], f"{prefix}/{key}")
        return out
    if isinstance(obj, list):
        return [leaf for i, v in enumerate(obj) for leaf in _leaves(v, f"{prefix}[{i}]")]
    return [(prefix or "/", obj)]


def _best(comp: dict[str, Any], kind: str) -> float | None:
    """The best finite ``primary`` metric among a comparison's rows of ``kind`` (model/baseline)."""
    sign = 1 if comp["higher_is_better"] else -1
    values = [
        float(row[comp["primary"]])
        for name, row in comp["rows"].items()
        if comp.get("kinds", {}).get(name, "model") == kind
        and isinstance(row.get(comp["primary"]), (int, float))
        and math.isfinite(row[comp["primary"]])
    ]
    return max(values, key=lambda v: sign * v) if values else None


def _gap_facts(facts: dict[str, Any], data: dict[str, Any]) -> None:
    """Model-vs-baseline facts of a module summary's comparisons."""
    for i, comp in enumerate(data.get("comparisons", [])):
        primary = comp["primary"]
        facts[f"comparisons[{i}]:methods"] = {"eq": sorted(comp["rows"])}
        facts[f"comparisons[{i}]:primary"] = {"eq": primary}
        model, baseline = _best(comp, "model"), _best(comp, "baseline")
        if model is None or baseline is None:
            continue
        sign = 1 if comp["higher_is_better"] else -1
        scale = max(abs(model), abs(baseline))
        gap = sign * (model - baseline) / scale if scale > 0 else 0.0
        facts[f"comparisons[{i}] {primary}: model vs baseline"] = {
            "gap": gap,
            "model": model,
            "baseline": baseline,
        }


def _json_facts(facts: dict[str, Any], data: Any, rule: Rule) -> None:
    leaves = _leaves(data)
    if rule.tier != "trained":
        for key, value in leaves:
            if isinstance(value, float):
                facts[key] = {"num": value}
            elif isinstance(value, str) and NUMBER.search(value):
                # Messages restate numbers: the words exactly, the numbers with the tolerance.
                facts[key] = {"eq": NUMBER.sub("#", value)}
                facts[f"{key}:numbers"] = {"num": [float(m) for m in NUMBER.findall(value)]}
            else:
                facts[key] = {"eq": value}
        return
    # Trained: the structure (list positions collapsed: history lengths vary with early
    # stopping), finiteness, metric ranges and model-vs-baseline gaps.
    paths = sorted({re.sub(r"\[\d+\]", "[]", key) for key, _ in leaves})
    facts["keys"] = {"eq": _sha("\n".join(paths))}
    numbers = [v for _, v in leaves if isinstance(v, (int, float)) and not isinstance(v, bool)]
    facts["nonfinite"] = {"eq": sum(1 for v in numbers if not math.isfinite(v))}
    # One range fact per collapsed path (every epoch of a history): the lowest and highest value.
    seen: dict[str, list[float]] = {}
    for key, value in leaves:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            if metric_range(key.rsplit("/", 1)[-1]) is not None:
                seen.setdefault(re.sub(r"\[\d+\]", "[]", key), []).append(float(value))
    for key, values in seen.items():
        bounds = metric_range(key.rsplit("/", 1)[-1])
        assert bounds is not None  # only keys with a range were collected above
        facts[f"{key}:range"] = {
            "in": list(bounds),
            "value": [min(values), max(values)],
        }
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        facts["checks"] = {"eq": [r.get("name") for r in data["results"] if isinstance(r, dict)]}
    if isinstance(data, dict) and "comparisons" in data:
        _gap_facts(facts, data)
        facts["diagnostics"] = {"eq": sorted(d.get("name", "") for d in data.get("diagnostics", []))}


def _arrays(path: Path, suffix: str) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, array)`` of every array in an NPZ, HDF5 or NPY file, in name order."""
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            for key in sorted(npz.files):
                yield key, npz[key]
    elif suffix == ".npy":
        yield "array", np.load(path, allow_pickle=False)
    else:
        import h5py

        with h5py.File(path, "r") as f:
            names: list[str] = []
            f.visit(names.append)
            for key in sorted(names):
                if isinstance(f[key], h5py.Dataset):
                    yield key, np.asarray(f[key][()])


def _delimited_facts(facts: dict[str, Any], path: Path, suffix: str, rule: Rule) -> None:
    text = _read_text(path)
    delimiter = "," if suffix == ".csv" else "\t"
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith(("#", "track "))]
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
    if suffix in (".bedgraph", ".bed"):  # no header line: the format's own column names
        width = max((len(r) for r in rows), default=4)
        header = ["chrom", "start", "end", "value", *map(str, range(4, width))][:width]
        _table_facts(facts, rows, header, rule)
    else:
        _table_facts(facts, rows[1:], rows[0] if rows else [], rule)


def file_facts(path: str | os.PathLike, rule: Rule) -> dict[str, Any] | None:
    """``{key: fact}`` of one file under ``rule``, or None when the file is not an output to
    snapshot."""
    path = Path(path)
    if path.suffix in SKIP_SUFFIXES or path.name.startswith(("events.out.tfevents", ".snakemake")):
        return None
    facts: dict[str, Any] = {}
    name = path.name[: -len(".gz")] if path.suffix == ".gz" else path.name
    suffix = Path(name).suffix.lower()
    if suffix == ".json":
        _json_facts(facts, json.loads(path.read_text()), rule)
    elif suffix in (".npz", ".h5", ".hdf5", ".npy"):
        for key, array in _arrays(path, suffix):
            _array_facts(facts, key, array, rule)
    elif suffix in (".tsv", ".csv", ".bedgraph", ".bed", ".txt"):
        _delimited_facts(facts, path, suffix, rule)
    elif suffix in (".fa", ".fna", ".fasta"):
        _fasta_facts(facts, _read_text(path), rule)
    else:
        text = _read_text(path)
        facts["text"] = {"eq": _sha(NUMBER.sub("#", text))}
        if rule.tier != "trained":
            numbers = [float(m) for m in NUMBER.findall(text)]
            facts["numbers"] = {"num": numbers} if len(numbers) <= SMALL else {"num": _stats(numbers)}
    return facts


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {
        "n": int(arr.size),
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def entry(path: str | os.PathLike, rel: str) -> dict[str, Any] | None:
    """The snapshot entry of one file (``rel``: its path relative to results/)."""
    rule = rule_for(rel)
    facts = file_facts(path, rule)
    return None if facts is None else {"tier": rule.tier, "facts": facts}


def snapshot(results_dir: str | os.PathLike) -> dict[str, Any]:
    """The snapshot of every output under ``results_dir``: ``{"format", "files": {rel: entry}}``."""
    root = Path(results_dir)
    files: dict[str, Any] = {}
    grouped: dict[Rule, list[dict[str, Any]]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or SKIP_PARTS & set(rel.parts[:-1]) or rel.parts[0] == "report":
            continue
        e = entry(path, rel.as_posix())
        if e is None:
            continue
        rule = rule_for(rel.as_posix())
        if rule.files_vary:
            grouped.setdefault(rule, []).append(e["facts"])
        else:
            files[rel.as_posix()] = e
    for rule, members in grouped.items():
        # However many files the model made: at least one, each with non-empty records.
        nonempty = all(f.get("records_nonempty", {}).get("eq", True) for f in members)
        files[rule.pattern] = {"tier": rule.tier, "facts": {"records_nonempty": {"eq": nonempty}}}
    return {"format": FORMAT, "files": files}


# ---------------------------------------------------------------------------- comparison
def _fmt(x: Any) -> str:
    return f"{x:.6g}" if isinstance(x, float) else json.dumps(x)[:120]


def _num_difference(key: str, expected: Any, actual: Any, tol: Tolerance) -> str | None:
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(expected) != set(actual):
            return f"{key}: statistics {sorted(expected)} became {sorted(actual) if isinstance(actual, dict) else actual}"
        scale = max(abs(expected.get("min", 0.0)), abs(expected.get("max", 0.0)))
        for stat in expected:
            a, b = float(expected[stat]), float(actual[stat])
            if (a != b) if stat == "n" else not tol.close(a, b, scale):
                return f"{key}: {stat} {_fmt(a)} -> {_fmt(b)} (|diff| {abs(a - b):.3g}, tolerance {_tol(tol, a, b, scale)})"
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            n = len(actual) if isinstance(actual, list) else actual
            return f"{key}: {len(expected)} values became {n}"
        for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
            if not tol.close(float(a), float(b)):
                return f"{key}[{i}]: {_fmt(float(a))} -> {_fmt(float(b))} (|diff| {abs(a - b):.3g}, tolerance {_tol(tol, a, b)})"
        return None
    if not isinstance(actual, (int, float)) or not tol.close(float(expected), float(actual)):
        diff = (
            f" (|diff| {abs(expected - actual):.3g}, tolerance {_tol(tol, expected, actual)})"
            if isinstance(actual, (int, float))
            else ""
        )
        return f"{key}: {_fmt(expected)} -> {_fmt(actual)}{diff}"
    return None


def _tol(tol: Tolerance, a: float, b: float, scale: float = 0.0) -> str:
    return f"{tol.atol + tol.rtol * max(abs(a), abs(b), scale):.3g}"


def _fact_difference(key: str, expected: dict[str, Any], actual: dict[str, Any], tier: str) -> str | None:
    if "eq" in expected:
        if actual.get("eq") != expected["eq"]:
            return f"{key}: {_fmt(expected['eq'])} -> {_fmt(actual.get('eq'))}"
    elif "num" in expected:
        return _num_difference(
            key, expected["num"], actual.get("num"), TOLERANCE.get(tier, TOLERANCE["fixed"])
        )
    elif "in" in expected:
        lo, hi = expected["in"]
        value = actual.get("value")
        inside = isinstance(value, list) and all(
            (lo is None or v >= lo) and (hi is None or v <= hi) for v in value
        )
        if not inside:
            return f"{key}: values {_fmt(value)} outside the metric's range [{lo}, {hi}] (snapshot {_fmt(expected['value'])})"
    elif "gap" in expected:
        floor = min(expected["gap"], 0.0) - GAP_SLACK
        gap = actual.get("gap")
        if not isinstance(gap, (int, float)) or gap < floor:
            return (
                f"{key}: model {_fmt(actual.get('model'))} vs baseline {_fmt(actual.get('baseline'))}, "
                f"gap {_fmt(gap)} below {floor:.3g} (snapshot: model {_fmt(expected['model'])} vs baseline "
                f"{_fmt(expected['baseline'])}, gap {expected['gap']:.3g})"
            )
    return None


def compare(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Human-readable differences (missing, unexpected, changed files and which fact of a
    changed file differs, by how much); empty when the run holds to the snapshot."""
    if expected.get("format") != FORMAT:
        return [f"snapshot format {expected.get('format')} is not {FORMAT}: regenerate the snapshot"]
    exp, act = expected["files"], actual["files"]
    problems = [f"missing: {p}" for p in sorted(set(exp) - set(act))]
    problems += [f"unexpected: {p}" for p in sorted(set(act) - set(exp))]
    for path in sorted(set(exp) & set(act)):
        e, a = exp[path], act[path]
        if e["tier"] != a["tier"]:
            problems.append(f"changed: {path}: tier {e['tier']} -> {a['tier']} (the RULES table changed)")
            continue
        for key in sorted(set(e["facts"]) - set(a["facts"])):
            problems.append(f"changed: {path}: {key} missing")
        for key in sorted(set(a["facts"]) - set(e["facts"])):
            problems.append(f"changed: {path}: {key} unexpected")
        for key in sorted(set(e["facts"]) & set(a["facts"])):
            diff = _fact_difference(key, e["facts"][key], a["facts"][key], e["tier"])
            if diff is not None:
                problems.append(f"changed: {path}: {diff}")
    return problems
