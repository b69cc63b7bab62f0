"""Inputs named inside sample sheets and tables are tracked and checked at parse time.

Dry runs in a copy of the repository (as in test_workflow.py) with a tiny config per case:
a file a sheet lists is an input of the rule reading the sheet, and a bad sheet or truth
table stops Snakemake before any job with the file (and line) in the message.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import test_workflow
import yaml
from genomelab.tissue.simulate import SimulationConfig, simulate_dataset
from test_workflow import job_counts, snakemake

# The same fixture as test_workflow.py's: a copy of the repository per module.
workdir = test_workflow.workdir

RUN = "inputs"
FEATURES = f"results/{RUN}/tissue/features/region_means.h5"


def write_config(root: Path, name: str, **sections) -> str:
    """A config naming the run and turning on only ``sections`` (modules are off by default)."""
    config: dict = {"run": RUN}
    config.update(sections)
    path = root / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def simulated_sheet(root: Path) -> Path:
    cfg = SimulationConfig(
        tissues=["A", "B"], n_subtypes=1, samples_per_subtype=2, n_regions=12, n_positions=20
    )
    return simulate_dataset(cfg, root / "samples")


def tissue_section(sheet: Path) -> dict:
    return {"enabled": True, "input": {"source": "sheet", "sheet": str(sheet), "n_positions": 20}}


def files(root: Path) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if ".snakemake" not in p.parts]


def test_a_changed_npz_of_the_tissue_sheet_reruns_the_features(workdir, tmp_path):
    sheet = simulated_sheet(tmp_path)
    config = write_config(tmp_path, "tissue.yaml", tissue=tissue_section(sheet))
    args = ("--cores", "1", "--configfile", config)
    # Features made (a placeholder, touched so Snakemake records it: a dry-run test), then
    # nothing to do for them.
    (workdir / FEATURES).parent.mkdir(parents=True, exist_ok=True)
    (workdir / FEATURES).write_bytes(b"")
    touched = snakemake(workdir, FEATURES, "--touch", *args)
    assert touched.returncode == 0, touched.stdout + touched.stderr
    res = snakemake(workdir, FEATURES, "-n", *args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "tissue_features" not in job_counts(res.stdout), res.stdout
    # A fixed (newer) NPZ of one sample plans the features again.
    npz = sorted((tmp_path / "samples").glob("*.npz"))[1]
    later = time.time() + 60
    os.utime(npz, (later, later))
    res = snakemake(workdir, FEATURES, "-n", *args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert job_counts(res.stdout).get("tissue_features") == 1, res.stdout
    assert npz.name in res.stdout  # Snakemake's reason: updated input files


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines[:2] + ["B_A_09\t\tB\tB_A\tB_A_09"] + lines[2:], "line 3: empty 'file'"),
        (lambda lines: lines + [lines[1]], "line 6: duplicate sample 'A_A_01'"),
        (
            lambda lines: lines[:3] + ["X\tmissing.npz\tB\tB_A\tX"],
            "line 4: file .*missing.npz of sample 'X' does not exist",
        ),
    ],
    ids=["empty-field", "duplicate", "missing-file"],
)
def test_a_bad_tissue_sheet_stops_before_any_job(workdir, tmp_path, edit, message):
    sheet = simulated_sheet(tmp_path)
    sheet.write_text("\n".join(edit(sheet.read_text().splitlines())) + "\n")
    config = write_config(tmp_path, "tissue.yaml", tissue=tissue_section(sheet))
    before = files(workdir)
    res = snakemake(workdir, "--cores", "1", "--configfile", config)
    assert res.returncode != 0 and files(workdir) == before, "a job ran"
    assert re.search(f"{sheet}, {message}", res.stdout + res.stderr), res.stdout + res.stderr


def _blank_subtype(sheet: Path) -> None:
    lines = sheet.read_text().splitlines()
    fields = lines[2].split("\t")
    fields[3] = ""
    sheet.write_text("\n".join(lines[:2] + ["\t".join(fields)] + lines[3:]) + "\n")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda section, sheet: (_blank_subtype(sheet), section["task"].update(label="subtype")),
            r"sample sheet {sheet} \(tissue.task.label: subtype\): 1 sample\(s\) have no 'subtype' label "
            r"\(e.g. \['A_A_02'\]\); fill the column",
        ),
        (
            lambda section, sheet: section["task"].update(subset=["A", "Blod"]),
            r"sample sheet {sheet} .*: tissue.task.subset names tissues \['Blod'\] that no sample has "
            r"\(tissues: \['A', 'B'\]\)",
        ),
        (
            lambda section, sheet: section["input"].update(sheet=""),
            r"tissue.input.source is 'sheet' but tissue.input.sheet is empty: set it to your sample sheet",
        ),
        (
            lambda section, sheet: section["input"].update(source="hdf5", hdf5=str(sheet.parent / "x.h5")),
            r"tissue.input.hdf5 .*/samples/x.h5 does not exist",
        ),
        (
            lambda section, sheet: section["input"].pop("source"),
            r"tissue.input.sheet is set but tissue.input.source is 'simulate' \(the default: the demo's "
            r"simulated samples, which would ignore your file\): add `source: sheet` under tissue.input",
        ),
        (
            lambda section, sheet: section["input"].update(hdf5="data/cohort.h5"),
            r"tissue.input.hdf5 \(data/cohort.h5\) is set but tissue.input.source is 'sheet', which reads "
            r"only the sample sheet",
        ),
    ],
    ids=[
        "label-column-empty",
        "subset-typo",
        "no-sheet",
        "missing-hdf5",
        "sheet-without-source",
        "sheet-and-hdf5",
    ],
)
def test_a_tissue_task_its_input_cannot_serve_stops_before_any_job(workdir, tmp_path, change, message):
    """Before: a subtype task on a sheet without subtypes failed in tissue_splits, after the
    features of every sample; an empty input key stopped with Snakemake's 'Missing input files'
    naming no file; a sheet without `source: sheet` was ignored and the demo simulated."""
    sheet = simulated_sheet(tmp_path)
    section = {**tissue_section(sheet), "task": {}}
    change(section, sheet)
    config = write_config(tmp_path, "tissue.yaml", tissue=section)
    before = files(workdir)
    res = snakemake(workdir, "--cores", "1", "--configfile", config)
    assert res.returncode != 0 and files(workdir) == before, "a job ran"
    out = res.stdout + res.stderr
    assert re.search(message.format(sheet=re.escape(str(sheet))), out), out


def test_a_deconv_sheet_lists_its_npz_files_as_inputs(workdir, tmp_path):
    sheet = simulated_sheet(tmp_path)
    config = write_config(
        tmp_path,
        "deconv.yaml",
        # Tissues A and B read as no blood cell type: the phase-3 background is named.
        deconv={
            "enabled": True,
            "input": {"sample_sheet": str(sheet)},
            "mixtures": {"phase3": {"background": ["A"]}},
        },
    )
    target = f"results/{RUN}/deconv/sources.h5"
    res = snakemake(workdir, target, "-n", "--cores", "1", "--configfile", config)
    assert res.returncode == 0, res.stdout + res.stderr
    npz = sorted((tmp_path / "samples").glob("*.npz"))
    assert all(str(p) in res.stdout for p in npz), res.stdout  # every NPZ is an input of deconv_sources


def test_a_truth_table_without_header_stops_before_any_job(workdir, tmp_path):
    contigs = tmp_path / "contigs.fna"
    contigs.write_text(">c1\n" + "ACGT" * 600 + "\n>c2\n" + "GGCA" * 600 + "\n")
    truth = tmp_path / "truth.tsv"
    truth.write_text("c1\tgenomeA\nc2\tgenomeB\n")
    section = {"enabled": True, "input": {"contigs": str(contigs), "truth": str(truth)}}
    config = write_config(tmp_path, "binning.yaml", binning=section)
    before = files(workdir)
    res = snakemake(workdir, "--cores", "1", "--configfile", config)
    assert res.returncode != 0 and files(workdir) == before, "a job ran"
    out = res.stdout + res.stderr
    assert f"{truth}, line 1: truth table needs a tab-separated header line naming the columns" in out, out


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "binning.input.contigs is empty: no FASTA record"),
        ("\n\n", "binning.input.contigs is empty: no FASTA record"),
        # The depth table given as the contigs by mistake.
        ("contig\ts1\nc1\t3.2\n", "line 1: sequence before the first '>' header (is this a FASTA file?)"),
    ],
)
def test_contigs_that_are_no_fasta_stop_before_any_job(workdir, tmp_path, text, message):
    """An empty contig file or another table in its place stopped the first job
    (binning_features), not Snakemake's start."""
    contigs = tmp_path / "contigs.fna"
    contigs.write_text(text)
    config = write_config(
        tmp_path, "binning.yaml", binning={"enabled": True, "input": {"contigs": str(contigs)}}
    )
    before = files(workdir)
    res = snakemake(workdir, "--cores", "1", "--configfile", config)
    assert res.returncode != 0 and files(workdir) == before, "a job ran"
    out = res.stdout + res.stderr
    assert f"{contigs}" in out and message in out, out


