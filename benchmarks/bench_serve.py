"""Per-query latency of ``genomelab serve`` for each module's endpoint, on the CPU.

For each module, builds a model of realistic size with the module's own classes (untrained:
latency does not depend on the weights), exports it as training does, starts the server
(``genomelab serve`` in its own process, 127.0.0.1, a free port) and times ``--repeats``
single-sample ``POST /predict`` queries over one keep-alive HTTP connection: JSON encoding,
validation, the predict function and the reply. Tissue and deconv are timed in both request
forms (a JSON list; ``<field>_b64``, base64 float32, encoded by the client per query). In
the same run it times the predict function alone on the validated request, the CPU time per
query of server and client, and the CPU time of each step in this process (client encoding,
server parse and validation, predict function, reply encoding), which a busy machine
disturbs less than wall-clock times. Prints median and p95 per module and writes
benchmarks/results/bench_serve_<regions>[_<members>members][_hidden<sizes>].json.

A sparse tissue query (``--tissue-observed`` < 1) is also timed as ``tissue_ids``: only the
observed regions, named, as a sequencing sample is sent.

Sizes: tissue, an ensemble of 5 file-level MLPs (schema default sizes) over
``--tissue-regions`` regions (2,000: the simulated demo; 51,089: the ingested real panel);
deconv, the Moss 2018 atlas shape (7,890 CpGs x 25 cell types); assoc, the demo vocabulary
(resources/assoc, 236 x 2,568 entities); regulon, one 2,048 bp window (demo model);
binning, one 10 kb contig (demo VAE). The target is under 10 ms for tissue and assoc
single-sample queries (the project history's bar was 200 ms).

    PYTHONPATH=workflow/scripts python benchmarks/bench_serve.py [--repeats 200] [--tissue-regions 2000]
        [--tissue-members 5] [--tissue-hidden 64 32] [--tissue-kind mlp|attention|masked] [--threads 1]
        [--tissue-observed 0.02] [--modules tissue assoc ...] [--out results.json]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.config import schema_defaults  # noqa: E402
from genomelab.io.atomic import atomic_write_json  # noqa: E402
from genomelab.train.export import save_exported  # noqa: E402

TARGET_AIM_MS = 10.0


def tissue_case(
    d: Path,
    n_regions: int,
    n_members: int,
    rng: np.random.Generator,
    hidden: list[int] | None = None,
    kind: str = "mlp",
    observed: float = 1.0,
) -> tuple[Path, dict, dict]:
    from genomelab.tissue.models import CONFIGS, build_model

    # ``hidden`` None: the schema's sizes (the first layer's width is what a query pays for).
    cfg = CONFIGS[kind].from_dict(
        {**schema_defaults(f"tissue.{kind}"), **({"hidden": hidden} if hidden else {})}
    )
    mu, sd = rng.uniform(0.2, 0.8, n_regions).astype(np.float32), np.full(n_regions, 0.2, np.float32)
    members = torch.nn.ModuleList(
        [build_model(kind, cfg, n_regions, 8, mu, sd, 150) for _ in range(n_members)]
    )
    path = d / "tissue.pt"
    save_exported(
        path,
        members.eval(),
        kind=f"{kind}-ensemble",
        config=dataclasses.asdict(cfg),
        ids={"classes": [f"class{i}" for i in range(8)], "regions": [f"r{i}" for i in range(n_regions)]},
        data_fingerprint="0",
        extra={"seeds": list(range(n_members)), "n_positions": 150},
    )
    values: list[float | None] = rng.uniform(0, 1, n_regions).round(4).tolist()
    if observed < 1:  # that fraction of regions (at random) has a value, the rest are null
        keep = rng.random(n_regions) < observed
        values = [v if k else None for v, k in zip(values, keep, strict=True)]
    return path, {}, {"samples": [{"sample": "s", "means": values}]}


def observed_only(body: dict) -> dict:
    """A sparse tissue query as a sequencing sample would send it: only its observed regions,
    named (``regions`` + ``means``), matched to the model's by ID."""
    samples = []
    for s in body["samples"]:
        kept = [(f"r{i}", v) for i, v in enumerate(s["means"]) if v is not None]
        samples.append(
            {"sample": s["sample"], "regions": [r for r, _ in kept], "means": [v for _, v in kept]}
        )
    return {"samples": samples, "min_region_match": 0}


