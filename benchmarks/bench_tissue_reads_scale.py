"""The read-profile model (``reads``) at the real size: cost of its fit and of its scoring
(issue 18).

A synthetic cohort of the real shape (``--samples`` 880 = 528 train / 176 val / 176 test x
``--regions`` 51,089 x 6 classes; per class a mean and two latent factors, some regions
uncovered (NaN, coverage 0) and the rest at ~20 reads) goes through the workflow's own
``fit_read_model`` with the schema defaults (model, calibration, sparsity grid). Its stages
are timed where they are called (wrappers around the functions it calls, nothing else
changed): the fit and the choice of settings (``fit_read_profiles``), the val/test
predictions and calibration, the grid of test samples at every sparsity point, and the rest
(the model file, metrics). Each stage's peak RSS is the kernel's high-water mark (VmHWM),
reset as the stage starts (``/proc/self/clear_refs``): the cohort in memory is included,
as the rule's ``mem_mb`` must hold it, but not the synthetic generator's temporaries. (The
resets also reach the maximum resident set that ``/usr/bin/time -v`` prints: there it is the
last stage's peak, not the run's.)

Then the fitted ``model.pt`` scores the test samples through ``TissuePredictor`` at full
coverage and at one read per region (samples/s). With ``--grid-memory`` its grid
(``ensemble_grid``, 16 points on the 176 test samples) runs twice more: with each point's
degraded copy of the test split drawn when it is scored (``sparse.grid_inputs`` a generator,
as now) and with all of them drawn first and held together (the generator made a list, as
``grid_inputs`` was before round 20's change), each with its peak RSS and seconds, and the
ratio of the peaks printed.

The reference measured in the same run (so that a loaded and a quiet machine compare) is one
epoch of the masked single-layer model trained by ``train_model`` on the same cohort (its
second epoch, as ``bench_tissue_throughput.py`` takes steady epochs): the fit is printed as a
multiple of it.

    PYTHONPATH=workflow/scripts python benchmarks/bench_tissue_reads_scale.py \
        [--samples 880] [--regions 51089] [--threads 2] [--device cpu] [--grid-memory]

Writes ``benchmarks/results/bench_tissue_reads_scale.json``. Not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from genomelab.config_schema import fill_defaults
from genomelab.predict.tissue import TissuePredictor
from genomelab.tissue import read_profiles, sparse, training
from genomelab.tissue.calibration import CalibrationConfig
from genomelab.tissue.sparse import SparsityConfig, degrade
from genomelab.tissue.task import TissueData

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cohort import synthetic_cohort  # noqa: E402

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "tissue.schema.yaml"


def status_mb(field: str) -> float | None:
    """A size line of ``/proc/self/status`` (``VmHWM``, ``VmRSS``), MB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """The process's peak resident set since the last :func:`reset_peak` (Linux's VmHWM),
    MB; where that cannot be reset or read, the peak of the whole run (ru_maxrss)."""
    peak = status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """The process's current resident set (Linux's VmRSS), MB; NaN where it cannot be read."""
    rss = status_mb("VmRSS")
    return rss if rss is not None else float("nan")


def reset_peak() -> None:
    """Start a new high-water mark of the resident set at the current one (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


class Stages:
    """Wrap functions ``fit_read_model`` calls so that each call's seconds and peak RSS are
    recorded under a stage name (calls nested in a timed one count only there)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self.depth = 0

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            reset_peak()
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
                self.peak_rss_mb[name] = max(self.peak_rss_mb.get(name, 0.0), peak_rss_mb())

        return timed