def test_a_missing_relative_tissue_hdf5_says_where_it_was_looked_for(tmp_path, monkeypatch):
    """The parse-time check of tissue.input.hdf5 says, for a relative path, that it was read
    from the working directory (as every other input's message does), not only 'does not exist'."""
    from genomelab.tissue.task import check_input

    monkeypatch.chdir(tmp_path)
    section = {"input": {"source": "hdf5", "hdf5": "data/cohort.h5", "sheet": ""}, "task": {}}
    with pytest.raises(
        FileNotFoundError,
        match=rf"tissue.input.hdf5 data/cohort.h5 does not exist \(looked for in the working directory {re.escape(str(tmp_path))}\)",
    ):
        check_input(section)


def test_a_misspelt_splits_file_stops_the_run_naming_the_key(tmp_path):
    """tissue.input.splits misspelt on a run that had trained before: `snakemake -n` planned
    only the report jobs and the earlier split stood, with no error."""
    from genomelab.tissue.task import check_input

    splits = tmp_path / "splts.tsv"
    section = {"input": {"source": "simulate", "sheet": "", "hdf5": "", "splits": str(splits)}, "task": {}}
    with pytest.raises(
        FileNotFoundError, match=rf"tissue.input.splits {re.escape(str(splits))} does not exist$"
    ):
        check_input(section)
    splits.write_text("sample\tsplit\na\ttrain\n")
    check_input(section)