def packed(body: dict, field: str) -> Callable[[], dict]:
    """The compact request form of a one-sample ``body``: ``<field>_b64``, base64 float32.
    Returns a function that encodes it, so each timed query pays the client's encoding."""
    values = np.asarray([np.nan if v is None else v for v in body["samples"][0][field]], dtype="<f4")
    rest = {k: v for k, v in body["samples"][0].items() if k != field}

    def encode() -> dict:
        return {"samples": [{**rest, f"{field}_b64": base64.b64encode(values.tobytes()).decode()}]}

    return encode


def deconv_case(d: Path, rng: np.random.Generator) -> tuple[Path, dict, dict]:
    from genomelab.deconv.model import KIND, DeconvNet, DeconvNetConfig

    n_regions, n_tissues = 7890, 25
    profiles = rng.uniform(0, 1, (n_regions, n_tissues))
    section = {k: v for k, v in schema_defaults("deconv.model").items() if k in ("hidden", "dropout")}
    cfg = DeconvNetConfig.from_config(section, n_regions, n_tissues, True, 0.01)
    path = d / "deconv.pt"
    save_exported(
        path,
        DeconvNet(cfg, profiles.mean(1), profiles),
        kind=KIND,
        config=dataclasses.asdict(cfg),
        ids={"regions": [f"cg{i}" for i in range(n_regions)], "tissues": [f"t{i}" for i in range(n_tissues)]},
        data_fingerprint="0",
    )
    betas = rng.uniform(0, 1, n_regions).round(4)
    return path, {}, {"samples": [{"sample": "s", "betas": betas.tolist()}]}


def assoc_case(d: Path) -> tuple[Path, dict, dict]:
    from genomelab.assoc import data as D
    from genomelab.assoc import features as Fe
    from genomelab.assoc.training import KIND, build_model

    res = ROOT / "resources" / "assoc"
    src = D.read_entities(res / "sources.tsv", "source")
    tgt = D.read_entities(res / "targets.tsv", "target")
    links = D.read_links(res / "links.tsv", src, tgt)
    asg = D.assign_splits(links, len(src), len(tgt), seed=0)
    train = D.split_labels(links, asg, "links", "train", len(src), len(tgt))
    featurizer = Fe.Featurizer(Fe.FeatureConfig(max_fields=2)).fit(src, tgt)
    Fe.save_featurizer(featurizer, d / "featurizer.npz")
    feats = {"source": featurizer.transform(src), "target": featurizer.transform(tgt)}
    section = {"d_model": 32, "n_layers": 2, "bridge_dim": 32, "link_dim": 32, "cold_start": "knn"}
    model = build_model(section, feats, train).eval()
    path = d / "assoc.pt"
    save_exported(
        path,
        model,
        kind=KIND,
        config=dataclasses.asdict(model.config),
        ids={"sources": src.ids, "targets": tgt.ids},
        data_fingerprint="0",
    )
    query = {"id": "new", "description": src.descriptions[3]}
    return path, {"featurizer": d / "featurizer.npz"}, {"entities": [query], "side": "source", "top_k": 10}


def regulon_case(d: Path, rng: np.random.Generator) -> tuple[Path, dict, dict]:
    from genomelab.regulon.model import RegulonModelConfig, RegulonNet
    from genomelab.regulon.training import KIND

    cfg = RegulonModelConfig.from_dict(
        {k: v for k, v in schema_defaults("regulon.model").items()}, resolution_bp=16, bin_bp=128
    )
    path = d / "regulon.pt"
    save_exported(
        path,
        RegulonNet(cfg),
        kind=KIND,
        config=dict(cfg.__dict__),
        ids={"contigs": ["c"]},
        data_fingerprint="0",
        extra={"targets_config": {"window_bp": 2048}},
    )
    return path, {}, {"sequence": "".join(rng.choice(list("ACGT"), 2048))}


