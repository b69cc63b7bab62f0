"""binning.model.kind tnf: the workflow bins on TNF alone and plans no training (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from test_workflow import MODULES, copy_repo, job_counts, snakemake


def binning_only_config(workdir: Path, name: str, kind: str) -> str:
    """The test config's binning block alone (other modules off) with ``binning.model.kind``."""
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    for module in (*MODULES, "ingest"):
        if module != "binning" and module in config:
            config[module]["enabled"] = False
    config["binning"]["model"] = {**config["binning"].get("model", {}), "kind": kind}
    config["run"] = f"kind_{kind}"
    (workdir / name).write_text(yaml.safe_dump(config))
    return name


def test_dry_run_with_kind_tnf_plans_no_training(tmp_path):
    workdir = copy_repo(tmp_path)
    res = snakemake(
        workdir, "-n", "--cores", "2", "--configfile", binning_only_config(workdir, "tnf.yaml", "tnf")
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs = job_counts(res.stdout)
    # No views, training or encoding (test_workflow's dry run of the default plans them);
    # the bins, evaluation and summary come from the TNF baseline.
    assert not {"binning_train", "binning_views", "binning_encode"} & set(jobs), jobs
    for rule in (
        "binning_features",
        "binning_baseline",
        "binning_bins",
        "binning_evaluate",
        "binning_summary",
    ):
        assert jobs[rule] == 1, (rule, jobs)
    assert "binning/model/" not in res.stdout
    assert "results/kind_tnf/binning/baseline/clusters.tsv" in res.stdout


def test_summary_of_kind_tnf_has_the_baseline_alone(tmp_path):
    from genomelab.binning.bins import bin_summary
    from genomelab.binning.summary import write_summary
    from genomelab.io.tables import write_table

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    genomes = np.repeat(["A", "B"], 50)
    lengths = rng.integers(4000, 6000, 100)
    names = np.array([f"c{i}" for i in range(100)])
    table, per_bin = bin_summary(names, labels, lengths, np.full(100, 0.5), 100_000)
    write_table(table, tmp_path / "cb.tsv")
    write_table(per_bin, tmp_path / "bs.tsv")
    from genomelab.binning.evaluate import evaluate_binning

    metrics, _ = evaluate_binning(labels, genomes, lengths, 100_000)
    # The workflow's evaluation with kind tnf scores the baseline's clusters as both entries.
    (tmp_path / "eval.json").write_text(json.dumps({"model": metrics, "tnf_baseline": metrics}))
    for plot in ("m.png", "t.png"):
        (tmp_path / plot).write_bytes(b"")
    write_summary(
        None,
        tmp_path / "bs.tsv",
        tmp_path / "cb.tsv",
        [],
        tmp_path / "eval.json",
        (str(tmp_path / "m.png"), str(tmp_path / "t.png")),
        "graph",
        100_000,
        tmp_path / "summary.json",
        tmp_path / "summary.md",
        "tnf",
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    (comp,) = summary["comparisons"]
    assert list(comp["rows"]) == ["TNF PCA + kNN-graph clustering"]
    assert comp["kinds"] == {"TNF PCA + kNN-graph clustering": "baseline"}
    assert comp["rows"]["TNF PCA + kNN-graph clustering"]["ari_bp"] == 1.0
    assert summary["plots"] == ["t.png"]
    assert any("no model was trained" in n for n in summary["notes"])
    assert not any(n.startswith(("Training:", "Test-split")) for n in summary["notes"])