def test_a_bad_split_column_stops_the_run_before_any_job(workdir, tmp_path):
    """A sheet's split column saying 'validation' stopped the run only in tissue_splits, after
    the features of every sample; now Snakemake stops when it starts, naming sheet and line."""
    sheet = simulated_sheet(tmp_path)
    rows = sheet.read_text().splitlines()
    split = ["split"] + ["validation" if i == 2 else "train" for i in range(1, len(rows))]
    sheet.write_text("".join(f"{r}\t{s}\n" for r, s in zip(rows, split, strict=True)))
    config = write_config(tmp_path, "split.yaml", tissue=tissue_section(sheet))
    before = files(workdir)
    res = snakemake(workdir, "--cores", "1", "--configfile", config)
    assert res.returncode != 0 and files(workdir) == before, "a job ran"
    assert f"{sheet}, line 3: sample " in res.stdout + res.stderr
    assert "split 'validation' is not one of ('train', 'val', 'test')" in res.stdout + res.stderr


def test_given_folds_that_disagree_with_evaluation_folds_stop_the_run_at_parse_time(tmp_path):
    """A fold column of 3 folds with evaluation.folds 5 (or with one split) was refused in
    tissue_splits, after the features of every sample; check_input refuses it first."""
    from genomelab.tissue.task import check_input

    splits = tmp_path / "folds.tsv"
    splits.write_text("sample\tfold\n" + "".join(f"s{i}\t{i % 3}\n" for i in range(6)))
    section = {"input": {"source": "simulate", "sheet": "", "hdf5": "", "splits": str(splits)}, "task": {}}
    for folds, message in (
        (5, r"folds\.tsv gives 3 folds but tissue\.evaluation\.folds is 5; make them agree"),
        (1, r"folds\.tsv gives 3 folds but tissue\.evaluation\.folds is 1; set evaluation: \{folds: 3\}"),
    ):
        with pytest.raises(ValueError, match=message):
            check_input(section | {"evaluation": {"folds": folds}})
    check_input(section | {"evaluation": {"folds": 3}})


