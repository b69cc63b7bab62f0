"""Each module's "Your own data" example (docs/<module>.md) runs as it stands.

The example's blocks marked ``<!-- file: PATH -->`` (its config and its input tables) are
written to PATH in a copy of the repository; the files those tables name (NPZ samples,
FASTA, BSON dumps, methylation calls) are made here with small data. ``snakemake -n`` with
the example's config must then plan that module's jobs, its gate and the run report, and
nothing else. Where a real run is cheap on a CPU, a ``slow`` test runs it.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import test_workflow
import yaml
from test_workflow import job_counts, snakemake

# The same fixture as test_workflow.py's: a copy of the repository per module.
workdir = test_workflow.workdir

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("tissue", "deconv", "regulon", "assoc", "binning", "ingest")
# Rules of every run besides its modules' own.
RUN_RULES = {"all", "gate", "report_summary", "report_software_versions"}
MARK = re.compile(r"^<!-- (file|bson): (\S+) -->\n```[a-z]*\n(.*?)^```", flags=re.M | re.S)


def own_data_section(module: str) -> str:
    """The text of the "## Your own data" section of docs/<module>.md."""
    text = (ROOT / "docs" / f"{module}.md").read_text()
    start = text.find("\n## Your own data\n")
    assert start >= 0, f"docs/{module}.md has no '## Your own data' section"
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def marked_blocks(module: str, kind: str = "file") -> dict[str, str]:
    """``{path or name: block text}`` of the section's blocks marked ``<!-- kind: ... -->``."""
    return {name: body for k, name, body in MARK.findall(own_data_section(module)) if k == kind}


class Example:
    """One module's example: its config (the one marked ``.yaml`` block) and input tables."""

    def __init__(self, module: str, root: Path):
        self.module, self.root = module, root
        self.blocks = marked_blocks(module)
        configs = [name for name in self.blocks if name.endswith(".yaml")]
        assert len(configs) == 1, f"docs/{module}.md: mark exactly one config block, found {configs}"
        self.config_name = configs[0]
        self.config = yaml.safe_load(self.blocks[self.config_name])
        self.run = self.config["run"]

    def write(self, name: str) -> Path:
        """Write the marked block ``name`` to that path under the repository copy (gzipped
        for a ``.gz`` name: the block shows what ``zcat`` shows)."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, self.blocks[name])
        return path

    def rows(self, name: str) -> list[dict[str, str]]:
        """The rows of the tab-separated block ``name``."""
        return list(csv.DictReader(self.blocks[name].splitlines(), delimiter="\t"))

    def write_config(self) -> Path:
        return self.write(self.config_name)

    def section(self) -> dict:
        return self.config[self.module]


def write_text(path: Path, text: str) -> None:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)


def plan(root: Path, *configs: Path) -> dict[str, int]:
    """``{rule: jobs}`` of a dry run of ``configs``; the dry run must succeed."""
    res = snakemake(root, "-n", "--cores", "2", "--configfile", *map(str, configs))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # A module that is off must not alarm the user (its unset inputs were once "" paths).
    assert "Empty file path" not in res.stdout + res.stderr, res.stderr[-3000:]
    return job_counts(res.stdout)


def assert_plans_only(example: Example, counts: dict[str, int]) -> None:
    modules = {rule.split("_")[0] for rule in counts if rule not in RUN_RULES}
    assert modules == {example.module}, counts
    assert counts.get("report_summary") == 1, counts


# -- the input files each example describes, made with small data


def simulated_npz(folder: Path, tissues: list[str], per_tissue: int = 2) -> list[Path]:
    """Tiny NPZ samples of the tissue simulator (same regions in each), in simulator order."""
    from genomelab.io.sheets import read_sample_sheet
    from genomelab.tissue.simulate import SimulationConfig, simulate_dataset

    cfg = SimulationConfig(tissues=tissues, n_subtypes=1, samples_per_subtype=per_tissue, n_regions=40)
    return [rec.file for rec in read_sample_sheet(simulate_dataset(cfg, folder))]


def npz_sheet(example: Example, name: str) -> Path:
    """Write the sheet block ``name`` and a simulated NPZ at each file it names."""
    sheet = example.write(name)
    rows = example.rows(name)
    made = simulated_npz(example.root / "simulated" / example.run, ["A", "B"])
    # A dry run reads the sheet, not the NPZ contents: any valid sample stands in for each row.
    for row, source in zip(rows, made * len(rows), strict=False):
        if not row.get("file"):
            continue  # a sheet without the column: the workflow's parse-time check names it
        dest = sheet.parent / row["file"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, dest)
    return sheet


def _strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def tissue_inputs(example: Example) -> None:
    npz_sheet(example, example.section()["input"]["sheet"])


def deconv_inputs(example: Example) -> None:
    from genomelab.deconv.io import read_table

    section = example.section()
    npz_sheet(example, section["input"]["sample_sheet"])
    plasma = example.write(section["infer"]["samples"])
    values, regions, samples = read_table(plasma, "samples to deconvolve")  # the module's reader
    assert values.shape == (len(regions), len(samples)) and np.isnan(values).any()


def regulon_inputs(example: Example) -> None:
    from genomelab.regulon.synthetic import make_synthetic

    section = example.section()
    made = make_synthetic(example.root / "simulated" / example.run, n_bp=20_000)
    shutil.copytree(made["genome"].parent / "dump", example.root / section["dump_dir"])
    write_text(example.root / section["genome"], made["genome"].read_text())


def assoc_inputs(example: Example) -> None:
    from genomelab.assoc.data import read_entities, read_links
    from genomelab.config import schema_default

    data = example.section()["data"]
    paths = {key: example.write(data[key]) for key in ("links", "sources", "targets")}
    # The module's own readers (as rule assoc_data runs them): the doc's tables are valid.
    sources = read_entities(paths["sources"], "source")
    targets = read_entities(paths["targets"], "target")
    words = data.get("confidence_words") or schema_default("assoc.data.confidence_words")
    links = read_links(paths["links"], sources, targets, confidence_words=words)
    assert len(links) == sum(2 if r["direction"] == "both" else 1 for r in example.rows(data["links"]))


# Three composition classes of random sequence (GC content), so that a real run finds bins.
BINNING_GENOMES = {"genome_A": 0.3, "genome_B": 0.5, "genome_C": 0.7}


def binning_inputs(example: Example, n_contigs: int = 48) -> None:
    """Contigs ``contig_1..n`` cycling through BINNING_GENOMES (FASTA written by the io
    writer) and the truth table: the doc's block, then the rows it leaves out."""
    from genomelab.io.fasta import write_fasta_record

    section = example.section()["input"]
    rng = np.random.default_rng(0)
    genomes = list(BINNING_GENOMES)
    truth = {f"contig_{i + 1}": genomes[i % len(genomes)] for i in range(n_contigs)}
    contigs = example.root / section["contigs"]
    contigs.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(contigs, "wb") as fh:
        for name, genome in truth.items():
            gc = BINNING_GENOMES[genome]
            probs = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
            seq = rng.choice(np.frombuffer(b"ACGT", np.uint8), int(rng.integers(2500, 4000)), p=probs)
            write_fasta_record(fh, name, seq.tobytes())
    documented = {row["contig"]: row["genome"] for row in example.rows(section["truth"])}
    assert documented.items() <= truth.items(), (
        f"the doc's truth rows {documented} are not the test's contigs"
    )
    path = example.write(section["truth"])
    with path.open("a") as fh:
        fh.writelines(f"{c}\t{g}\n" for c, g in truth.items() if c not in documented)


