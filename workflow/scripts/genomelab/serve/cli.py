"""``genomelab serve --model model.pt [--model fold1.pt ...] [--host 127.0.0.1 --port 8000]``."""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from genomelab.entry import limit_threads
    from genomelab.serve.app import create_app

    limit_threads(args.threads)
    app = create_app(
        args.model[0] if len(args.model) == 1 else args.model,
        device=args.device,
        featurizer=args.featurizer,
        reference=args.reference,
        metrics=args.metrics,
        summary=args.summary,
    )
    logger.info("listening on http://%s:%d (GET /health, GET /card, POST /predict)", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def add_parser(sub: Any) -> None:
    """Add ``serve`` to the ``genomelab`` parser."""
    p = sub.add_parser("serve", help="serve an exported model over HTTP (FastAPI): /health, /card, /predict")
    # extend: --model a.pt --model b.pt serves both, averaged (nargs="+" alone kept the last).
    p.add_argument(
        "--model",
        required=True,
        nargs="+",
        action="extend",
        help="exported model.pt of a run; tissue, regulon and assoc take several (a cross-validated "
        "run's folds), averaged as genomelab predict averages them",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--featurizer", help="assoc: the run's features/featurizer.npz")
    p.add_argument(
        "--reference",
        help="deconv: the run's deconv/reference/reference.tsv, for NNLS and the weighted NNLS beside the network "
        "(default: the profiles of the model's NNLS prior; needed without one)",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        action="extend",
        help="metrics JSON for the card, one per --model file in the same order (default: the "
        "metrics.json beside each model)",
    )
    p.add_argument("--summary", help="module summary.json for the card (default: found above the model)")
    p.set_defaults(func=_serve)