def fit_reads(data: TissueData, tissue: dict[str, Any], out: Path) -> dict[str, Any]:
    """``fit_read_model`` with the schema defaults, its stages timed."""
    stages = Stages()
    patches = [
        (read_profiles, "fit_read_profiles", "fit_choose"),
        (training, "predict_proba", "predict_val_test"),
        (training, "calibrate", "calibrate"),
        (training, "ensemble_grid", "grid"),
    ]
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in patches]
    for mod, attr, name in patches:
        setattr(mod, attr, stages.wrap(name, getattr(mod, attr)))
    reset_peak()
    try:
        t0 = time.perf_counter()
        training.fit_read_model(
            data,
            tissue["reads"],
            out,
            CalibrationConfig.from_dict(tissue["calibration"]),
            SparsityConfig.from_dict(tissue["sparsity"]),
            grid_seed=0,
            seed=0,
        )
        total = time.perf_counter() - t0
    finally:
        for mod, attr, fn in saved:
            setattr(mod, attr, fn)
    seconds = dict(stages.seconds)
    seconds["other"] = total - sum(seconds.values())
    seconds["total"] = total
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "seconds": seconds,
        "peak_rss_mb_in": stages.peak_rss_mb,
        "peak_rss_mb": max([peak_rss_mb(), *stages.peak_rss_mb.values()]),
        "choices": metrics["choices"],
        "test_accuracy": metrics["test"]["accuracy"],
        "grid_accuracy": {f"{p['depth']}x{p['observed']}": p["accuracy"] for p in metrics.get("grid", [])},
        "n_profile_values": metrics["n_profile_values"],
    }


def scoring(model_pt: Path, data: TissueData, device: str) -> dict[str, Any]:
    """Samples/s of ``TissuePredictor`` on the test samples at full coverage and at one read
    per region (every covered region observed), best of two passes."""
    predictor = TissuePredictor.load(model_pt, device)
    test = data.index("test")
    full = (data.means[test], data.coverage[test].astype(np.float32))
    one_read = degrade(data.means[test], 1, 1.0, np.random.default_rng(5))
    out = {}
    for name, (means, coverage) in {"full_coverage": full, "one_read": one_read}.items():
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            predictor.predict_arrays(means, coverage)
            times.append(time.perf_counter() - t0)
        out[name] = {"seconds": min(times), "samples_per_s": len(test) / min(times)}
    return out


def grid_memory(model_pt: Path, data: TissueData, sparsity: SparsityConfig) -> dict[str, Any]:
    """Seconds and peak RSS of the fitted model's grid (``training.ensemble_grid``, seed 0 as
    the fit's), its points drawn all at once (the code before the generator) and one at a
    time (now). Each peak is the high-water mark from the grid's start, the cohort and the
    model in memory included; ``rss_at_start_mb`` is what was resident then."""
    model = TissuePredictor.load(model_pt).members["model"]
    one_at_a_time = sparse.grid_inputs

    def all_at_once(means: np.ndarray, cfg: SparsityConfig, seed: int) -> list[dict[str, Any]]:
        return list(one_at_a_time(means, cfg, seed))

    out: dict[str, Any] = {}
    for name, draw in (("all_at_once", all_at_once), ("one_at_a_time", one_at_a_time)):
        sparse.grid_inputs = draw  # evaluate_grid looks it up in its module at each call
        gc.collect()
        reset_peak()
        start = rss_mb()
        t0 = time.perf_counter()
        try:
            grid = training.ensemble_grid([model], data, sparsity, 0)
        finally:
            sparse.grid_inputs = one_at_a_time
        out[name] = {
            "seconds": time.perf_counter() - t0,
            "peak_rss_mb": peak_rss_mb(),
            "rss_at_start_mb": start,
            "accuracy": [p["accuracy"] for p in grid],
        }
    if out["all_at_once"]["accuracy"] != out["one_at_a_time"]["accuracy"]:
        raise RuntimeError(f"the two ways of drawing the grid scored differently: {out}")
    out["peak_one_at_a_time_over_all_at_once"] = (
        out["one_at_a_time"]["peak_rss_mb"] / out["all_at_once"]["peak_rss_mb"]
    )
    return out