def ingest_inputs(example: Example) -> None:
    section = example.section()
    example.write(section["regions"])
    sheet = example.write(section["samples"])
    calls = [name for name in example.blocks if name.endswith((".cov", ".cov.gz"))]
    assert len(calls) == 1, calls
    shown = example.write(calls[0])
    # The other samples of the sheet get the same calls (the doc shows one file).
    for row in example.rows(section["samples"]):
        path = sheet.parent / row["path"]
        if not path.exists():
            shutil.copy(shown, path)


INPUTS = {
    "tissue": tissue_inputs,
    "deconv": deconv_inputs,
    "regulon": regulon_inputs,
    "assoc": assoc_inputs,
    "binning": binning_inputs,
    "ingest": ingest_inputs,
}


def own_data_example(module: str, root: Path) -> tuple[Example, Path]:
    """Write the doc's example of ``module`` and its inputs under ``root``; return it and its config."""
    example = Example(module, root)
    INPUTS[module](example)
    return example, example.write_config()


# -- the docs


def test_every_module_doc_has_a_complete_own_data_example():
    assert set(INPUTS) == set(MODULES)
    for module in MODULES:
        example = Example(module, ROOT)
        text = own_data_section(module)
        needed = (
            "snakemake -n",
            f"--configfile {example.config_name}",
            "--profile profiles/slurm",
            f"results/{example.run}/{module}/",
            f"results/{example.run}/report/summary.md",
        )
        for snippet in needed:
            assert snippet in text, f"docs/{module}.md 'Your own data' does not show {snippet!r}"
        assert example.section()["enabled"] is True
        assert set(example.config) == {"run", module}, (
            f"docs/{module}.md: the example enables {set(example.config)}"
        )


