"""An HTTP server for one exported model: FastAPI endpoints over the predict functions.

``GET /health``: liveness and what is loaded. ``GET /card``: the model card (what it was
trained on, its test metrics and its comparison with the baselines where the run wrote
them, the genomelab versions). ``POST /predict``: the loaded module's prediction, with a
request body validated by pydantic (a bad request gets 422 naming the field, an input that
does not match the model's IDs 422 with the mismatch message). The model is read with
``weights_only=True`` (:func:`genomelab.train.export.load_exported`): nothing is unpickled.
"""

# No ``from __future__ import annotations``: FastAPI reads the request model from the
# endpoint's annotation at run time, and a postponed one is only a string.
import logging
import os
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from genomelab import __version__
from genomelab.config import schema_default
from genomelab.predict.common import model_card, module_of_kind
from genomelab.train.export import ExportError, load_exported

logger = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TissueSample(_Strict):
    sample: str = Field(min_length=1)
    means: list[float | None] = Field(min_length=1, description="region means in [0, 1]; null = uncovered")
    coverage: list[float] | None = Field(
        None, description="valid calls per region (default: 1 where covered)"
    )
    regions: list[str] | None = Field(
        None, description="region IDs of means (default: the model's, in order)"
    )


class TissueRequest(_Strict):
    samples: list[TissueSample] = Field(min_length=1)
    min_region_match: float | None = Field(None, ge=0, le=1)
    min_covered: float | None = Field(None, ge=0, le=1)


class DeconvSample(_Strict):
    sample: str = Field(min_length=1)
    betas: list[float | None] = Field(min_length=1, description="beta values in [0, 1]; null = missing")
    regions: list[str] | None = Field(
        None, description="region IDs of betas (default: the model's, in order)"
    )


class DeconvRequest(_Strict):
    samples: list[DeconvSample] = Field(min_length=1)
    min_match: float | None = Field(None, ge=0, le=1)


class AssocEntity(BaseModel):
    # Numeric feature columns are extra fields, named as in the training entity table.
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    description: str | None = None
    sequence: str | None = None


class AssocRequest(_Strict):
    entities: list[AssocEntity] = Field(min_length=1)
    side: str = Field("source", pattern="^(source|target)$")
    top_k: int = Field(10, ge=1)


class RegulonRequest(_Strict):
    sequence: str = Field(min_length=1, pattern="^[ACGTNacgtn]+$")
    contig: str = "query"
    start: int = Field(0, ge=0)


class BinningContig(_Strict):
    name: str = Field(min_length=1)
    sequence: str = Field(min_length=1)


class BinningRequest(_Strict):
    contigs: list[BinningContig] = Field(min_length=1)


def _aligned(values: list[float | None], regions: list[str] | None, n_model: int, field: str) -> np.ndarray:
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float32)
    if regions is None and len(arr) != n_model:
        raise ValueError(f"{field}: {len(arr)} values without region IDs; the model has {n_model} regions")
    if regions is not None and len(regions) != len(arr):
        raise ValueError(f"{field}: {len(arr)} values for {len(regions)} region IDs")
    return arr


class _Tissue:
    def __init__(self, path: str, opts: dict[str, Any]) -> None:
        from genomelab.predict.tissue import TissuePredictor

        self.p = TissuePredictor.load(path, opts.get("device", "cpu"))
        self.defaults = {
            k: schema_default(f"tissue.predict.{k}") for k in ("min_region_match", "min_covered")
        }

    def __call__(self, req: TissueRequest) -> dict[str, Any]:
        from genomelab.predict.tissue import TissueInputs

        n_model = len(self.p.regions)
        records = []
        for i, s in enumerate(req.samples):
            means = _aligned(s.means, s.regions, n_model, f"samples.{i}.means")
            cov = (
                np.asarray(s.coverage, np.float32)
                if s.coverage is not None
                else np.isfinite(means).astype(np.float32)
            )
            if cov.shape != means.shape:
                raise ValueError(f"samples.{i}.coverage: {len(cov)} values for {len(means)} means")
            regions = np.asarray(s.regions) if s.regions is not None else self.p.regions
            inputs = TissueInputs(np.asarray([s.sample]), regions, means[None], cov[None], f"samples.{i}")
            pred = self.p.predict(
                inputs,
                self.defaults["min_region_match"] if req.min_region_match is None else req.min_region_match,
                self.defaults["min_covered"] if req.min_covered is None else req.min_covered,
            )
            records += pred.records()
        return {"classes": self.p.classes, "samples": records}


