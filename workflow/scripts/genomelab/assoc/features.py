"""Entity features: text fields as tokens, numeric and sequence features as one more token.

Each entity becomes a short sequence for the transformer encoders:

- one *text token* per description field (fields are separated by ``field_separator``,
  e.g. "thrA | fused aspartate kinase"), encoded by TF-IDF + truncated SVD (LSA) fitted on
  the fields of both vocabularies together (one word space, so "arg" in a regulator and in
  its target genes meet), or by a local sentence-transformers model;
- one *numeric token*: the entity table's numeric columns plus, when a ``sequence`` column
  is present, k-mer frequencies and GC content, z-scored per vocabulary.

All encoding happens here, once, on the CPU (never inside DataLoader workers). The fitted
featuriser is saved as plain arrays (``save_featurizer``) so that the inference step can
encode new entities exactly like the training ones without unpickling anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.assoc.data import EntityTable, read_entities
from genomelab.config import ConfigSection, from_schema
from genomelab.io.atomic import atomic_output

logger = logging.getLogger(__name__)

TEXT_ENCODERS = ("tfidf", "sentence-transformers")
ANALYZERS = ("word", "char_wb")
# What every featurizer file holds (Featurizer.to_arrays).
FEATURIZER_KEYS = ("config_json", "text_dim")
# The features file's key for the fingerprint of the featuriser that made it.
FINGERPRINT_KEY = "featurizer_fingerprint"
_BASE_CODE = np.full(256, -1, np.int64)
for _i, _b in enumerate(b"ACGT"):
    _BASE_CODE[_b] = _i


@dataclass
class FeatureConfig(ConfigSection):
    """Options of the features step (``assoc.features`` in config)."""

    SECTION = "assoc.features"

    text_encoder: str = from_schema("assoc.features.text_encoder")
    field_separator: str = from_schema("assoc.features.field_separator")
    max_fields: int = from_schema("assoc.features.max_fields")
    text_dim: int = from_schema("assoc.features.text_dim")
    analyzer: str = from_schema("assoc.features.analyzer")
    ngram_min: int = from_schema("assoc.features.ngram_min")
    ngram_max: int = from_schema("assoc.features.ngram_max")
    max_vocabulary: int = from_schema("assoc.features.max_vocabulary")
    sentence_model_path: str | None = from_schema("assoc.features.sentence_model_path")
    kmer: int = from_schema("assoc.features.kmer")

    def __post_init__(self) -> None:
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(
                f"features.text_encoder must be one of {TEXT_ENCODERS}, not {self.text_encoder!r}"
            )
        if self.analyzer not in ANALYZERS:
            raise ValueError(f"features.analyzer must be one of {ANALYZERS}, not {self.analyzer!r}")
        for name in ("max_fields", "text_dim", "ngram_min", "max_vocabulary", "kmer"):
            if getattr(self, name) < 1:
                raise ValueError(f"features.{name} must be >= 1, not {getattr(self, name)}")
        if self.ngram_max < self.ngram_min:
            raise ValueError(f"features.ngram_max ({self.ngram_max}) < ngram_min ({self.ngram_min})")
        if self.kmer > 8:
            raise ValueError(f"features.kmer must be <= 8 (4^k columns), not {self.kmer}")
        if self.text_encoder == "sentence-transformers" and not self.sentence_model_path:
            raise ValueError(
                "features.sentence_model_path is required with text_encoder "
                "'sentence-transformers' (models are never downloaded at run time)"
            )
        if not self.field_separator:
            raise ValueError("features.field_separator must not be empty")


def split_fields(descriptions: list[str] | None, n: int, separator: str, max_fields: int) -> list[list[str]]:
    """Per entity, its non-empty description fields (at most ``max_fields``)."""
    if descriptions is None:
        return [[] for _ in range(n)]
    out = []
    for text in descriptions:
        fields = [f.strip() for f in str(text).split(separator) if f.strip()]
        out.append(fields[:max_fields])
    return out


def kmer_profile(sequences: list[str], k: int) -> np.ndarray:
    """[n, 4^k + 1] k-mer frequencies (windows with non-ACGT bases skipped) and GC fraction.

    Vectorised over all sequences at once: codes of every base, a rolling base-4 index per
    window, then one ``bincount`` over (entity, k-mer) pairs.
    """
    n, n_kmers = len(sequences), 4**k
    lengths = np.fromiter((len(s) for s in sequences), np.int64, n)
    joined = np.frombuffer("".join(sequences).upper().encode("ascii"), np.uint8)
    codes = _BASE_CODE[joined]
    owner = np.repeat(np.arange(n), lengths)
    counts = np.zeros((n, n_kmers), np.float64)
    if len(codes) >= k:
        n_win = len(codes) - k + 1
        index = np.zeros(n_win, np.int64)
        valid = np.ones(n_win, bool)
        for j in range(k):
            part = codes[j : j + n_win]
            index = index * 4 + np.maximum(part, 0)
            valid &= part >= 0
        # A window must lie inside one sequence.
        valid &= owner[:n_win] == owner[k - 1 :]
        flat = owner[:n_win][valid] * n_kmers + index[valid]
        counts = np.bincount(flat, minlength=n * n_kmers).reshape(n, n_kmers).astype(np.float64)
    freq = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    acgt = np.bincount(owner[codes >= 0] * 4 + codes[codes >= 0], minlength=n * 4).reshape(n, 4)
    gc = (acgt[:, 1] + acgt[:, 2]) / np.maximum(acgt.sum(axis=1), 1)
    return np.concatenate([freq, gc[:, None]], axis=1).astype(np.float32)


class Featurizer:
    """Fitted text and numeric encoders of both vocabularies (see module docstring)."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.vocabulary: np.ndarray | None = None  # [V] terms
        self.idf: np.ndarray | None = None  # [V]
        self.components: np.ndarray | None = None  # [text_dim, V]
        self.numeric_mean: dict[str, np.ndarray] = {}
        self.numeric_std: dict[str, np.ndarray] = {}
        self.numeric_names: dict[str, list[str]] = {}
        self.text_dim = config.text_dim
        self._st_model = None
        self._fitted_vectorizer = None

    # ------------------------------------------------------------------ text
    def _vectorizer(self, vocabulary: dict[str, int] | None = None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        c = self.config
        return TfidfVectorizer(
            analyzer=c.analyzer,
            ngram_range=(c.ngram_min, c.ngram_max),
            lowercase=True,
            sublinear_tf=True,
            max_features=c.max_vocabulary,
            vocabulary=vocabulary,
            dtype=np.float32,
        )

    def fit_text(self, fields: list[str], seed: int = 0) -> None:
        if self.config.text_encoder != "tfidf":
            return
        from sklearn.decomposition import TruncatedSVD

        if not fields:
            self.vocabulary, self.idf = np.array([], str), np.zeros(0, np.float32)
            self.components = np.zeros((0, 0), np.float32)
            self.text_dim = 1
            return
        vec = self._vectorizer()
        x = vec.fit_transform(fields)
        terms = vec.get_feature_names_out()
        # SVD needs fewer components than features; tiny vocabularies get fewer dims.
        dim = max(1, min(self.config.text_dim, x.shape[1] - 1, x.shape[0] - 1))
        svd = TruncatedSVD(n_components=dim, random_state=seed, algorithm="randomized")
        svd.fit(x)
        self.vocabulary, self.idf = np.asarray(terms, dtype=str), vec.idf_.astype(np.float32)
        self.components = svd.components_.astype(np.float32)
        self.text_dim = dim
        logger.info(
            "TF-IDF vocabulary %d terms, LSA %d dims explain %.1f%% of variance",
            len(terms),
            dim,
            100 * float(svd.explained_variance_ratio_.sum()),
        )

    def encode_text(self, fields: list[str]) -> np.ndarray:
        """[len(fields), text_dim] float32 embeddings of single fields."""
        if not fields:
            return np.zeros((0, self.text_dim), np.float32)
        if self.config.text_encoder == "sentence-transformers":
            return self._encode_sentence_transformers(fields)
        if self.components is None or self.components.size == 0:
            return np.zeros((len(fields), self.text_dim), np.float32)
        if self._fitted_vectorizer is None:
            # Built once: a 20k-term vocabulary dict per call would dominate query latency.
            self._fitted_vectorizer = self._vectorizer({t: i for i, t in enumerate(self.vocabulary.tolist())})
            self._fitted_vectorizer.idf_ = self.idf
        x = self._fitted_vectorizer.transform(fields)
        return np.asarray(x @ self.components.T, dtype=np.float32)

    def _encode_sentence_transformers(self, fields: list[str]) -> np.ndarray:
        path = Path(self.config.sentence_model_path)
        if not path.exists():
            raise FileNotFoundError(
                f"sentence-transformers model {path} does not exist (models are "
                "never downloaded at run time; copy one there first)"
            )
        if self._st_model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ImportError(
                    "features.text_encoder 'sentence-transformers' needs the "
                    "sentence-transformers package (pip install sentence-transformers)"
                ) from exc
            self._st_model = SentenceTransformer(str(path), device="cpu")
        emb = self._st_model.encode(fields, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        self.text_dim = emb.shape[1]
        return emb.astype(np.float32)

    # --------------------------------------------------------------- numeric
    def raw_numeric(self, table: EntityTable) -> tuple[np.ndarray, list[str]]:
        parts, names = [table.numeric], list(table.numeric_names)
        if table.sequences is not None:
            parts.append(kmer_profile(table.sequences, self.config.kmer))
            names += [f"kmer{i}" for i in range(4**self.config.kmer)] + ["gc"]
        return np.concatenate(parts, axis=1).astype(np.float32), names

    def fit_numeric(self, table: EntityTable) -> None:
        raw, names = self.raw_numeric(table)
        self.numeric_names[table.side] = names
        self.numeric_mean[table.side] = raw.mean(axis=0) if len(raw) else np.zeros(raw.shape[1], np.float32)
        std = raw.std(axis=0) if len(raw) else np.ones(raw.shape[1], np.float32)
        # Constant columns carry no information; a unit std keeps them at zero.
        self.numeric_std[table.side] = np.where(std > 1e-8, std, 1.0).astype(np.float32)

    # ------------------------------------------------------------- encoding
    def fit(self, sources: EntityTable, targets: EntityTable, seed: int = 0) -> Featurizer:
        c = self.config
        fields = [
            f
            for t in (sources, targets)
            for fs in split_fields(t.descriptions, len(t), c.field_separator, c.max_fields)
            for f in fs
        ]
        self.fit_text(fields, seed)
        for t in (sources, targets):
            self.fit_numeric(t)
        return self

    def transform(self, table: EntityTable) -> dict[str, np.ndarray]:
        """Arrays of one vocabulary.

        Returns ``text`` [n, max_fields, text_dim] float32, ``text_mask`` [n, max_fields] bool
        (True = a real field), ``numeric`` [n, n_numeric] float32 (z-scored) and ``ids``.
        """
        c = self.config
        fields = split_fields(table.descriptions, len(table), c.field_separator, c.max_fields)
        flat = [f for fs in fields for f in fs]
        emb = self.encode_text(flat)
        n = len(table)
        text = np.zeros((n, c.max_fields, self.text_dim), np.float32)
        mask = np.zeros((n, c.max_fields), bool)
        counts = np.fromiter((len(fs) for fs in fields), np.int64, n)
        rows = np.repeat(np.arange(n), counts)
        cols = np.concatenate([np.arange(k) for k in counts]) if n else np.zeros(0, np.int64)
        text[rows, cols] = emb
        mask[rows, cols] = True
        raw, names = self.raw_numeric(table)
        if table.side in self.numeric_names and names != self.numeric_names[table.side]:
            other = "target" if table.side == "source" else "source"
            hint = ""
            if names == self.numeric_names.get(other):
                hint = (
                    f"; they are the {other} entities' columns: predict them as {other} "
                    f"entities (genomelab predict --side {other}; in a config "
                    f"assoc.infer.side: {other})"
                )
            where = f"{table.source}: " if table.source else ""
            raise ValueError(
                f"{where}{table.side} entities have numeric columns {names[:5]}... but the "
                f"featurizer was fitted on {self.numeric_names[table.side][:5]}... for {table.side} "
                f"entities (numeric columns of the table, and kmer*/gc from a sequence column){hint}"
            )
        numeric = (raw - self.numeric_mean[table.side]) / self.numeric_std[table.side]
        if numeric.shape[1] == 0 and not mask.any(axis=1).all():
            empty = [table.ids[i] for i in np.flatnonzero(~mask.any(axis=1))[:5]]
            raise ValueError(
                f"{table.side} entities {empty} have neither description fields nor numeric features"
            )
        return {
            "ids": np.asarray(table.ids, dtype=str),
            "text": text,
            "text_mask": mask,
            "numeric": numeric.astype(np.float32),
        }

    # ------------------------------------------------------------ save/load
    def to_arrays(self) -> dict[str, Any]:
        arrays: dict[str, Any] = {
            "config_json": np.asarray(json.dumps(asdict(self.config))),
            "text_dim": np.asarray(self.text_dim),
        }
        if self.vocabulary is not None:
            arrays.update(vocabulary=self.vocabulary, idf=self.idf, components=self.components)
        for side in self.numeric_mean:
            arrays[f"{side}_mean"] = self.numeric_mean[side]
            arrays[f"{side}_std"] = self.numeric_std[side]
            arrays[f"{side}_names"] = np.asarray(self.numeric_names[side], dtype=str)
        return arrays

    def fingerprint(self) -> str:
        """SHA-256 (hex) of everything the featuriser encodes with: its settings, the ordered
        TF-IDF vocabulary, IDF weights and LSA components, and each side's numeric column
        names, means and SDs. Two featurisers with the same widths but another vocabulary or
        fit differ here; a saved and reloaded one does not."""
        digest = hashlib.sha256()
        for key, value in sorted(self.to_arrays().items()):
            a = np.asarray(value)
            digest.update(f"{key}\x1e{a.shape}\x1e".encode())
            if a.dtype.kind in "US":
                digest.update("\x1f".join(map(str, a.ravel().tolist())).encode())
            else:
                digest.update(a.dtype.str.encode() + np.ascontiguousarray(a).tobytes())
        return digest.hexdigest()

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> Featurizer:
        f = cls(FeatureConfig(**json.loads(str(arrays["config_json"]))))
        f.text_dim = int(arrays["text_dim"])
        if "vocabulary" in arrays:
            f.vocabulary, f.idf, f.components = arrays["vocabulary"], arrays["idf"], arrays["components"]
        for side in ("source", "target"):
            if f"{side}_mean" in arrays:
                f.numeric_mean[side] = arrays[f"{side}_mean"]
                f.numeric_std[side] = arrays[f"{side}_std"]
                f.numeric_names[side] = arrays[f"{side}_names"].tolist()
        return f


def save_featurizer(featurizer: Featurizer, path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **featurizer.to_arrays())


def load_featurizer(path: str | os.PathLike) -> Featurizer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"featuriser file {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a featurizer file (not an NPZ archive: {exc})") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a featurizer file (a single .npy array, not an NPZ archive)")
    with loaded as data:
        missing = [k for k in FEATURIZER_KEYS if k not in data.files]
        if missing:
            raise ValueError(
                f"{path}: not a featurizer file (an NPZ without {missing}; it holds "
                f"{sorted(data.files)[:8]}); give the run's features/featurizer.npz"
            )
        try:
            return Featurizer.from_arrays({k: data[k] for k in data.files})
        except (ValueError, TypeError, KeyError, zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"{path}: not a featurizer file ({type(exc).__name__}: {exc})") from exc


def save_features(
    path: str | os.PathLike, arrays_by_side: dict[str, dict[str, np.ndarray]], fingerprint: str = ""
) -> None:
    """One NPZ with ``{side}_{name}`` arrays (ids, text, text_mask, numeric) per side, and the
    :meth:`Featurizer.fingerprint` of the featuriser that made them (training records it in
    the exported model)."""
    flat: dict[str, np.ndarray] = {
        f"{side}_{k}": v for side, arrays in arrays_by_side.items() for k, v in arrays.items()
    }
    if fingerprint:
        # Raw digest bytes, not text: the run snapshot compares no bytes of the trained tier
        # (the fingerprint covers the LSA fit, whose floats differ between CPUs).
        flat[FINGERPRINT_KEY] = np.frombuffer(bytes.fromhex(fingerprint), np.uint8)
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **flat)