def test_a_converted_table_trained_on_tissue_says_to_classify_its_subtypes(tmp_path):
    """tissue_convert_tcga.py keeps a table's labels in subtype and one tissue ("Glioma");
    a config without task.label: subtype ran the features, then tissue_splits stopped with
    "task needs at least 2 classes of 'tissue', found 1". Now Snakemake stops when it starts
    and says which key to set."""
    from genomelab.tissue.convert import convert_beta_table
    from genomelab.tissue.task import check_input

    table = tmp_path / "betas.csv"
    table.write_text("sample,label,cg1,cg2\nP1,K1,0.1,0.9\nP2,K2,0.8,0.2\nP3,K1,0.2,0.7\n")
    h5 = convert_beta_table(table, tmp_path / "betas.h5", n_positions=10)
    section = {"input": {"source": "hdf5", "hdf5": str(h5), "sheet": ""}, "task": {}}
    with pytest.raises(
        ValueError,
        match=r"betas\.h5 \(tissue\.task\.label: tissue\): task needs at least 2 classes of 'tissue', "
        r"found \['Glioma'\]; the samples' subtype column has 2 classes \(\['K1', 'K2'\]\): to classify "
        r"those, set tissue\.task\.label: subtype$",
    ):
        check_input(section)
    check_input(section | {"task": {"label": "subtype"}})


def test_a_misspelt_input_file_is_named_by_its_config_key_before_any_job(workdir, tmp_path):
    """tissue.input.sheet and regulon.flat_files.* misspelt: the sheet's error named only the
    path ("sample sheet /x/sheet.tvs does not exist"), a flat file got Snakemake's missing-input
    message after planning; both now stop when Snakemake starts, naming the config key."""
    sheet = tmp_path / "sheet.tvs"
    config = write_config(tmp_path, "sheet.yaml", tissue=tissue_section(sheet))
    res = snakemake(workdir, "-n", "--configfile", config)
    assert res.returncode != 0
    assert f"tissue.input.sheet {sheet} does not exist" in res.stdout + res.stderr
    # A stale tissue.input.hdf5 beside source: sheet is not read: the error says to remove it.
    stale = tissue_section(simulated_sheet(tmp_path))
    stale["input"]["hdf5"] = str(tmp_path / "old.h5")
    res = snakemake(workdir, "-n", "--configfile", write_config(tmp_path, "stale.yaml", tissue=stale))
    assert res.returncode != 0 and "remove tissue.input.hdf5" in res.stdout + res.stderr
    genes = tmp_path / "GeneProductSet.txt"
    genes.write_text("# RegulonDB\n")
    operons = tmp_path / "OperonSett.txt"
    regulon = {
        "enabled": True,
        "genome": "resources/regulon/genome.fna.gz",
        "flat_files": {"genes": str(genes), "operons": str(operons)},
    }
    config = write_config(tmp_path, "flat.yaml", regulon=regulon)
    res = snakemake(workdir, "-n", "--configfile", config)
    assert res.returncode != 0
    assert f"regulon.flat_files.operons {operons} does not exist" in res.stdout + res.stderr


def test_a_misspelt_or_operonless_regulon_dump_stops_the_run_naming_the_key(workdir, tmp_path):
    """regulon.dump_dir misspelt, or a dump whose operons are JSON (a datamart export) rather
    than BSON: both planned every job, and the second trained nothing until the gate failed on
    a constant operon target. Now both stop when Snakemake starts, naming the key."""
    regulon = {
        "enabled": True,
        "genome": "resources/regulon/genome.fna.gz",
        "dump_dir": str(tmp_path / "dumpp"),
    }
    res = snakemake(workdir, "-n", "--configfile", write_config(tmp_path, "typo.yaml", regulon=regulon))
    assert res.returncode != 0
    assert f"regulon.dump_dir {tmp_path / 'dumpp'} is not a folder" in res.stdout + res.stderr
    dump = tmp_path / "dump" / "regulondb"
    dump.mkdir(parents=True)
    shipped = workdir / "resources" / "regulon" / "dump" / "regulondb" / "geneDatamart.bson.gz"
    (dump / "geneDatamart.bson.gz").write_bytes(shipped.read_bytes())
    (dump / "operonDatamart.json").write_text('{"operon": {"id": "o1"}}\n')
    regulon["dump_dir"] = str(tmp_path / "dump")
    res = snakemake(workdir, "-n", "--configfile", write_config(tmp_path, "json.yaml", regulon=regulon))
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "has no operonDatamart.bson[.gz]" in out
    assert f"{dump / 'operonDatamart.json'}'] is not read" in out and "needs its operons" in out


