"""Real runs with K = 2 folds (tissue; regulon and assoc), each in a copy of the repository of
its own under tmp_path, through the comparison tables with mean and SD over folds and the
paired tests.

They need no finished run of config/test.yaml, so they live apart from tests/test_workflow.py:
with ``--dist loadfile`` a file is the unit a pytest worker takes, and these minutes then run
on whichever worker is free instead of after that file's end-to-end run.
"""

from __future__ import annotations

import json

import pytest
import yaml
from genomelab.report.summary import Comparison, pair_key
from shared_run import copy_repo
from test_envs import env_gaps
from test_workflow import MODULES, snakemake, tissue_only_config


@pytest.mark.slow
def test_tissue_with_two_folds_reports_mean_sd_and_paired_tests(tmp_path):
    # A copy of its own: the shared workdir's results belong to finished_run.
    workdir = copy_repo(tmp_path)
    # What the folds need, kept small: two models (the verdict picks the better one), a
    # trained one of one member and the closed-form read-profile one (fitted per fold by
    # tissue_reads, no member, and its overfit check fits no network): 2 training jobs instead
    # of the test config's 12 (ensembles of several members are the end-to-end run's), and a
    # sparsity grid of 2 points instead of 16 (each point refits logistic regression per
    # pattern of observed regions in every fold).
    config = tissue_only_config(
        workdir,
        "k2.yaml",
        2,
        models=["mlp", "reads"],
        ensemble=1,
        sparsity={"depths": [10, 1], "observed": [0.5]},
        # tissue_predict on the run's own features: every fold's first model, averaged.
        predict={"inputs": "results/folds/tissue/features/region_means.h5"},
    )
    predictions = "results/folds/tissue/predict/predictions.json"
    res = snakemake(
        workdir,
        "results/folds/tissue/summary.json",
        predictions,
        "--cores",
        "2",
        "--configfile",
        config,
        timeout=1500,
    )
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    out = workdir / "results" / "folds" / "tissue"
    predicted = json.loads((workdir / predictions).read_text())
    files = [f"results/folds/tissue/folds/{k}/train/mlp/model.pt" for k in (0, 1)]
    assert predicted["model_files"] == files and predicted["calibrated"] is True
    for record in predicted["samples"]:
        means = [
            sum(record["models"][f]["probabilities"][c] for f in files) / 2 for c in predicted["classes"]
        ]
        assert list(record["models"]["ensemble"]["probabilities"].values()) == pytest.approx(means)
    folds = (out / "folds.tsv").read_text().splitlines()
    assert folds[0].split("\t")[-1] == "fold" and {line.split("\t")[-1] for line in folds[1:]} == {"0", "1"}
    summary = json.loads((out / "summary.json").read_text())
    comp = summary["comparisons"][0]
    assert comp["folds"] == 2 and set(comp["spread"]) == set(comp["rows"])
    pair = comp["tests"]["file-level MLP vs logistic regression"]
    assert pair["test"].startswith("exact McNemar") and pair["n"] == len(folds) - 1
    assert 0 <= pair["p_value"] <= 1 and "paired t-test" in pair["details"]["across_folds"]
    # The verdict is the best model against the best baseline, by that pair's own test.
    fields = ("title", "split", "primary", "higher_is_better", "rows", "kinds", "tests", "spread", "folds")
    outcome = Comparison(**{k: comp[k] for k in fields if k in comp}).outcome()
    judged = comp["tests"][pair_key(outcome["model"], outcome["baseline"])]
    assert outcome["baseline"] in comp["verdict"] and outcome["model"] in comp["verdict"]
    assert ("beats" in comp["verdict"]) == (judged["p_value"] < 0.05 and judged["favours"] == "model")
    assert "±" in (out / "summary.md").read_text()
    table = (out / "comparison.tsv").read_text().splitlines()
    assert table[0].startswith("method\tkind\tfold\tn_test") and any("\tmean\t" in line for line in table)


@pytest.mark.slow
def test_regulon_and_assoc_with_two_folds_report_mean_sd_and_paired_tests(tmp_path, monkeypatch):
    # Folds over genome blocks (regulon) and over links (assoc), each fold's training its own
    # job, run for real through the run summary that the report's landing page is made from.
    workdir = copy_repo(tmp_path)
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    for module in (*MODULES, "ingest"):
        if module not in ("regulon", "assoc") and module in config:
            config[module]["enabled"] = False
    for module in ("regulon", "assoc"):
        config[module]["evaluation"] = {"folds": 2}
    config["run"] = "folds2"
    (workdir / "k2.yaml").write_text(yaml.safe_dump(config))
    # regulon_folds and regulon_summary run only with folds: their imports are checked here.
    monkeypatch.setenv("GENOMELAB_IMPORT_RECORD", str(tmp_path / "imports"))
    res = snakemake(
        workdir, "results/folds2/report/summary.json", "--cores", "2", "--configfile", "k2.yaml", timeout=1500
    )
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    recorded, missing = env_gaps(tmp_path / "imports")
    assert {"regulon_folds", "regulon_summary"} <= recorded and not missing, missing
    out = workdir / "results" / "folds2"
    for fold in ("0", "1"):
        assert (out / "regulon" / "folds" / fold / "summary.json").is_file()
        assert (out / "assoc" / "folds" / fold / "links").is_dir()
    for module in ("regulon", "assoc"):
        summary = json.loads((out / module / "summary.json").read_text())
        folded = [c for c in summary["comparisons"] if c.get("folds") == 2]
        assert folded, (module, [c["title"] for c in summary["comparisons"]])
        for comp in folded:
            assert set(comp["spread"]) == set(comp["rows"])
            assert all(0 <= pair["p_value"] <= 1 for pair in comp["tests"].values())
            supported = any(p["p_value"] < 0.05 and p["favours"] == "model" for p in comp["tests"].values())
            assert supported or "beats" not in comp["verdict"], comp["verdict"]
        assert "±" in (out / module / "summary.md").read_text()
    run_summary = (out / "report" / "summary.md").read_text()
    assert "regulon" in run_summary and "assoc" in run_summary