def features_fingerprint(path: str | os.PathLike) -> str:
    """The featuriser fingerprint a features file records; "" for files written before it was."""
    with np.load(path, allow_pickle=False) as data:
        return data[FINGERPRINT_KEY].tobytes().hex() if FINGERPRINT_KEY in data.files else ""


def load_features(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file {path} does not exist")
    out: dict[str, dict[str, np.ndarray]] = {"source": {}, "target": {}}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            if key == FINGERPRINT_KEY:
                continue
            side, name = key.split("_", 1)
            out[side][name] = data[key]
    for side, arrays in out.items():
        missing = {"ids", "text", "text_mask", "numeric"} - set(arrays)
        if missing:
            raise ValueError(f"features file {path} lacks {side} arrays {sorted(missing)}")
    return out


def build_features(
    data_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    featurizer_path: str | os.PathLike,
    config: FeatureConfig,
    seed: int,
) -> dict[str, Any]:
    """Fit the featuriser on both vocabularies and write the entity feature arrays."""
    d = Path(data_dir)
    sources, targets = read_entities(d / "sources.tsv", "source"), read_entities(d / "targets.tsv", "target")
    featurizer = Featurizer(config).fit(sources, targets, seed)
    arrays = {"source": featurizer.transform(sources), "target": featurizer.transform(targets)}
    save_features(features_path, arrays, featurizer.fingerprint())
    save_featurizer(featurizer, featurizer_path)
    shapes = {side: {k: list(v.shape) for k, v in a.items()} for side, a in arrays.items()}
    logger.info("features: %s", shapes)
    return shapes