def masked_epoch(data: TissueData, tissue: dict[str, Any], tmp: Path, device: str) -> float:
    """Seconds of the masked model's second epoch (the reference), schema defaults."""
    train_cfg = {**tissue["train"], "max_epochs": 2, "patience": 3}
    training.train_model("masked", data, tissue["masked"], train_cfg, tmp / "state", tmp / "masked", device)
    history = json.loads((tmp / "masked" / "metrics.json").read_text())["history"]
    return float(history[-1]["time/epoch_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=880)
    ap.add_argument("--regions", type=int, default=51089)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--uncovered", type=float, default=0.05, help="fraction of cells NaN")
    ap.add_argument("--threads", type=int, default=2, help="as the rule tissue_reads")
    ap.add_argument("--device", default="cpu", help="the scoring's device (the fit is on the CPU)")
    ap.add_argument("--no-reference", action="store_true", help="skip the masked model's epoch")
    ap.add_argument(
        "--grid-memory",
        action="store_true",
        help="also run the grid with its points drawn all at once (as before) and one at a time",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tissue = fill_defaults({}, SCHEMA)
    # Per class a mean and two latent factors, ~20 reads per covered region.
    data = synthetic_cohort(
        args.samples,
        args.regions,
        args.classes,
        seed=0,
        shift_sd=0.05,
        factors=2,
        mean_reads=20,
        uncovered=args.uncovered,
    )
    reset_peak()
    rss_data = peak_rss_mb()
    n_train = len(data.index("train"))
    print(
        f"cohort: {n_train} train / {len(data.index('val'))} val / {len(data.index('test'))} test "
        f"x {args.regions} regions x {args.classes} classes; RSS {rss_data:.0f} MB",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        reads = fit_reads(data, tissue, Path(tmp) / "reads")
        for name, s in reads["seconds"].items():
            rss = reads["peak_rss_mb_in"].get(name)
            print(f"reads {name:17s} {s:8.1f} s" + (f"  peak RSS {rss:6.0f} MB" if rss else ""), flush=True)
        reads["scoring"] = scoring(Path(tmp) / "reads" / "model.pt", data, args.device)
        for name, r in reads["scoring"].items():
            print(f"reads scoring {name:13s} {r['samples_per_s']:8.1f} samples/s ({args.device})", flush=True)
        if args.grid_memory:
            sparsity = SparsityConfig.from_dict(tissue["sparsity"])
            grid = reads["grid_memory"] = grid_memory(Path(tmp) / "reads" / "model.pt", data, sparsity)
            for name in ("all_at_once", "one_at_a_time"):
                g = grid[name]
                print(
                    f"grid, points {name.replace('_', ' '):14s} {g['seconds']:7.1f} s  peak RSS "
                    f"{g['peak_rss_mb']:6.0f} MB (from {g['rss_at_start_mb']:.0f} MB)",
                    flush=True,
                )
            print(
                f"grid peak RSS, one at a time / all at once: {grid['peak_one_at_a_time_over_all_at_once']:.2f}"
            )
        ref = None if args.no_reference else masked_epoch(data, tissue, Path(tmp), "cpu")
    result: dict[str, Any] = {
        "benchmark": "tissue_reads_scale",
        "samples": args.samples,
        "train_samples": n_train,
        "regions": args.regions,
        "classes": args.classes,
        "uncovered": args.uncovered,
        "threads": args.threads,
        "device": args.device,
        "reads_config": tissue["reads"],
        "sparsity": tissue["sparsity"],
        "rss_mb_with_cohort": rss_data,
        "reads": reads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "python": sys.version.split()[0],
    }
    if ref is not None:
        result["masked_epoch_s"] = ref
        result["reads_fit_over_masked_epoch"] = reads["seconds"]["total"] / ref
        result["reads_fit_choose_over_masked_epoch"] = reads["seconds"]["fit_choose"] / ref
        print(
            f"masked epoch {ref:.1f} s: reads fit_read_model = {result['reads_fit_over_masked_epoch']:.1f} "
            f"epochs (fit and choice {result['reads_fit_choose_over_masked_epoch']:.1f})"
        )
    result["load_average_1min_at_end"] = os.getloadavg()[0]
    out = args.out or Path(__file__).parent / "results" / "bench_tissue_reads_scale.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