def test_an_assoc_train_lr_the_grid_would_replace_stops_the_run(workdir, tmp_path):
    """assoc.train.lr was silently replaced by assoc.grid.lr (1e-4): the run trained at a rate
    the user never asked for. Now Snakemake stops when it starts, naming the grid key."""
    assoc = {
        "enabled": True,
        "data": {k: f"resources/assoc/{k}.tsv" for k in ("links", "sources", "targets")},
        "train": {"lr": 0.01, "max_epochs": 3},
    }
    res = snakemake(workdir, "-n", "--configfile", write_config(tmp_path, "lr.yaml", assoc=assoc))
    assert res.returncode != 0
    assert "assoc.train.lr = 0.01 is not used" in res.stdout + res.stderr
    # Written at the schema default it is as unused (round 18 let 0.001 through).
    assoc["train"] = {"lr": 0.001, "max_epochs": 3}
    res = snakemake(workdir, "-n", "--configfile", write_config(tmp_path, "default.yaml", assoc=assoc))
    assert res.returncode != 0
    assert "assoc.train.lr = 0.001 is not used" in res.stdout + res.stderr
    assoc["train"] = {"max_epochs": 3}
    res = snakemake(workdir, "-n", "--configfile", write_config(tmp_path, "ok.yaml", assoc=assoc))
    assert res.returncode == 0, res.stderr


def test_the_documented_array_to_sequencing_config_plans_ingest_and_predict_only(workdir, tmp_path):
    """docs/tissue.md "Train on arrays, predict sequencing" said `ingest` and `predict` carry
    sequencing samples to an array-trained model but showed no config; its file (merged after
    the training run's config) must plan one ingest job per new sample and tissue_predict on
    the sheet ingest writes."""
    from genomelab.tissue.convert import convert_beta_table
    from genomelab.tissue.sequencing import draw_counts, write_bedmethyl, write_probe_regions

    text = (test_workflow.ROOT / "docs" / "tissue.md").read_text()
    section = text[text.index("### Train on arrays, predict sequencing") :]
    section = section[: section.index("\n## ")]
    block = re.search(r"<!-- file: (\S+) -->\n```yaml\n(.*?)```", section, flags=re.S)
    assert block, "docs/tissue.md's sequencing section has no marked config block"
    seq = yaml.safe_load(block.group(2))
    run = seq["tissue"]["predict"]["inputs"].split("/")[1]
    rng = np.random.default_rng(0)
    probes = [f"cg{i:03d}" for i in range(12)]
    rows = [f"P{i},K{i % 3},{','.join(f'{b:.3f}' for b in rng.uniform(0, 1, 12))}" for i in range(12)]
    (tmp_path / "betas.csv").write_text("sample,label," + ",".join(probes) + "\n" + "\n".join(rows) + "\n")
    h5 = convert_beta_table(tmp_path / "betas.csv", workdir / "train.h5", n_positions=150)
    pos = write_probe_regions(np.asarray(probes), workdir / seq["ingest"]["regions"])
    sheet = workdir / seq["ingest"]["samples"]
    for name in ("new1", "new2"):
        write_bedmethyl(sheet.parent / f"{name}.bed", pos, *draw_counts(rng.uniform(0, 1, 12), 5, rng))
    sheet.write_text("sample\tpath\nnew1\tnew1.bed\nnew2\tnew2.bed\n")
    tissue = {"enabled": True, "input": {"source": "hdf5", "hdf5": str(h5)}, "task": {"label": "subtype"}}
    train = {"run": run, "tissue": tissue}
    (workdir / "train.yaml").write_text(yaml.safe_dump(train))
    (workdir / block.group(1)).write_text(block.group(2))
    res = snakemake(workdir, "-n", "--configfile", "train.yaml", block.group(1))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    counts = job_counts(res.stdout)
    assert counts["ingest_sample"] == 2 and counts["ingest_sheet"] == 1 and counts["tissue_predict"] == 1
    predict = res.stdout[res.stdout.index("rule tissue_predict:") :].split("\n\n")[0]
    assert f"results/{run}/ingest/samples.tsv" in predict
