"""An HTTP server for one exported model (or, for tissue, regulon and assoc, several averaged
as ``genomelab predict`` averages them): FastAPI endpoints over the predict functions.

``GET /health``: liveness and what is loaded (``model``, or ``model_files``). ``GET /card``: the model card (what it was
trained on, its test metrics and its comparison with the baselines where the run wrote
them, the genomelab versions). ``POST /predict``: the loaded module's prediction, with a
request body validated by pydantic (a bad request gets 422 naming the field, an input that
does not match the model's IDs 422 with the mismatch message). Array fields come as JSON
lists or, compactly, as base64 float32 (``means_b64``, ``betas_b64``); either is checked the
same way (length, values in [0, 1] or missing). The body is parsed by pydantic straight from
the request bytes, and the prediction runs on the event loop: one query at a time (the
model uses one thread anyway), without handing each query to a worker thread and back
under the GIL. The model is read with ``weights_only=True``
(:func:`genomelab.train.export.load_exported`): nothing is unpickled.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at
# run time, and a postponed one is only a string.
import base64
import binascii
import logging
import math
import os
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import to_json

from genomelab import __version__
from genomelab.config import schema_bounds, schema_default, schema_node
from genomelab.io.ids import relaxed_by
from genomelab.predict.common import model_card
from genomelab.train.export import (
    ExportError,
    load_exported,
    model_files,
    module_of_kind,
    refuse_repeated_files,
)

logger = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(ValueError):
    """A validator's error about one field of its model (``field``: a name, or a dotted path
    below the model such as ``genes.2``): the 422's ``loc`` goes down to that field instead
    of stopping at the model (``["body", "samples", 0, "coverage"]``, not ``[..., 0]``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.loc = tuple(int(p) if p.isdigit() else p for p in field.split("."))


def _given(model: BaseModel, field: str) -> str:
    """``field`` or ``<field>_b64``: whichever form the request used (the one to name)."""
    return f"{field}_b64" if getattr(model, f"{field}_b64", None) is not None else field


def _from_base64(value: Any) -> np.ndarray:
    """float32 [n] from base64 of little-endian float32 bytes (a request's compact form)."""
    if not isinstance(value, str):
        raise ValueError("must be a base64 string of little-endian float32 values")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"is not valid base64 ({exc})") from None
    if not raw or len(raw) % 4:
        raise ValueError(f"decodes to {len(raw)} bytes, not a whole non-zero number of float32 values")
    return np.frombuffer(raw, "<f4")


def _to_base64(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, "<f4").tobytes()).decode()