class _Deconv:
    def __init__(self, path: str, opts: dict[str, Any]) -> None:
        from genomelab.predict.deconv import DeconvPredictor

        self.p = DeconvPredictor(path, opts.get("device", "cpu"))
        self.min_match = schema_default("deconv.infer.min_match")

    def __call__(self, req: DeconvRequest) -> dict[str, Any]:
        n_model = len(self.p.regions)
        out = []
        for i, s in enumerate(req.samples):
            betas = _aligned(s.betas, s.regions, n_model, f"samples.{i}.betas")
            regions = np.asarray(s.regions) if s.regions is not None else self.p.regions
            min_match = self.min_match if req.min_match is None else req.min_match
            props, match = self.p.predict(betas[None].astype(np.float64), regions, min_match, f"samples.{i}")
            out.append(
                {
                    "sample": s.sample,
                    "proportions": dict(zip(self.p.tissues, props[0].tolist(), strict=True)),
                    "n_regions_matched": match.n_matched,
                }
            )
        return {"tissues": self.p.tissues, "samples": out}


class _Assoc:
    def __init__(self, path: str, opts: dict[str, Any]) -> None:
        from genomelab.predict.assoc import AssocPredictor

        if not opts.get("featurizer"):
            raise ValueError("serving an assoc model needs --featurizer (the run's features/featurizer.npz)")
        self.p = AssocPredictor(path, opts["featurizer"], opts.get("device", "cpu"))

    def __call__(self, req: AssocRequest) -> dict[str, Any]:
        records = [e.model_dump(exclude_none=True) for e in req.entities]
        df = self.p.rank_records(records, req.side, req.top_k)
        return {"side": req.side, "predictions": df.to_dict(orient="records")}


class _Regulon:
    def __init__(self, path: str, opts: dict[str, Any]) -> None:
        from genomelab.predict.regulon import RegulonPredictor

        self.p = RegulonPredictor(path, opts.get("device", "cpu"))

    def __call__(self, req: RegulonRequest) -> dict[str, Any]:
        from genomelab.predict.regulon import encode

        t = self.p.predict_codes(encode(req.sequence), req.contig, req.start)
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
        return {"contig": t.contig, "start": t.start, "end": t.end, "tracks": tracks}


class _Binning:
    def __init__(self, path: str, opts: dict[str, Any]) -> None:
        from genomelab.binning.training import load_model

        # Abundances are normalised over a whole depth table, so one request cannot carry them.
        self.model = load_model(path, 0)

    def __call__(self, req: BinningRequest) -> dict[str, Any]:
        import torch

        from genomelab.binning.kmers import iter_profiles

        records = [(c.name, c.sequence.upper().encode()) for c in req.contigs]
        blocks = list(iter_profiles(records, min_length=0, engine="numpy"))
        names = [str(n) for b in blocks for n in b.names]
        if not names:
            raise ValueError("contigs: no contig has a valid 6-mer")
        x = torch.from_numpy(np.concatenate([b.features for b in blocks]))
        with torch.no_grad():
            latent = self.model.encode(x)[0].float().numpy()
        skipped = sorted({c.name for c in req.contigs} - set(names))
        return {
            "contigs": [{"name": n, "latent": z.tolist()} for n, z in zip(names, latent, strict=True)],
            "skipped": skipped,
        }


HANDLERS = {"tissue": _Tissue, "deconv": _Deconv, "assoc": _Assoc, "regulon": _Regulon, "binning": _Binning}
REQUESTS = {
    "tissue": TissueRequest,
    "deconv": DeconvRequest,
    "assoc": AssocRequest,
    "regulon": RegulonRequest,
    "binning": BinningRequest,
}


def create_app(model: str | os.PathLike, **opts: Any) -> FastAPI:
    """The app serving ``model``; ``opts``: ``device``, ``featurizer`` (assoc), ``metrics`` and
    ``summary`` (the card's metrics JSON and module summary when not found beside the model)."""
    path = str(model)
    exported = load_exported(path)
    module = module_of_kind(exported.kind, path)
    card = model_card(path, exported, opts.get("metrics"), opts.get("summary")).to_dict()
    handler = HANDLERS[module](path, opts)
    request_type = REQUESTS[module]
    app = FastAPI(title=f"genomelab {module} model", version=__version__)

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        # Inputs that do not fit the model (IDs, lengths): the client's to fix.
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "module": module, "kind": exported.kind, "genomelab_version": __version__}

    @app.get("/card")
    def get_card() -> dict[str, Any]:
        return card

    def predict(req: request_type) -> dict[str, Any]:  # type: ignore[valid-type]
        """The loaded module's prediction for the request body."""
        return handler(req)

    # A sync endpoint: FastAPI runs it in a worker thread, so torch never blocks the event loop.
    app.post("/predict", summary=f"{module} prediction")(predict)
    logger.info("serving %s model %s (%s)", module, path, exported.kind)
    return app


__all__ = ["ExportError", "create_app"]