@pytest.mark.parametrize("module", ["tissue", "deconv", "regulon", "assoc", "binning", "ingest"])
def test_the_own_data_example_says_how_to_run_from_a_project_folder(module):
    """`genomelab init` suggests running from a project folder (-s .../Snakefile --directory
    .), but the tissue, regulon and assoc examples showed only `--profile profiles/slurm`,
    which finds no profile outside the repository; as docs/ingest.md does, each says how."""
    text = own_data_section(module)
    for snippet in ("-s\n/path/to/genomelab/Snakefile --directory .", "/path/to/genomelab/profiles/slurm"):
        flat = " ".join(text.split())
        assert " ".join(snippet.split()) in flat, (
            f"docs/{module}.md 'Your own data' does not show {snippet!r}"
        )


def test_the_readme_points_to_every_own_data_example():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using your own data") :]
    section = section[: section.index("\n## ", 1)]
    for module in MODULES:
        assert f"(docs/{module}.md#your-own-data)" in section, module
        assert "\n## Your own data\n" in (ROOT / "docs" / f"{module}.md").read_text()
    # A published atlas alone is enough to train deconv (docs/deconv.md, "An atlas alone"),
    # the commonest case; the README's row named only pure-tissue NPZ samples.
    (row,) = [line for line in section.splitlines() if line.startswith("| `deconv` |")]
    assert "atlas" in row, row


def documented_commands(text: str) -> list[str]:
    """Every line of a fenced code block, and every inline code span (a span wrapped over
    lines is one command) of a Markdown text."""
    fences = re.split(r"^```.*$", text, flags=re.M)
    commands = []
    for i, part in enumerate(fences):
        if i % 2:
            commands += part.splitlines()
        else:
            commands += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", part)]
    return commands