def binning_case(d: Path, rng: np.random.Generator) -> tuple[Path, dict, dict]:
    from genomelab.binning.model import KmerVAE, VAEConfig
    from genomelab.binning.training import KIND

    section = schema_defaults("binning.model")
    path = d / "vae.pt"
    save_exported(
        path,
        KmerVAE(VAEConfig.from_dict(section, n_depth=0)).eval(),
        kind=KIND,
        config=section,
        ids={"contigs": ["x"]},
        data_fingerprint="0",
        extra={"n_depth": 0},
    )
    return path, {}, {"contigs": [{"name": "c", "sequence": "".join(rng.choice(list("ACGT"), 10_000))}]}


@contextlib.contextmanager
def serving(model: Path, opts: dict, threads: int) -> Iterator[tuple[str, int]]:
    """``genomelab serve`` in its own process (as a user runs it), on a free port."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "genomelab", "serve", "--model", str(model), "--port", str(port)]
    cmd += ["--threads", str(threads)] + [a for k, v in opts.items() for a in (f"--{k}", str(v))]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow" / "scripts")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"genomelab serve did not start: {' '.join(cmd)}")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    for _ in range(5):  # warm allocator, caches and the connection
        fn()
    ms = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ms.append(1000 * (time.perf_counter() - t))
    return {"median": float(np.median(ms)), "p95": float(np.percentile(ms, 95))}


def cpu_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Mean CPU milliseconds of this process per call (robust to waiting for a shared core)."""
    for _ in range(3):
        fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return 1000 * (time.process_time() - start) / repeats