# Arrays sent as base64 float32: one decode instead of a JSON number per value, which is
# what a 51,089-region sample costs in the list form (see docs/predict.md, Latency).
Float32Base64 = Annotated[
    np.ndarray,
    PlainValidator(_from_base64),
    PlainSerializer(_to_base64, return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64", "description": "little-endian float32"}),
]


def _values(
    listed: list[float | None] | None, packed: np.ndarray | None, field: str, dtype: type = np.float32
) -> np.ndarray:
    """[n] values of a field given as a JSON list (null = NaN) or as ``<field>_b64``."""
    if (listed is None) == (packed is None):
        raise ValueError(f"give exactly one of {field} (a list) and {field}_b64 (base64 float32)")
    if packed is not None:
        return packed
    return np.array(listed, dtype=dtype)  # None -> NaN


def _check_unit(values: np.ndarray, field: str) -> None:
    # NaN is "missing"; anything else must be a fraction, as read_features requires of files.
    bad = np.isinf(values) | (values < 0) | (values > 1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise FieldError(
            field,
            f"{int(bad.sum())} value(s) are not in [0, 1] or missing (NaN/null), "
            f"first {float(values[first])} at position {first}",
        )


# The JSON-schema keyword naming the config key a request field stands for (in /openapi.json).
CONFIG_KEY = "x-config-key"


def key_field(key: str, default: Any = None, description: str | None = None) -> Any:
    """A request field standing for config key ``key``: the key's range (pydantic ``ge``/``gt``/
    ``le``/``lt``, so /openapi.json shows it) or its values, read from the schema as
    ``genomelab predict``'s options read theirs (``in_range_of``): a request is refused as the
    option and the key would be, and the bounds are written down once, in the schema."""
    node = schema_node(key)
    extra: dict[str, Any] = dict(schema_bounds(key))
    if "enum" in node:
        extra["pattern"] = "^(" + "|".join(re.escape(str(v)) for v in node["enum"]) + ")$"
    return Field(default, description=description or key, json_schema_extra={CONFIG_KEY: key}, **extra)


class TissueSample(_Strict):
    sample: str = Field(min_length=1)
    means: list[float | None] | None = Field(
        None, min_length=1, description="region means in [0, 1]; null = uncovered"
    )
    means_b64: Float32Base64 | None = Field(
        None, description="the compact form of means: base64 of little-endian float32, NaN = uncovered"
    )
    coverage: list[float] | None = Field(
        None, description="valid calls per region (default: 1 where covered)"
    )
    coverage_b64: Float32Base64 | None = Field(None, description="the compact form of coverage")
    regions: list[str] | None = Field(
        None, description="region IDs of means (default: the model's, in order)"
    )
    _means: np.ndarray = PrivateAttr()
    _coverage: np.ndarray = PrivateAttr()

    @model_validator(mode="after")
    def _arrays(self) -> "TissueSample":
        self._means = _values(self.means, self.means_b64, "means")
        _check_unit(self._means, _given(self, "means"))
        if self.coverage is None and self.coverage_b64 is None:
            self._coverage = np.isfinite(self._means).astype(np.float32)
        else:
            self._coverage = _values(self.coverage, self.coverage_b64, "coverage")
        coverage = _given(self, "coverage")
        if len(self._coverage) != len(self._means):
            raise FieldError(coverage, f"{len(self._coverage)} values for {len(self._means)} means")
        if not np.isfinite(self._coverage).all() or (self._coverage < 0).any():
            bad = np.flatnonzero(~np.isfinite(self._coverage) | (self._coverage < 0))
            raise FieldError(
                coverage,
                f"every value must be finite and >= 0; {len(bad)} are not, "
                f"first {float(self._coverage[bad[0]])} at position {int(bad[0])}",
            )
        if self.regions is not None and len(self.regions) != len(self._means):
            raise FieldError("regions", f"{len(self.regions)} region IDs for {len(self._means)} means")
        return self


class TissueRequest(_Strict):
    samples: list[TissueSample] = Field(min_length=1)
    min_region_match: float | None = key_field(
        "tissue.predict.min_region_match", description="default: tissue.predict.min_region_match's"
    )
    min_covered: float | None = key_field(
        "tissue.predict.min_covered", description="default: tissue.predict.min_covered's"
    )
    threshold: float | None = key_field(
        "tissue.calibration.threshold",
        description='calibrated confidence below which a sample is "not classifiable" '
        "(default: the model's, its run's tissue.calibration.threshold)",
    )


class DeconvSample(_Strict):
    sample: str = Field(min_length=1)
    betas: list[float | None] | None = Field(
        None, min_length=1, description="beta values in [0, 1]; null = missing"
    )
    betas_b64: Float32Base64 | None = Field(
        None, description="the compact form of betas: base64 of little-endian float32, NaN = missing"
    )
    regions: list[str] | None = Field(
        None, description="region IDs of betas (default: the model's, in order)"
    )
    _betas: np.ndarray = PrivateAttr()

    @model_validator(mode="after")
    def _arrays(self) -> "DeconvSample":
        # JSON numbers are doubles, and deconv_infer reads betas as float64 (NNLS is).
        self._betas = _values(self.betas, self.betas_b64, "betas", np.float64)
        _check_unit(self._betas, _given(self, "betas"))
        if self.regions is not None and len(self.regions) != len(self._betas):
            raise FieldError("regions", f"{len(self.regions)} region IDs for {len(self._betas)} betas")
        return self


class DeconvRequest(_Strict):
    samples: list[DeconvSample] = Field(min_length=1)
    min_match: float | None = key_field(
        "deconv.infer.min_match", description="default: deconv.infer.min_match's"
    )
    unknown_component: bool | None = key_field(
        "deconv.reference.unknown_component",
        description="NNLS reports 1 - sum as unknown (default: deconv.reference.unknown_component)",
    )


class AssocEntity(BaseModel):
    # Numeric feature columns are extra fields, named as in the training entity table.
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    description: str | None = None
    sequence: str | None = None


class AssocRequest(_Strict):
    entities: list[AssocEntity] = Field(min_length=1)
    side: str = key_field("assoc.infer.side", schema_default("assoc.infer.side"))
    top_k: int = key_field("assoc.infer.top_k", schema_default("assoc.infer.top_k"))


class RegulonGene(_Strict):
    # Relative to the request's sequence: 0-based half-open, so [0, len) is all of it; a
    # gene may reach past either end (its flags are clipped, as training clips windows).
    start: int
    end: int
    strand: Literal["+", "-"]

    @model_validator(mode="after")
    def _span(self) -> "RegulonGene":
        if self.end <= self.start:
            raise FieldError("end", f"{self.end} must be above start ({self.start}): 0-based, half-open")
        return self


# What a FASTA record may hold and genomelab reads: A/C/G/T, and N or an IUPAC ambiguity
# code, either case, read as N (genomelab.regulon.targets._LUT, as for a FASTA file).
IUPAC_N = "NRYKMSWBDHV"
_BASES = re.compile(f"[ACGT{IUPAC_N}]+", re.IGNORECASE)


def _check_bases(sequence: str) -> str:
    if not _BASES.fullmatch(sequence):
        bad = next(i for i, c in enumerate(sequence) if not _BASES.fullmatch(c))
        raise ValueError(
            f"{sequence[bad]!r} at position {bad} is not a base: A, C, G, T, or N or an IUPAC "
            f"ambiguity code ({' '.join(IUPAC_N[1:])}), either case; codes are read as N, as in a FASTA file"
        )
    return sequence


class RegulonRequest(_Strict):
    sequence: Annotated[str, AfterValidator(_check_bases)] = Field(
        min_length=1,
        description="A/C/G/T; N and IUPAC ambiguity codes (either case) are read as N, as in a FASTA file",
        json_schema_extra={"pattern": f"^[ACGT{IUPAC_N}{IUPAC_N.lower()}acgt]+$"},
    )
    contig: str = "query"
    start: int = Field(0, ge=0)
    genes: list[RegulonGene] | None = Field(
        None,
        description="genes of the sequence, relative to it (0-based half-open start, end; strand): "
        "required by models trained with regulon.model.inputs sequence+annotation, refused by others",
    )

    @model_validator(mode="after")
    def _genes_overlap(self) -> "RegulonRequest":
        # A gene outside the sequence changes nothing: most likely contig coordinates sent
        # where coordinates relative to the sequence are expected.
        for i, g in enumerate(self.genes or ()):
            if g.end <= 0 or g.start >= len(self.sequence):
                raise FieldError(
                    f"genes.{i}",
                    f"[{g.start}, {g.end}) lies outside the sequence [0, {len(self.sequence)}); "
                    "gene coordinates are relative to the sequence",
                )
        return self


class BinningContig(_Strict):
    name: str = Field(min_length=1)
    sequence: str = Field(min_length=1)
    depth: list[float] | None = Field(
        None,
        min_length=1,
        description="mean read depth in each sample (models trained with abundances: one value per sample)",
    )

    @model_validator(mode="after")
    def _depths(self) -> "BinningContig":
        if self.depth is not None and not all(math.isfinite(v) and v >= 0 for v in self.depth):
            raise FieldError("depth", f"every value must be finite and >= 0, not {self.depth}")
        return self


class BinningRequest(_Strict):
    contigs: list[BinningContig] = Field(min_length=1)


def _model_order(values: np.ndarray, regions: list[str] | None, n_model: int, field: str) -> None:
    if regions is None and len(values) != n_model:
        raise ValueError(f"{field}: {len(values)} values without region IDs; the model has {n_model} regions")


class _Tissue:
    def __init__(self, paths: list[str], opts: dict[str, Any]) -> None:
        from genomelab.io.ids import N_SHOWN
        from genomelab.predict.tissue import load_predictor

        # One file, or several averaged as genomelab predict tissue averages them.
        self.p = load_predictor(paths[0] if len(paths) == 1 else paths, opts.get("device", "cpu"))
        self.defaults = {
            k: schema_default(f"tissue.predict.{k}") for k in ("min_region_match", "min_covered")
        }
        if len(paths) > 1:
            # The order of means sent without region IDs: the files' regions joined (the
            # first file's when all list the same).
            regions = self.p.regions.tolist()
            self.card = {"regions": {"n": len(regions), "first": regions[:N_SHOWN]}}

    def _threshold(self) -> float:
        """The threshold the served file records; files that record different ones leave it
        to the request (the predict path's advice, a config key and an option, is no field)."""
        try:
            return self.p.threshold
        except ValueError:
            recorded = {p.path: p.threshold for p in self.p.predictors}
            raise ValueError(
                f"threshold: none given, and the served model files record different ones ({recorded}): "
                "send threshold with the request"
            ) from None

    def __call__(self, req: TissueRequest) -> dict[str, Any]:
        from genomelab.predict.tissue import TissueInputs

        n_model = len(self.p.regions)
        records = []
        threshold = self._threshold() if req.threshold is None else float(req.threshold)
        for i, s in enumerate(req.samples):
            _model_order(s._means, s.regions, n_model, f"samples.{i}.{_given(s, 'means')}")
            # Without IDs the values are in the model's order: passing the model's own array
            # lets the ID join skip comparing 51,089 strings.
            regions = np.asarray(s.regions) if s.regions is not None else self.p.regions
            inputs = TissueInputs(
                np.asarray([s.sample]), regions, s._means[None], s._coverage[None], f"samples.{i}.regions"
            )
            with relaxed_by("min_region_match in the request"):
                pred = self.p.predict(
                    inputs,
                    self.defaults["min_region_match"]
                    if req.min_region_match is None
                    else req.min_region_match,
                    self.defaults["min_covered"] if req.min_covered is None else req.min_covered,
                    threshold,
                )
            records += pred.records()
        # What decided `classifiable`, as predictions.json says it: the threshold applied
        # (the request's, else the model's) and whether the confidence it was compared with
        # is calibrated (false for one member's file: raw probabilities, threshold 0).
        return {
            "classes": self.p.classes,
            "threshold": threshold,
            "calibrated": self.p.calibrated,
            "n_flagged": sum(r["flagged"] for r in records),
            "n_not_classifiable": sum(not r["classifiable"] for r in records),
            "samples": records,
        }


class _Deconv:
    def __init__(self, paths: list[str], opts: dict[str, Any]) -> None:
        from genomelab.predict.deconv import DeconvPredictor

        (path,) = paths  # one file (create_app refuses several)
        self.p = DeconvPredictor(path, opts.get("device", "cpu"))
        self.min_match = schema_default("deconv.infer.min_match")
        self.unknown_component = schema_default("deconv.reference.unknown_component")
        self.profiles, reference = self.p.nnls_reference(opts.get("reference"))
        from genomelab.deconv.model import weighted_record

        # The card says which reference NNLS and the weighted NNLS use, and what the latter is.
        self.weighted = weighted_record(self.p.model, self.profiles)
        self.card = {"reference": reference, "weighted_nnls": self.weighted}

    def __call__(self, req: DeconvRequest) -> dict[str, Any]:
        from genomelab.deconv.infer import check_observed
        from genomelab.deconv.nnls import deconvolve_nnls, deconvolve_weighted

        n_model = len(self.p.regions)
        min_match = self.min_match if req.min_match is None else req.min_match
        unknown = self.unknown_component if req.unknown_component is None else req.unknown_component
        rows, matched = [], []
        for i, s in enumerate(req.samples):
            betas = f"samples.{i}.{_given(s, 'betas')}"
            _model_order(s._betas, s.regions, n_model, betas)
            regions = np.asarray(s.regions) if s.regions is not None else self.p.regions
            with relaxed_by("min_match in the request"):
                aligned, match = self.p.align(
                    s._betas[None].astype(np.float64), regions, min_match, f"samples.{i}.regions"
                )
            check_observed(aligned, [s.sample], len(self.p.tissues), betas)
            rows.append(aligned[0])
            matched.append(match.n_matched)
        aligned = np.stack(rows)
        props = self.p.predict_arrays(aligned)
        nnls = deconvolve_nnls(self.profiles, aligned, unknown)
        # Without room for an offset the weighted NNLS is plain NNLS (checked once, at load,
        # instead of warning on every request).
        weighted = (
            deconvolve_weighted(self.profiles, aligned, self.weighted["weight_floor"]).proportions
            if self.weighted["offset"]
            else deconvolve_nnls(self.profiles, aligned).proportions
        )
        out = []
        for i, s in enumerate(req.samples):
            by_nnls = dict(zip(self.p.tissues, nnls.proportions[i].tolist(), strict=True))
            if unknown:
                by_nnls["unknown"] = float(nnls.unknown[i])
            out.append(
                {
                    "sample": s.sample,
                    "proportions": dict(zip(self.p.tissues, props[i].tolist(), strict=True)),
                    "nnls": by_nnls,
                    "weighted_nnls": dict(zip(self.p.tissues, weighted[i].tolist(), strict=True)),
                    "n_regions_matched": matched[i],
                }
            )
        return {"tissues": self.p.tissues, "unknown_component": unknown, "samples": out}


class _Assoc:
    def __init__(self, paths: list[str], opts: dict[str, Any]) -> None:
        from genomelab.predict.assoc import AssocPredictor

        if not opts.get("featurizer"):
            raise ValueError("serving an assoc model needs --featurizer (the run's features/featurizer.npz)")
        # One file, or several ranked by the mean of their link probabilities.
        model = paths[0] if len(paths) == 1 else paths
        self.p = AssocPredictor(model, opts["featurizer"], opts.get("device", "cpu"))

    def __call__(self, req: AssocRequest) -> dict[str, Any]:
        records = [e.model_dump(exclude_none=True) for e in req.entities]
        df = self.p.rank_records(records, req.side, req.top_k)
        return {"side": req.side, "predictions": df.to_dict(orient="records")}


class _Regulon:
    def __init__(self, paths: list[str], opts: dict[str, Any]) -> None:
        from genomelab.predict.regulon import load_predictors

        # One network, or several whose tracks and pair calls are averaged (the checks and
        # the averaging of genomelab predict regulon).
        self.predictors = load_predictors(paths, opts.get("device", "cpu"))

    def __call__(self, req: RegulonRequest) -> dict[str, Any]:
        from genomelab.predict.regulon import encode, predict_averaged, route_genes

        genes = None
        if req.genes is not None:
            import pandas as pd

            genes = pd.DataFrame(
                {
                    "id": [str(i) for i in range(len(req.genes))],  # pairs name genes by index
                    "start": [g.start + req.start for g in req.genes],
                    "end": [g.end + req.start for g in req.genes],
                    "strand": [g.strand for g in req.genes],
                }
            )
        try:
            routed = route_genes(self.predictors, genes is not None)
        except ValueError as exc:
            raise ValueError(f"genes: {exc}") from None  # 422 naming the field to fix
        t = predict_averaged(self.predictors, routed, encode(req.sequence), req.contig, req.start, genes)
        tracks = {
            head: {
                "step_bp": t.steps[head],
                **{
                    strand: [None if not np.isfinite(v) else float(v) for v in arr[row]]
                    for row, strand in enumerate(("plus", "minus"))
                },
            }
            for head, arr in t.tracks.items()
        }
        out = {
            "contig": t.contig,
            "start": t.start,
            "end": t.end,
            # Bases read as N (N, IUPAC codes), as tracks.json of the FASTA path counts them.
            "n_unknown_bases": t.n_unknown_bases,
            "tracks": tracks,
        }
        if t.pairs is not None:  # a model with an operon pair readout, given genes
            out["operon_pairs"] = _regulon_pairs(t.pairs)
            out["operon_readout"] = {
                "step_bp": t.steps["operon"],
                **{s: [float(v) for v in t.readout[row]] for row, s in enumerate(("plus", "minus"))},
            }
        return out


def _regulon_pairs(pairs: Any) -> list[dict[str, Any]]:
    """Adjacent same-strand pairs of the request's genes (their indices) with P(same operon)."""

    def num(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    return [
        {
            "upstream_gene": int(r.upstream_id),
            "downstream_gene": int(r.downstream_id),
            "strand": r.strand,
            "distance": int(r.distance),
            "p_operon": num(r.p_operon),
            "p_operon_network": num(r.p_operon_network),
        }
        for r in pairs.itertuples()
    ]


class _Binning:
    def __init__(self, paths: list[str], opts: dict[str, Any]) -> None:
        from genomelab.binning.training import load_model
        from genomelab.predict.binning import check_kmer_layout, min_length_of

        (path,) = paths  # one file (create_app refuses several)
        check_kmer_layout(path)
        extra = load_exported(path).extra
        # Abundance columns the model was trained with (0: composition only).
        self.n_depth = int(extra.get("n_depth", 0))
        # Its run's length filter, as `genomelab predict binning` applies it (the schema's for
        # a model exported before models recorded it, as predict gives it without --min-length).
        self.min_length = min_length_of(path, extra, "as genomelab predict binning skips them")
        self.model = load_model(path, self.n_depth)

    def depth(self, req: BinningRequest) -> np.ndarray | None:
        """Raw depths [n_contigs, n_depth] of the request, checked against the model."""
        given = [c.depth is not None for c in req.contigs]
        if not self.n_depth:
            if any(given):
                raise ValueError(
                    f"contigs.{given.index(True)}.depth: the model was trained without abundances "
                    "(composition only); leave depth out"
                )
            return None
        wrong = [i for i, c in enumerate(req.contigs) if c.depth is None or len(c.depth) != self.n_depth]
        if wrong:
            found = req.contigs[wrong[0]].depth
            raise ValueError(
                f"contigs.{wrong[0]}.depth: the model was trained with abundances from {self.n_depth} "
                f"sample(s); {len(wrong)} contig(s) give {'none' if found is None else len(found)}"
            )
        return np.asarray([c.depth for c in req.contigs], dtype=np.float64)

    def __call__(self, req: BinningRequest) -> dict[str, Any]:
        import torch

        from genomelab.binning.depth import normalise_depth
        from genomelab.binning.kmers import iter_profiles

        depth = self.depth(req)
        position = {c.name: i for i, c in enumerate(req.contigs)}
        if len(position) < len(req.contigs):
            raise ValueError("contigs: names must be unique (abundances and replies are by name)")
        records = [(c.name, c.sequence.upper().encode()) for c in req.contigs]
        blocks = list(iter_profiles(records, min_length=self.min_length, engine="numpy"))
        names = [str(n) for b in blocks for n in b.names]
        kept = set(names)
        # Why each contig without a profile has none: the client cannot tell from its name.
        why = {c.name: _skip_reason(c.sequence, self.min_length) for c in req.contigs if c.name not in kept}
        skipped = "; ".join(
            f"contigs.{position[n]}: {n!r} was skipped, {r}" for n, r in list(why.items())[:5]
        )
        if not names:
            raise ValueError(
                f"contigs: no contig {'can be profiled' if self.min_length else 'has a valid 6-mer'}: {skipped}"
            )
        x = np.concatenate([b.features for b in blocks])
        if depth is not None:
            if len(names) < 2:
                # Abundances are scaled and z-scored over the contigs given, as over an
                # assembly's by `genomelab predict binning --depth`: one contig has no scale.
                raise ValueError(
                    f"{skipped or 'contigs: 1 contig sent'}; abundances are normalised over the "
                    f"request's profiled contigs, and that leaves {len(names)} ({names[0]}): send 2 or "
                    "more that have a valid 6-mer"
                )
            x = np.concatenate([x, normalise_depth(depth[[position[n] for n in names]])], axis=1)
        latent = self.model.embed(torch.from_numpy(x)).float().numpy()
        return {
            "contigs": [{"name": n, "latent": z.tolist()} for n, z in zip(names, latent, strict=True)],
            "skipped": sorted(why),
            "skip_reasons": why,
            "n_depth": self.n_depth,
            "min_length": self.min_length,
        }


def _skip_reason(sequence: str, min_length: int = 0) -> str:
    """Why a contig is not profiled (as ``iter_profiles`` filters with ``min_length``), in words."""
    from genomelab.binning.kmers import MAX_K, min_valid_kmers

    n = len(sequence)
    if n < min_length:
        return f"{n} bp, shorter than the model's run profiled (binning.features.min_length {min_length})"
    if n < MAX_K:
        return f"{n} bp, shorter than a {MAX_K}-mer"
    acgt = np.isin(np.frombuffer(sequence.upper().encode(), np.uint8), np.frombuffer(b"ACGT", np.uint8))
    n_bad = n - int(acgt.sum())
    valid = int((np.convolve(acgt, np.ones(MAX_K, int), "valid") == MAX_K).sum())
    if valid == 0:
        return f"no {MAX_K} consecutive A/C/G/T bases ({n_bad} of its {n} bp are N or other letters)"
    return (
        f"{valid} valid {MAX_K}-mers, fewer than the {min_valid_kmers(min_length)} its run required "
        f"(binning.features.min_length {min_length} - {MAX_K - 1}; {n_bad} of its {n} bp are N or other letters)"
    )


HANDLERS = {"tissue": _Tissue, "deconv": _Deconv, "assoc": _Assoc, "regulon": _Regulon, "binning": _Binning}
# Modules whose server takes several model files (a cross-validated run's folds), and what
# it averages: the predict functions' averaging, for the same files.
AVERAGED = {
    "tissue": "the mean of the files' calibrated probabilities per sample",
    "regulon": "the mean of the networks' tracks and pair calls",
    "assoc": "candidates ranked by the mean of the models' link probabilities",
}
REQUESTS = {
    "tissue": TissueRequest,
    "deconv": DeconvRequest,
    "assoc": AssocRequest,
    "regulon": RegulonRequest,
    "binning": BinningRequest,
}


JSON = "application/json"


def answer(handler: Any, request_type: type[BaseModel], body: bytes) -> bytes:
    """The JSON reply of ``handler`` to a request body; a body that does not validate raises
    FastAPI's RequestValidationError (422, each error's ``loc`` naming the field)."""
    import torch

    try:
        req = request_type.model_validate_json(body)
    except ValidationError as exc:
        # ctx holds the raised exception object, which has no JSON form; msg carries its text.
        # A FieldError's loc goes on below the model that raised it, to the field it names.
        errors = [
            {
                "type": e["type"],
                "loc": ("body", *e["loc"], *getattr(e.get("ctx", {}).get("error"), "loc", ())),
                "msg": e["msg"],
            }
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError(errors) from None
    with torch.inference_mode():
        result = handler(req)
    # NaN (an uncovered track bin) is not JSON: null, as FastAPI's own encoder writes it.
    return to_json(result, inf_nan_mode="null")


# A handler's message starts with the request field it is about: "samples.0.means: ...".
_FIELD = re.compile(r"^([A-Za-z_]\w*(?:\.\w+)*): ")


def value_error_detail(message: str, request_type: type[BaseModel]) -> list[dict[str, Any]]:
    """A handler's ValueError as FastAPI's validation errors are given (``[{"type", "loc",
    "msg"}]``): ``loc`` is ``["body", *field]`` when the message starts with a field of
    ``request_type`` ("samples.0.means: ..." -> ``["body", "samples", 0, "means"]``), else
    ``["body"]``; ``msg`` is the whole message."""
    found = _FIELD.match(message)
    parts = found.group(1).split(".") if found else []
    if not parts or parts[0] not in request_type.model_fields:
        parts = []
    loc: list[str | int] = ["body", *(int(p) if p.isdigit() else p for p in parts)]
    return [{"type": "value_error", "loc": loc, "msg": message}]


def _body_schema(request_type: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{request_type.__name__}"}
    return {"requestBody": {"required": True, "content": {JSON: {"schema": ref}}}}


def _add_schemas(app: FastAPI, request_type: type[BaseModel]) -> None:
    """Put the request model's JSON schema into the app's OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            found = request_type.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(found.pop("$defs", {}))
            components[request_type.__name__] = found
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _metrics_per_file(
    metrics: str | os.PathLike | Sequence[str | os.PathLike] | None, paths: list[str]
) -> list[str | os.PathLike | None]:
    """The metrics JSON of each model file's card, in the files' order: None for each (each
    card reads the ``metrics.json`` beside its model) or one per file. Each fold of a run has
    its own test metrics, so one file for several models would put one fold's figures on every
    card: ``ValueError`` naming both counts."""
    if metrics is None:
        return [None] * len(paths)
    given = [metrics] if isinstance(metrics, (str, os.PathLike)) else list(metrics)
    if len(given) != len(paths):
        raise ValueError(
            f"{len(given)} metrics file(s) for {len(paths)} model file(s): give one per model file, "
            "in the same order, or none (each card then reads the metrics.json beside its model)"
        )
    return given


def _loaded(
    model: str | os.PathLike | Sequence[str | os.PathLike], opts: dict[str, Any]
) -> tuple[str, list[str], str, dict[str, Any]]:
    """The module, the files, their kind and the card of what ``model`` names: one file (its
    card, as ever) or several of one module (:data:`AVERAGED`), each file's card under
    ``models``, the files under ``model_files``. Files of another module are refused by that
    module's loader with the predict path's message (``genomelab predict <module>``'s)."""
    paths = model_files(model)
    metrics = _metrics_per_file(opts.get("metrics"), paths)
    exported = [load_exported(paths[0])]
    module = module_of_kind(exported[0].kind, paths[0])
    if len(paths) == 1:
        card = model_card(paths[0], exported[0], metrics[0], opts.get("summary")).to_dict()
        return module, paths, exported[0].kind, card
    if module not in AVERAGED:
        raise ValueError(
            f"{len(paths)} model files given: a {module} server takes one (several are averaged for "
            f"{', '.join(AVERAGED)} models)"
        )
    refuse_repeated_files(paths, f"{module} model files")
    exported += [load_exported(p) for p in paths[1:]]
    kinds = list(dict.fromkeys(e.kind for e in exported))
    cards = [
        model_card(p, e, m, opts.get("summary")).to_dict()
        for p, e, m in zip(paths, exported, metrics, strict=True)
    ]
    card = {
        "module": module,
        "kind": ", ".join(kinds),
        "model_files": paths,
        "averaged": AVERAGED[module],
        "genomelab_version": __version__,
        "models": cards,
    }
    return module, paths, card["kind"], card


def create_app(model: str | os.PathLike | Sequence[str | os.PathLike], **opts: Any) -> FastAPI:
    """The app serving ``model``, one file or, for tissue, regulon and assoc, a list of
    several averaged as ``genomelab predict`` averages them (a cross-validated run's folds);
    ``opts``: ``device``, ``featurizer`` (assoc), ``reference`` (deconv: NNLS and the weighted
    NNLS beside the network; default the model's NNLS prior), ``metrics`` and ``summary``
    (the card's metrics JSON and module summary when not found beside the model)."""
    module, paths, kind, card = _loaded(model, opts)
    handler = HANDLERS[module](paths, opts)
    # What a module's server adds to the card (deconv: the reference NNLS uses).
    card.update(getattr(handler, "card", {}))
    request_type = REQUESTS[module]
    app = FastAPI(title=f"genomelab {module} model", version=__version__)
    # What POST /predict calls, for benchmarks that time the predict function alone.
    app.state.handler, app.state.request_type = handler, request_type

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        # Inputs that do not fit the model (IDs, lengths): the client's to fix, in the same
        # shape as a body that does not validate, so a client reads one kind of 422.
        return JSONResponse(status_code=422, content={"detail": value_error_detail(str(exc), request_type)})

    # Which files are loaded: model for one, model_files for several (as predictions.json).
    files = {"model": paths[0]} if len(paths) == 1 else {"model_files": paths}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "module": module, "kind": kind, **files, "genomelab_version": __version__}

    @app.get("/card")
    def get_card() -> dict[str, Any]:
        return card

    async def predict(request: Request) -> Response:
        """The loaded module's prediction for the request body."""
        body = await request.body()
        return Response(answer(handler, request_type, body), media_type=JSON)

    # The body is read raw and parsed by pydantic in one pass (JSON straight to the request
    # model, no Python dicts in between): the endpoint declares its schema for /docs itself.
    app.post("/predict", summary=f"{module} prediction", openapi_extra=_body_schema(request_type))(predict)
    _add_schemas(app, request_type)
    logger.info("serving %s model %s (%s)", module, ", ".join(paths), kind)
    return app


__all__ = ["ExportError", "create_app"]
