"""docs/ingest.md "Real WGBS, the UXM way": the own-data example runs as it stands.

The blocks marked ``<!-- file: PATH -->`` (atlas, markers, sample sheet, .pat.gz files as
``zcat`` shows them, config) are written to PATH; the steps of the three rules then give
the proportions the page shows (``<!-- output: ... -->``), Snakemake plans the example's
jobs, and a ``slow`` test runs Snakemake for real.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

import numpy as np
import pytest
import test_workflow
import yaml
from genomelab.deconv.uxm import UxmDeconvConfig, deconvolve_samples, write_proportions
from genomelab.ingest.fragments import read_reads_sheet, uxm_records, write_sample_counts
from genomelab.io.blocks import read_block_counts
from test_envs import env_gaps
from test_workflow import job_counts, snakemake

workdir = test_workflow.workdir

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"^<!-- (file|output): (\S+) -->\n```[a-z]*\n(.*?)^```", flags=re.M | re.S)
TITLE = "\n## Real WGBS, the UXM way\n"


def example_blocks() -> dict[tuple[str, str], str]:
    """``{(kind, path): text}`` of the marked blocks of the section."""
    text = (ROOT / "docs" / "ingest.md").read_text()
    start = text.find(TITLE)
    assert start >= 0, "docs/ingest.md lost its 'Real WGBS, the UXM way' section"
    end = text.find("\n## ", start + 1)
    return {(k, p): body for k, p, body in MARK.findall(text[start : end if end > 0 else len(text)])}


def write_example(root: Path) -> tuple[Path, dict]:
    """Write the example's files under ``root``; returns the config path and the config."""
    blocks = example_blocks()
    config = None
    for (kind, name), body in blocks.items():
        if kind != "file":
            continue
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".gz"):
            with gzip.open(path, "wt") as fh:
                fh.write(body)
        else:
            path.write_text(body)
        if name.endswith(".yaml"):
            config = (path, yaml.safe_load(body))
    assert config is not None, "the example has no config block"
    return config


def shown_output() -> list[dict[str, str]]:
    outputs = [body for (kind, _), body in example_blocks().items() if kind == "output"]
    assert len(outputs) == 1
    return list(csv.DictReader(io.StringIO(outputs[0])))


def assert_shown(csv_path: Path) -> None:
    with csv_path.open() as fh:
        got = list(csv.DictReader(fh))
    shown = shown_output()
    assert [r["sample"] for r in got] == [r["sample"] for r in shown]
    for g, s in zip(got, shown, strict=True):
        assert list(g) == list(s)
        np.testing.assert_allclose(
            [float(g[k]) for k in list(g)[1:]], [float(s[k]) for k in list(s)[1:]], atol=1e-5
        )


def test_example_steps_give_the_documented_proportions(tmp_path: Path, monkeypatch) -> None:
    config_path, config = write_example(tmp_path)
    monkeypatch.chdir(tmp_path)
    section = config["ingest"]["uxm"]
    records = uxm_records({"cpg_index": "", "genome_fasta": "", "markers": "", **section})
    assert list(records) == [r.sample for r in read_reads_sheet(section["samples"])] == ["plasma1", "plasma2"]
    counts = []
    for rec in records.values():
        out = tmp_path / f"{rec.sample}.tsv"
        write_sample_counts(
            rec.path, rec.format, section["markers"], section, out, tmp_path / f"{rec.sample}.json"
        )
        counts.append(out)
    # The counts the page explains by hand: liver_1 3 U, 1 X, 7 M; TTT reads too short.
    _, plasma1 = read_block_counts(counts[0])
    assert plasma1.tolist() == [[3, 1, 7], [8, 0, 2], [2, 0, 8], [1, 0, 9]]
    result, ref, record = deconvolve_samples(
        section["atlas"], section["markers"], counts, list(records), UxmDeconvConfig.from_dict(section)
    )
    write_proportions(tmp_path / "p.csv", tmp_path / "p.json", result, ref, list(records), record)
    assert_shown(tmp_path / "p.csv")
    assert record["n_blocks_used"] == 4 and ref.tissues.tolist() == [
        "Liver-Hep",
        "Blood-Granul",
        "Lung-Ep-Alveo",
    ]


def test_example_plans_one_job_per_sample(workdir: Path) -> None:
    config_path, _ = write_example(workdir)
    # The documented command names no target: the proportions are the run's default target.
    res = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(config_path))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert job_counts(res.stdout) == {"ingest_block_counts": 2, "deconv_uxm": 1, "all": 1}


@pytest.mark.slow
def test_example_runs(workdir: Path, tmp_path: Path, monkeypatch) -> None:
    config_path, config = write_example(workdir)
    # These rules are not in the session's test-config run, whose imports tests/test_envs.py checks.
    monkeypatch.setenv("GENOMELAB_IMPORT_RECORD", str(tmp_path / "imports"))
    res = snakemake(workdir, "deconv_uxm", "--cores", "2", "--configfile", str(config_path))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    recorded, missing = env_gaps(tmp_path / "imports")
    assert recorded == {"ingest_block_counts", "deconv_uxm"} and not missing, (recorded, missing)
    out = workdir / "results" / config["run"] / "ingest" / "uxm"
    assert_shown(workdir / "results" / config["run"] / "deconv" / "uxm" / "proportions.csv")
    assert (out / "qc" / "plasma1.json").is_file() and (out / "counts" / "plasma2.tsv").is_file()


def test_bam_samples_plan_the_cpg_index_from_the_fasta(workdir: Path) -> None:
    config_path, config = write_example(workdir)
    data = workdir / "data" / "my_uxm"
    (data / "genome.fa").write_text(">chr1\nACGT\n")
    (data / "bam.tsv").write_text("sample\tpath\nplasma1\twgbs/plasma1.pat.gz\ncell3\tbam/cell3.bam\n")
    (data / "bam").mkdir(exist_ok=True)
    (data / "bam" / "cell3.bam").write_bytes(b"")  # a dry run does not open it
    uxm = {
        **config["ingest"]["uxm"],
        "samples": "data/my_uxm/bam.tsv",
        "genome_fasta": "data/my_uxm/genome.fa",
    }
    bam_config = workdir / "my_uxm_bam.yaml"
    bam_config.write_text(yaml.safe_dump({**config, "ingest": {"uxm": uxm}}))
    res = snakemake(workdir, "-n", "deconv_uxm", "--cores", "2", "--configfile", str(bam_config))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert job_counts(res.stdout) == {"ingest_cpg_bed": 1, "ingest_block_counts": 2, "deconv_uxm": 1}


def test_parse_time_checks_name_what_is_missing(tmp_path: Path) -> None:
    sheet = tmp_path / "s.tsv"
    sheet.write_text("sample\tpath\na\tx.bam\n")
    base = {"samples": str(sheet), "markers": "", "atlas": "a.tsv", "cpg_index": "", "genome_fasta": ""}
    with pytest.raises(ValueError, match=r"BAM sample\(s\) \['a'\] need the genome's CpG index"):
        uxm_records(base)
    with pytest.raises(ValueError, match="needs marker blocks"):
        uxm_records({**base, "atlas": "", "cpg_index": "CpG.bed.gz"})
    sheet.write_text("sample\tpath\na\tx.txt\n")
    with pytest.raises(ValueError, match=r"s\.tsv, line 2: .*x\.txt: cannot tell the format"):
        uxm_records({**base, "cpg_index": "CpG.bed.gz"})