def bench(module: str, path: Path, opts: dict, body: Any, repeats: int, threads: int) -> dict[str, Any]:
    """Latency of ``body`` (a request, or a function making one per query) over HTTP and of
    the predict function alone on the validated request, in the same run."""
    import httpx
    from genomelab.serve.app import create_app
    from pydantic_core import to_json

    make_body = body if callable(body) else lambda: body
    app = create_app(path, **opts)
    handler = app.state.handler
    request = app.state.request_type.model_validate(make_body())

    def predict_function() -> None:
        with torch.inference_mode():
            handler(request)

    in_process = timed(predict_function, repeats)
    raw = json.dumps(make_body()).encode()
    with torch.inference_mode():
        result = handler(request)
    # Where a query's CPU time goes, step by step, in this process.
    steps = {
        "client_encode": cpu_ms(lambda: json.dumps(make_body()).encode(), repeats),
        "server_parse_validate": cpu_ms(lambda: app.state.request_type.model_validate_json(raw), repeats),
        "predict_function": cpu_ms(predict_function, repeats),
        "reply_encode": cpu_ms(lambda: to_json(result, inf_nan_mode="null"), repeats),
    }
    # TCP_NODELAY: the client writes headers and body separately, and Nagle's algorithm
    # would hold the body until the server's delayed ACK (40 ms on Linux).
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with (
        serving(path, opts, threads) as (url, pid),
        httpx.Client(base_url=url, timeout=60, transport=transport) as client,
    ):
        reply = client.post("/predict", json=make_body())
        reply.raise_for_status()
        server0, client0 = cpu_seconds(pid), time.process_time()
        http = timed(lambda: client.post("/predict", json=make_body()).raise_for_status(), repeats)
        n = repeats + 5
        cpu = {
            "server": 1000 * (cpu_seconds(pid) - server0) / n,
            "client": 1000 * (time.process_time() - client0) / n,
        }
    return {
        "http_ms": http,
        "predict_function_ms": in_process,
        # What HTTP, JSON and validation add to the predict function, as a factor.
        "http_over_predict_function": http["median"] / in_process["median"],
        # CPU time per query of the server process and of this client: what a query costs
        # when the machine is not shared (wall-clock times above include waiting for a core).
        "cpu_ms_per_query": cpu,
        "cpu_ms_per_step": steps,
        "request_bytes": len(reply.request.content),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tissue-regions", type=int, default=2000)
    parser.add_argument("--tissue-members", type=int, default=5, help="ensemble members (schema default 5)")
    parser.add_argument(
        "--tissue-hidden", type=int, nargs="+", default=None, help="tissue MLP sizes (default: the schema's)"
    )
    parser.add_argument(
        "--tissue-kind",
        choices=["mlp", "attention", "masked"],
        default="mlp",
        help="tissue model (attention: tissue_predict's default, first in tissue.models; masked: the "
        "single-layer model, the cheapest of the defaults)",
    )
    parser.add_argument(
        "--tissue-observed",
        type=float,
        default=1.0,
        help="fraction of regions with a value in the tissue query (the rest null: a sparse sample)",
    )
    parser.add_argument("--modules", nargs="+", default=["tissue", "assoc", "deconv", "regulon", "binning"])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result JSON (default: benchmarks/results/bench_serve_<regions>[_...].json)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cases = {
            "tissue": lambda: tissue_case(
                d,
                args.tissue_regions,
                args.tissue_members,
                rng,
                args.tissue_hidden,
                args.tissue_kind,
                args.tissue_observed,
            ),
            "deconv": lambda: deconv_case(d, rng),
            "assoc": lambda: assoc_case(d),
            "regulon": lambda: regulon_case(d, rng),
            "binning": lambda: binning_case(d, rng),
        }
        # The compact form of the modules whose bodies are long arrays.
        compact = {"tissue": "means", "deconv": "betas"}
        for module in args.modules:
            torch.manual_seed(0)
            path, opts, body = cases[module]()
            forms = {module: body}
            if module in compact:
                forms[f"{module}_b64"] = packed(body, compact[module])
            if module == "tissue" and args.tissue_observed < 1:
                forms["tissue_ids"] = observed_only(body)
            for name, form in forms.items():
                results[name] = r = bench(module, path, opts, form, args.repeats, args.threads)
                print(
                    f"{name:12s} HTTP median {r['http_ms']['median']:7.2f} ms, p95 {r['http_ms']['p95']:7.2f} ms; "
                    f"predict function median {r['predict_function_ms']['median']:7.2f} ms "
                    f"(x{r['http_over_predict_function']:.2f}); CPU per query: server "
                    f"{r['cpu_ms_per_query']['server']:.2f} ms, client {r['cpu_ms_per_query']['client']:.2f} ms "
                    f"({r['request_bytes']} request bytes)"
                )
    out = {
        "benchmark": "serve_latency",
        "device": "cpu",
        "threads": args.threads,
        "repeats": args.repeats,
        "tissue_regions": args.tissue_regions,
        "tissue_members": args.tissue_members,
        "tissue_kind": args.tissue_kind,
        "tissue_observed": args.tissue_observed,
        # The masked model has no hidden layer.
        "tissue_hidden": args.tissue_hidden or schema_defaults(f"tissue.{args.tissue_kind}").get("hidden"),
        "machine": platform.processor() or platform.machine(),
        # Shared machines: timings are only comparable at a similar load.
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "target_ms": TARGET_AIM_MS,
        "modules": results,
    }
    suffix = "" if args.tissue_members == 5 else f"_{args.tissue_members}members"
    if args.tissue_kind != "mlp":
        suffix += f"_{args.tissue_kind}"
    if args.tissue_hidden:
        suffix += "_hidden" + "-".join(map(str, args.tissue_hidden))
    if args.tissue_observed < 1:
        suffix += f"_observed{args.tissue_observed:g}"
    atomic_write_json(
        args.out or ROOT / "benchmarks" / "results" / f"bench_serve_{args.tissue_regions}{suffix}.json", out
    )


if __name__ == "__main__":
    main()
