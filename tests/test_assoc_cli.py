"""assoc: the demo-data builder (from ../shared/data) and the command line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from genomelab.assoc import cli, demo_data
from genomelab.assoc.features import kmer_profile

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_demo_tables_rebuild_identically(shared_data, tmp_path):
    counts = demo_data.build(shared_data, tmp_path)
    assert counts == {"edges": 7897, "sources": 236, "targets": 2568}
    for name in ("links.tsv", "sources.tsv", "targets.tsv"):
        assert (tmp_path / name).read_bytes() == (ROOT / "resources" / "assoc" / name).read_bytes(), name


def test_upstream_is_strand_aware():
    genome = "AAAACCCCGGGGTTTT"
    assert demo_data.upstream(genome, 4, 8, 1, 3) == "AAA"
    # Minus-strand gene at [4, 8): upstream is after its end, reverse-complemented.
    assert demo_data.upstream(genome, 4, 8, -1, 3) == "CCC"
    assert kmer_profile([demo_data.upstream(genome, 4, 8, -1, 3)], 1)[0, 1] == 1.0


def test_demo_descriptions_come_from_genbank():
    src = pd.read_csv(ROOT / "resources" / "assoc" / "sources.tsv", sep="\t").set_index("id")
    tgt = pd.read_csv(ROOT / "resources" / "assoc" / "targets.tsv", sep="\t").set_index("id")
    assert "DNA-binding transcriptional dual regulator CRP" in src.loc["crp", "description"]
    assert tgt.loc["b0002", "description"].startswith("thrA | ")
    assert tgt["sequence"].str.fullmatch("[ACGT]{150}").all()


def test_cli_train_quick_test(tmp_path):
    config = {
        "seed": 1,
        "device": "cpu",
        "assoc": {
            "data": {
                "links": str(ROOT / "tests/data/assoc/links.tsv"),
                "sources": str(ROOT / "tests/data/assoc/sources.tsv"),
                "targets": str(ROOT / "tests/data/assoc/targets.tsv"),
            },
            "features": {"text_dim": 8, "max_fields": 2},
            "model": {"d_model": 8, "n_layers": 1, "n_heads": 2, "bridge_heads": 2},
            "train": {"max_epochs": 50},
            "grid": {"lr": [0.003], "batch_size": [64], "dropout": [0.0], "bridge_dim": [8]},
            "diagnostics": {"overfit_queries": 8, "overfit_steps": 20},
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    rows = cli.train_main(
        cli.argparse.Namespace(
            config=path,
            links=None,
            sources=None,
            targets=None,
            scheme="links",
            out=tmp_path / "out",
            lr=None,
            batch_size=None,
            dropout=None,
            bridge_dim=None,
            device=None,
            quick_test=True,
            no_gate=True,
        )
    )
    assert set(rows) == {"network", "popularity", "kNN", "ridge"}
    report = (tmp_path / "out" / "run" / "training_report.json").read_text()
    assert '"quick_test": true' in report and '"epochs_run": 5' in report
    cli.main(
        [
            "infer",
            "--model",
            str(tmp_path / "out/run/model.pt"),
            "--featurizer",
            str(tmp_path / "out/featurizer.npz"),
            "--queries",
            str(ROOT / "tests/data/assoc/sources.tsv"),
            "--top-k",
            "3",
            "--out",
            str(tmp_path / "pred.tsv"),
        ]
    )
    pred = pd.read_csv(tmp_path / "pred.tsv", sep="\t")
    assert len(pred) == 14 * 3 and list(pred.columns) == ["query", "rank", "candidate", "score"]


def test_cli_missing_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        cli.load_section(tmp_path / "nope.yaml")