def test_no_documented_command_gives_a_target_after_configfile():
    """Snakemake's --configfile reads every word after it as a config file: docs/ingest.md's
    `snakemake --cores 2 --configfile config/demo.yaml results/demo/ingest/samples.tsv`
    stopped with FileNotFoundError for the target, read as a config. A target goes first."""
    docs = [ROOT / "README.md", ROOT / "config" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    wrong = []
    for path in docs:
        for command in documented_commands(path.read_text()):
            words = command.split("#")[0].split()
            if "snakemake" not in words or "--configfile" not in words:
                continue
            after = words[words.index("--configfile") + 1 :]
            values = next((after[:k] for k, w in enumerate(after) if w.startswith("-")), after)
            if any(not w.endswith((".yaml", ".yml")) for w in values):
                wrong.append(f"{path.relative_to(ROOT)}: {command.strip()}")
    assert documented_commands("a `snakemake x\n--configfile c.yaml t.tsv` b") == [
        "snakemake x --configfile c.yaml t.tsv"
    ]
    assert not wrong, wrong


def test_the_examples_set_only_keys_that_differ_from_the_schema_defaults():
    from genomelab.config import schema_default

    def walk(node: dict, prefix: str):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    for module in MODULES:
        for key, value in walk(Example(module, ROOT).section(), f"{module}."):
            assert value != schema_default(key), f"docs/{module}.md sets {key}: {value!r}, its default"


def test_the_examples_keep_their_inputs_in_the_run_s_data_folder():
    """Paths are relative to the checkout (as in the docs), under data/<run>/ (git-ignored)."""
    for module in MODULES:
        example = Example(module, ROOT)
        for value in _strings(example.section()):
            if "/" in value:
                assert value.startswith(f"data/{example.run}/"), f"docs/{module}.md: {value}"
        for name in example.blocks:
            assert name == example.config_name or name.startswith(f"data/{example.run}/"), name


def test_the_regulon_example_documents_parse_with_the_module_s_readers(tmp_path):
    """The doc's documents, written as BSON and read back, give what the readers need."""
    from genomelab.io.bson import iter_bson_file, write_bson_file
    from genomelab.regulon.data import parse_expression_doc, parse_gene_doc, parse_operon_doc

    docs = {name: json.loads(body) for name, body in marked_blocks("regulon", "bson").items()}
    assert set(docs) == {"geneExpression", "geneDatamart", "operonDatamart"}
    read = {}
    for name, doc in docs.items():
        write_bson_file(tmp_path / f"{name}.bson", [doc])
        (read[name],) = iter_bson_file(tmp_path / f"{name}.bson")
    gene = parse_gene_doc(read["geneDatamart"])
    assert gene is not None and gene["strand"] == "+" and gene["start"] == 189
    dataset, bnumber, value, _ = parse_expression_doc(read["geneExpression"], "tpm")
    assert bnumber == gene["bnumber"] and value is not None and dataset
    operon = parse_operon_doc(read["operonDatamart"])
    assert operon is not None and gene.get("gene_id") in operon["members"] and len(operon["members"]) >= 2


# -- the dry runs: each example plans its module, the gate and the report, nothing else


@pytest.mark.parametrize("module", MODULES)
def test_the_own_data_example_plans_only_its_module(workdir, module):
    example, config = own_data_example(module, workdir)
    counts = plan(workdir, config)
    modules = {rule.split("_")[0] for rule in counts if rule not in RUN_RULES}
    assert modules == {module}, counts
    assert counts.get("report_summary") == 1, counts
    assert not any(rule.endswith("_simulate") or rule == "binning_shred" for rule in counts), (
        f"the demo data generator runs for docs/{module}.md: {counts}"
    )
    if module == "ingest":
        assert counts["ingest_sample"] == len(example.rows(example.section()["samples"]))


@pytest.mark.parametrize("module", ["binning", "deconv", "ingest"])
def test_the_own_data_example_plans_from_a_folder_outside_the_repository(workdir, tmp_path, module):
    # A user keeps data and config in a project folder and runs the workflow there with
    # -s and --directory (README: relative paths are read from that folder); the shipped
    # defaults (binning's marker HMMs) must still be found beside the Snakefile.
    example, config = own_data_example(module, tmp_path)
    res = snakemake(
        workdir,
        "-s",
        str(workdir / "Snakefile"),
        "--directory",
        str(tmp_path),
        "-n",
        "--cores",
        "2",
        "--configfile",
        str(config),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    counts = job_counts(res.stdout)
    assert_plans_only(example, counts)
    if module == "binning":
        assert counts.get("binning_markers") == 1, counts


def test_binning_predict_of_a_run_with_abundances_needs_a_depth_table_before_any_job(workdir, tmp_path):
    # With binning.input.depth the run's encoder reads abundances; binning.predict.inputs
    # without binning.predict.depth failed in binning_predict after training, naming the
    # CLI's --depth. Now the plan stops naming the config key.
    example, config = own_data_example("binning", tmp_path)
    contigs = [row["contig"] for row in example.rows(example.section()["input"]["truth"])]
    depth = tmp_path / "depth.tsv"
    depth.write_text("".join(f"{c}\t{i + 1}.5\t2.0\n" for i, c in enumerate(contigs)))
    cfg = yaml.safe_load(config.read_text())
    cfg["binning"]["input"]["depth"] = str(depth)
    cfg["binning"]["predict"] = {"inputs": str(tmp_path / example.section()["input"]["contigs"])}
    config.write_text(yaml.safe_dump(cfg))
    res = snakemake(workdir, "--directory", str(tmp_path), "-n", "--cores", "2", "--configfile", str(config))
    assert res.returncode != 0
    assert "set binning.predict.depth to the new contigs' abundance table" in res.stderr + res.stdout
    cfg["binning"]["predict"]["depth"] = str(depth)
    config.write_text(yaml.safe_dump(cfg))
    res = snakemake(workdir, "--directory", str(tmp_path), "-n", "--cores", "2", "--configfile", str(config))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert job_counts(res.stdout).get("binning_predict") == 1


def test_binning_new_contigs_joined_with_the_run_s_as_the_doc_shows(tmp_path):
    """docs/binning.md joins the run's contigs and a new assembly's to see which run bins
    the new contigs join; its bare `cat` stopped on MEGAHIT's repeated names (`duplicate
    record name 'k141_1'`). The documented lines prefix the new names, in the depth table too,
    and give a FASTA and a depth table whose names are unique and agree."""
    import subprocess

    from genomelab.io.fasta import read_fasta
    from genomelab.io.tables import read_abundance_table

    if shutil.which("sed") is None or shutil.which("gzip") is None:
        pytest.skip("sed or gzip is not installed")
    rng = np.random.default_rng(0)

    def assembly(path: Path, n: int) -> list[str]:
        names = [f"k141_{i}" for i in range(1, n + 1)]  # MEGAHIT restarts its numbering
        with gzip.open(path, "wt") as fh:
            for name in names:
                seq = "".join(rng.choice(list("ACGT"), 3000))
                fh.write(f">{name} flag=1 multi=4.0000 len=3000\n{seq[:1500]}\n{seq[1500:]}\n")
        return names

    run, new = assembly(tmp_path / "contigs.fna.gz", 4), assembly(tmp_path / "new_contigs.fna.gz", 3)
    for path, names in (("depth.tsv", run), ("new_depth.tsv", new)):
        (tmp_path / path).write_text(
            "Contig\ts1 Mean\ts2 Mean\n" + "".join(f"{c}\t3.0\t5.0\n" for c in names)
        )
    text = (ROOT / "docs" / "binning.md").read_text()
    commands = [
        line
        for line in text.splitlines()
        if line.startswith(("zcat new_contigs.fna.gz |", "cat contigs.fna.gz new_", "(cat depth.tsv;"))
    ]
    assert len(commands) == 3, commands
    for command in commands:
        subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=tmp_path, check=True)
    names = [name for name, _ in read_fasta(tmp_path / "all.fna.gz")]  # duplicates would raise
    assert names == run + [f"new_{c}" for c in new]
    contigs, values, samples = read_abundance_table(tmp_path / "all_depth.tsv")
    assert list(contigs) == names and values.shape == (7, 2) and len(samples) == 2


def test_binning_predict_of_shredded_genomes_with_simulated_abundances_names_them(workdir, tmp_path):
    # Shredded genomes with binning.shred.depth_samples > 0 (the test config) train on
    # simulated abundances: the plan's refusal names that setting, not binning.input.depth,
    # which is not set.
    new = tmp_path / "new.fna"
    new.write_text(">c1\n" + "ACGT" * 500 + "\n")
    res = snakemake(
        workdir, "-n", "--cores", "2", "--configfile", "config/test.yaml",
        "--config", f"binning={{'predict': {{'inputs': '{new}'}}}}",
    )  # fmt: skip
    out = res.stderr + res.stdout
    assert res.returncode != 0
    assert "trained with the abundances of binning.shred.depth_samples: 2 (simulated" in out, out[-3000:]
    assert "binning.input.depth" not in out


# -- real runs where they are cheap on a CPU


@pytest.mark.slow
@pytest.mark.parametrize("module", ["binning", "ingest"])
def test_the_own_data_example_runs(workdir, module):
    example, config = own_data_example(module, workdir)
    res = snakemake(workdir, "--cores", "2", "--configfile", str(config), timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    results = workdir / "results" / example.run
    summary = (results / "report" / "summary.md").read_text()
    assert summary.startswith(f"# genomelab run summary: {example.run}\n"), summary[:200]
    assert json.loads((results / module / "summary.json").read_text())["module"] == module
    if module == "binning":
        table = (results / "binning" / "bins" / "contig_bins.tsv").read_text().splitlines()
        bins = list(csv.DictReader(table, delimiter="\t"))
        assert len(bins) == 48 and {row["status"] for row in bins} == {"binned"}
        # The doc's command for new contigs runs as written, on the run's model (here on a
        # copy of the run's contigs under the doc's file name).
        (command,) = [
            c
            for c in documented_commands(own_data_section("binning").replace("\\\n", " "))
            # The new contigs alone (the section also joins them with the run's, all.fna.gz).
            if c.startswith("genomelab predict binning --model") and "--inputs new_contigs.fna.gz" in c
        ]
        shutil.copy(workdir / example.section()["input"]["contigs"], workdir / "new_contigs.fna.gz")
        words = command.split()
        res = test_workflow.run([test_workflow.tool("genomelab"), *words[1:]], workdir)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        out = workdir / words[words.index("--out") + 1] / "contig_bins.tsv"
        predicted = list(csv.DictReader(out.read_text().splitlines(), delimiter="\t"))
        assert len(predicted) == 48 and {row["status"] for row in predicted} == {"binned"}
    if module == "ingest":
        sheet = (results / "ingest" / "samples.tsv").read_text()
        assert all(row["sample"] in sheet for row in example.rows(example.section()["samples"]))


def test_the_deconv_example_says_how_to_deconvolve_new_samples_with_options_that_exist():
    """docs/deconv.md's own-data section ended at the run: how to deconvolve the next batch
    of plasma with the trained network (genomelab predict deconv) was only in docs/predict.md.
    The documented command parses with the CLI's own parser, every option and the subcommand."""
    import shlex

    from genomelab.cli import build_parser

    section = own_data_section("deconv")
    match = re.search(r"^genomelab predict deconv (?:.*\\\n)*.*$", section, flags=re.M)
    assert match, "docs/deconv.md's own-data section has no genomelab predict deconv command"
    argv = shlex.split(match.group(0).replace("\\\n", " "))[1:]
    args = build_parser().parse_args(argv)
    assert args.module == "deconv" and args.reference.endswith("reference/reference.tsv")
    assert args.model.endswith("phase3/sparse/rep0/model.pt") and args.out
    assert "--presence-threshold" in section and "not the network's presence mask" in section
