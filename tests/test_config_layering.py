"""Config layering: the user's config alone (plus schema defaults) decides what runs and where.

No config file is read by default, every module is off unless enabled, and ``run`` keys the
output, log and state folders; ``genomelab init <module>`` writes a starting config from the
schema. Dry runs happen in a copy of the repository under tmp_path.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from genomelab.cli import main as genomelab_main
from genomelab.config import ConfigError, schema_default, schema_node
from genomelab.config_schema import fill_defaults
from genomelab.config_template import OWN_DATA, RUN_PLACEHOLDER, USED_FROM, config_template
from genomelab.run_config import load_run_config, placeholders
from genomelab.tissue.kinds import CLOSED_FORM

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
# Sections with an `enabled` key, as workflow/rules/common.smk passes them.
SECTIONS = ("tissue", "deconv", "regulon", "assoc", "binning", "ingest")
# Rules every run has besides its modules' own.
RUN_RULES = {"all", "gate", "report_summary", "report_software_versions"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the repository's tracked (and new, unignored) files."""
    dest = tmp_path_factory.mktemp("repo")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for rel in files:
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=300, env=env
    )


def planned(workdir: Path, configfile: Path) -> tuple[dict[str, int], set[str]]:
    """Dry run of ``configfile``: ({rule: jobs}, every planned output, log and benchmark path)."""
    res = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(configfile))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    counts: dict[str, int] = {}
    for rule in re.findall(r"^(?:local)?rule (\w+):", res.stdout, flags=re.M):
        counts[rule] = counts.get(rule, 0) + 1
    paths = set()
    for line in re.findall(r"^\s+(?:output|log|benchmark): (.+)$", res.stdout, flags=re.M):
        paths.update(p.strip() for p in line.split(", "))
    return counts, paths


def tissue_data(folder: Path, n_samples: int = 9, n_regions: int = 20) -> Path:
    """A tiny sample sheet of per-sample NPZ files (methylation int8 [n_regions, 150])."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["sample\tfile\ttissue"]
    for i in range(n_samples):
        meth = rng.integers(0, 3, size=(n_regions, 150)).astype(np.int8)
        np.savez_compressed(folder / f"s{i}.npz", methylation=meth)
        rows.append(f"s{i}\ts{i}.npz\t{('Blood', 'Liver', 'Colon')[i % 3]}")
    (folder / "samples.tsv").write_text("\n".join(rows) + "\n")
    return folder / "samples.tsv"


def own_tissue_config(workdir: Path, run: str) -> Path:
    """What a user writes: `genomelab init tissue`, placeholders filled with small data."""
    sheet = tissue_data(workdir / "mydata")
    text = config_template("tissue")
    text = text.replace(RUN_PLACEHOLDER, run).replace(
        "<path/to/samples.tsv>", str(sheet.relative_to(workdir))
    )
    path = workdir / f"{run}.yaml"
    path.write_text(text)
    return path


def load(config: dict, name: str = "my.yaml") -> dict:
    return load_run_config(config, [name], SCHEMA, SECTIONS)


# -- the workflow: only the user's config, schema defaults, one folder per run


def test_a_bare_run_stops_and_says_which_config_to_pass(workdir):
    res = snakemake(workdir, "-n", "--cores", "1")
    assert res.returncode != 0
    message = res.stdout + res.stderr
    assert "No config given" in message and "--configfile config/demo.yaml" in message, message[-2000:]
    assert "genomelab init" in message
    assert not (workdir / "results").exists()


def test_a_config_naming_one_module_plans_only_that_module(workdir):
    counts, paths = planned(workdir, own_tissue_config(workdir, "cohort1"))
    modules = {rule.split("_")[0] for rule in counts if rule not in RUN_RULES}
    assert modules == {"tissue"}, counts
    assert counts["gate"] == 1 and counts["report_summary"] == 1
    # Schema defaults, not the demo's: each engine-trained model x ensemble 5 (the schema's)
    # training jobs, and one closed-form fit of the read-profile model.
    engine = [m for m in schema_default("tissue.models") if m not in CLOSED_FORM]
    assert counts["tissue_train"] == len(engine) * schema_default("tissue.ensemble")
    assert counts["tissue_reads"] == 1 and "reads" in schema_default("tissue.models")
    # One overfit check and one gate per model (each model's training waits for its own).
    n_models = len(schema_default("tissue.models"))
    assert counts["tissue_diagnostic_overfit"] == counts["tissue_gate"] == n_models, counts
    assert "tissue_simulate" not in counts, "the user's sheet is the input, not the demo simulator"
    outside = sorted(p for p in paths if not p.startswith(("results/cohort1/", "logs/cohort1/")))
    assert paths and not outside, outside[:5]


def test_the_one_module_config_takes_training_settings_from_the_schema(workdir):
    config = load(yaml.safe_load(own_tissue_config(workdir, "cohort1").read_text()))
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    train = config["tissue"]["train"]
    for key in ("max_epochs", "batch_size", "lr", "patience"):
        assert train[key] == schema_default(f"train.{key}"), key
        assert train[key] != demo["tissue"]["train"][key], f"the demo's tissue.train.{key} leaked in"
    assert not any(config[m]["enabled"] for m in SECTIONS if m != "tissue")


def test_two_run_names_plan_disjoint_outputs(workdir):
    _, first = planned(workdir, own_tissue_config(workdir, "cohort1"))
    _, second = planned(workdir, own_tissue_config(workdir, "cohort1_lr_small"))
    assert first and second and not first & second
    assert all(p.startswith(("results/cohort1_lr_small/", "logs/cohort1_lr_small/")) for p in second)
    # Resumable training state is keyed by the run too.
    assert any(p.startswith("results/cohort1/") for p in first)


@pytest.mark.parametrize(("configfile", "run"), [("config/demo.yaml", "demo"), ("config/test.yaml", "test")])
def test_shipped_configs_run_on_their_own_into_their_folder(workdir, configfile, run):
    counts, paths = planned(workdir, workdir / configfile)
    modules = {rule.split("_")[0] for rule in counts if rule not in RUN_RULES}
    assert modules == {"tissue", "deconv", "regulon", "assoc", "binning", "ingest"}, counts
    assert all(p.startswith((f"results/{run}/", f"logs/{run}/")) for p in paths), sorted(paths)[:5]


# -- the checks at parse time


@pytest.mark.parametrize(
    ("config", "files", "message"),
    [
        ({}, [], r"No config given.*config/demo\.yaml.*genomelab init"),
        (
            {"seed": 3, "tissue": {"enabled": True}},
            ["my.yaml"],
            r"my\.yaml names no run: add a line `run: <name>`",
        ),
        ({"run": "a"}, ["my.yaml"], r"my\.yaml enables no module"),
        ({"run": "a", "tissue": {"enabled": False}}, ["my.yaml"], r"enables no module"),
        (
            {"run": "a/b", "tissue": {"enabled": True}},
            ["my.yaml"],
            r"(?s)my\.yaml is invalid: .*'a/b' does not match",
        ),
        (
            {"run": "a", "tissue": {"enabled": True, "lr": 1}},
            ["my.yaml"],
            r"(?s)invalid.*'lr' was unexpected",
        ),
        (
            {
                "run": "a",
                "tissue": {"enabled": True, "input": {"source": "sheet", "sheet": "<path/to/samples.tsv>"}},
            },
            ["my.yaml"],
            r"my\.yaml still has placeholders to fill in: tissue\.input\.sheet = '<path/to/samples\.tsv>'",
        ),
        (
            # genomelab init deconv writes input.sample_sheet as a placeholder; a user with an
            # atlas alone was told only to fill it in.
            {
                "run": "a",
                "deconv": {
                    "enabled": True,
                    "input": {"sample_sheet": "<path/to/samples.tsv>"},
                    "reference": {"atlas": "atlas.csv"},
                },
            },
            ["my.yaml"],
            r"my\.yaml still has placeholders to fill in: deconv\.input\.sample_sheet = '<path/to/samples\.tsv>' "
            r"\(or delete that line if your data is named by deconv\.input\.features or deconv\.reference\.atlas "
            r"instead\)$",
        ),
        (
            {"run": "a", "regulon": {"enabled": True, "dump_dir": "dump"}},
            ["my.yaml"],
            r"my\.yaml enables a module without its input\(s\): set regulon\.genome \(",
        ),
        (
            {"run": "a", "regulon": {"enabled": True, "genome": "g.fna"}},
            ["my.yaml"],
            r"set regulon\.dump_dir or regulon\.mongodb_uri_env or regulon\.flat_files\.genes or "
            r"regulon\.flat_files\.operons \(",
        ),
        (
            {"run": "a", "assoc": {"enabled": True, "data": {"links": "l.tsv"}}},
            ["my.yaml"],
            r"set assoc\.data\.sources, assoc\.data\.targets \(",
        ),
        # A genes file alone: no operon is read, the operon target is all 0 and the gate
        # stopped the run after the data step ("target 'operon' is constant (0)").
        (
            {"run": "a", "regulon": {"enabled": True, "genome": "g.fna", "flat_files": {"genes": "G.txt"}}},
            ["my.yaml"],
            r"my\.yaml: regulon\.flat_files\.genes is set but regulon\.flat_files\.operons is not",
        ),
        # `genomelab init regulon` then flat files filled in, the dump_dir line kept: the
        # placeholder is to delete, not to fill (it said only "placeholders to fill in").
        (
            {
                "run": "a",
                "regulon": {
                    "enabled": True,
                    "dump_dir": "<path/to/regulondb_dump>",
                    "genome": "g.fna",
                    "flat_files": {"genes": "G.txt", "operons": "O.txt"},
                },
            },
            ["my.yaml"],
            r"regulon\.dump_dir = '<path/to/regulondb_dump>' \(delete this line: "
            r"regulon\.flat_files\.genes is given instead\)",
        ),
        # Operons alone, no genes anywhere: the data step stopped with 'no genes'.
        (
            {"run": "a", "regulon": {"enabled": True, "genome": "g.fna", "flat_files": {"operons": "O.txt"}}},
            ["my.yaml"],
            r"regulon\.flat_files\.operons is set but neither regulon\.flat_files\.genes nor "
            r"regulon\.annotation",
        ),
        (
            {
                "run": "a",
                "regulon": {
                    "enabled": True,
                    "genome": "g.fna",
                    "flat_files": {"genes": "G.txt", "operons": "O.txt"},
                    "mongodb_uri_env": "URI",
                },
            },
            ["my.yaml"],
            r"give one of regulon\.flat_files and regulon\.mongodb_uri_env, not both",
        ),
    ],
)
def test_a_config_that_cannot_run_stops_with_what_to_fix(config, files, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(config, files, SCHEMA, SECTIONS)


def test_regulon_flat_files_alone_are_an_input_the_workflow_plans(workdir):
    """docs/regulon.md: flat files are given instead of dump_dir (no dump, no MongoDB)."""
    data = workdir / "my_flat"
    data.mkdir()
    for name in ("GeneProductSet.txt", "OperonSet.txt", "genome.fna"):
        (data / name).write_text("# a file\n")
    config = {
        "run": "my_flat",
        "regulon": {
            "enabled": True,
            "flat_files": {"genes": "my_flat/GeneProductSet.txt", "operons": "my_flat/OperonSet.txt"},
            "genome": "my_flat/genome.fna",
        },
    }
    assert load(dict(config))["regulon"]["dump_dir"] == ""
    path = workdir / "my_flat.yaml"
    path.write_text(yaml.safe_dump(config))
    counts, paths = planned(workdir, path)
    assert counts.get("regulon_process") == 1 and "regulon_train" in counts, counts
    assert all(p.startswith(("results/my_flat/", "logs/my_flat/")) for p in paths)


def test_paths_written_relative_to_the_config_file_are_named_with_where_they_are(tmp_path, monkeypatch):
    """Snakemake reads a config's relative paths from its working directory; a user who
    wrote them relative to the config file gets told so, with the files' real place."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "contigs.fna").write_text(">c\nACGT\n")
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    config = {"run": "a", "binning": {"enabled": True, "input": {"contigs": "contigs.fna"}}}
    with pytest.raises(
        ConfigError,
        match=r"binning\.input\.contigs = 'contigs\.fna' is not there but is .*project/contigs\.fna",
    ):
        load_run_config(dict(config), [project / "my.yaml"], SCHEMA, SECTIONS)
    # Where the working directory holds the file too, the path is fine as it stands.
    (tmp_path / "repo" / "contigs.fna").write_text(">c\nACGT\n")
    assert load_run_config(dict(config), [project / "my.yaml"], SCHEMA, SECTIONS)["binning"]["input"][
        "contigs"
    ]


def test_a_word_value_beside_the_config_is_no_path_written_relative_to_it(tmp_path, monkeypatch):
    """Values that are no path (binning.model.kind: contrastive, tissue names, ...) are not
    taken for paths written relative to the config file, whatever its folder holds."""
    project = tmp_path / "project"
    (project / "contrastive").mkdir(parents=True)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    (tmp_path / "repo" / "contigs.fna").write_text(">c\nACGT\n")
    config = {"run": "a", "binning": {"enabled": True, "input": {"contigs": "contigs.fna"}}}
    out = load_run_config(config, [project / "my.yaml"], SCHEMA, SECTIONS)
    assert out["binning"]["model"]["kind"] == "contrastive"


def test_no_demo_data_stands_in_for_a_module_s_required_inputs(tmp_path):
    from genomelab.assoc.cli import main as assoc_main

    assert not any(schema_default(f"assoc.data.{t}") for t in ("links", "sources", "targets"))
    assert not schema_default("regulon.genome") and not schema_default("regulon.dump_dir")
    with pytest.raises(ValueError, match="no links, sources, targets table: pass --links"):
        assoc_main(["train", "--out", str(tmp_path / "out")])


@pytest.mark.parametrize(
    "module, own",
    [
        ("tissue", {"input": {"source": "sheet", "sheet": "s.tsv"}}),
        ("tissue", {"input": {"source": "hdf5", "hdf5": "x.h5"}}),
        ("deconv", {"input": {"sample_sheet": "s.tsv"}}),
        ("deconv", {"reference": {"atlas": "atlas.csv"}}),
    ],
)
def test_simulated_data_stand_in_only_when_the_config_asks_for_them(module, own):
    """tissue and deconv can simulate the demo's data: enabled with no data of the user's and
    no word about simulation they used to train on it under the user's run name."""
    with pytest.raises(ConfigError, match=rf"enables {module} but names no data of yours .*`simulate: {{}}`"):
        load({"run": "r", module: {"enabled": True}})
    for asked in ({"simulate": {}}, {"simulate": {"n_regions": 50}}):
        assert load({"run": "r", module: {"enabled": True, **asked}})[module]["enabled"]
    assert load({"run": "r", module: {"enabled": True, **own}})[module]["enabled"]
    if module == "tissue":
        assert load({"run": "r", "tissue": {"enabled": True, "input": {"source": "simulate"}}})


def test_placeholders_are_found_anywhere_in_the_config():
    config = {"run": "<name>", "binning": {"input": {"genomes": ["a.fna", "<more.fna>"]}}, "x": "a<b>"}
    assert placeholders(config) == ["run", "binning.input.genomes[1]"]


# -- genomelab init


def test_init_knows_every_module_the_config_can_enable():
    from genomelab.config import schema_properties

    enabled = {k for k in schema_properties("config") if "enabled" in schema_properties(f"config.{k}")}
    assert set(OWN_DATA) == enabled == set(SECTIONS)


def test_own_data_keys_of_the_template_exist_in_the_schema():
    for module, keys in OWN_DATA.items():
        for key in keys:
            schema_node(f"{module}.{key}")  # raises ConfigError naming a missing key


@pytest.mark.parametrize("module", list(OWN_DATA))
def test_init_writes_a_config_that_validates_once_its_placeholders_are_filled(tmp_path, module):
    path = tmp_path / "my.yaml"
    assert genomelab_main(["init", module, "--out", str(path)]) == 0
    config = yaml.safe_load(path.read_text())
    unfilled = placeholders(config)
    assert "run" in unfilled and len(unfilled) == 1 + sum(
        isinstance(v, str) and v.startswith("<") for v in OWN_DATA[module].values()
    )
    assert config[module]["enabled"] is True
    with pytest.raises(ConfigError, match="placeholders"):
        load(config)
    # Filled with small data made here; the config then validates against the schema.
    data = tmp_path / "data"
    data.mkdir()
    text = path.read_text().replace(RUN_PLACEHOLDER, "cohort1")
    for i, key in enumerate(unfilled[1:]):
        placeholder = config
        for part in key.split("."):
            placeholder = placeholder[part]
        small = data / f"input{i}{Path(placeholder.strip('<>')).suffix}"
        small.write_text("x\n")
        text = text.replace(placeholder, str(small))
    path.write_text(text)
    filled = load(yaml.safe_load(path.read_text()), str(path))
    assert [m for m in SECTIONS if filled[m]["enabled"]] == [module]
    assert not placeholders(filled)


@pytest.mark.parametrize("module", list(OWN_DATA))
def test_init_comments_every_other_key_at_its_schema_default(module):
    """Uncommenting the whole template gives a config equal to the schema defaults (plus the
    filled-in keys): the comments are the schema, so they cannot drift from it."""
    text = config_template(module)
    body = text[text.index("\nrun: ") + 1 :]
    lines = []
    for line in body.splitlines():
        if "(no default)" in line:  # a key the schema leaves unset (per-job resource overrides)
            continue
        # The "# " of a commented block sits at the indentation of its first key.
        lines.append(re.sub(r"^(\s*)# ", r"\1", line, count=1))
    uncommented = yaml.safe_load("\n".join(lines))
    # A per-job override block whose keys all lack defaults is left empty: {} by the schema.
    training = uncommented["resources"]["training"]
    uncommented["resources"]["training"] = {k: v or {} for k, v in training.items()}
    live = yaml.safe_load(text)
    expected = fill_defaults(yaml.safe_load(text), SCHEMA)
    for other in set(OWN_DATA) - {module}:
        del expected[other]  # the template leaves other modules out
    expected["resources"]["training"] = {
        k: v for k, v in expected["resources"]["training"].items() if k.startswith(module)
    }
    # Keys the module takes from elsewhere are a note naming where (assoc.train.lr: the grid's).
    for key, source in USED_FROM.items():
        section, *inner, last = key.split(".")
        if section == module:
            node = expected[section]
            for part in inner:
                node = node[part]
            del node[last]
            assert f"# {last}: not set here: each run takes its own {source}" in text
    assert uncommented == expected
    assert live[module]["enabled"] is True and set(live) == {"run", module}


def test_init_refuses_to_overwrite_and_names_unknown_modules(tmp_path, capsys):
    path = tmp_path / "my.yaml"
    path.write_text("mine\n")
    assert genomelab_main(["init", "tissue", "--out", str(path)]) == 2
    assert path.read_text() == "mine\n"
    assert genomelab_main(["init", "tissue", "--out", str(path), "--force"]) == 0
    assert "tissue:\n  enabled: true" in path.read_text()
    with pytest.raises(ValueError, match="no module 'nope'; genomelab init knows tissue"):
        config_template("nope")


def test_init_names_the_snakefile_when_run_outside_the_repository(tmp_path, monkeypatch, capfd):
    # A user's project folder: a bare `snakemake -n` there finds no Snakefile.
    monkeypatch.chdir(tmp_path)
    assert genomelab_main(["init", "binning", "--out", "my.yaml"]) == 0
    said = capfd.readouterr().err
    assert f"snakemake -n -s {ROOT.resolve() / 'Snakefile'} --directory . --configfile my.yaml" in said
    # In the repository the short form stays.
    monkeypatch.chdir(ROOT)
    out = tmp_path / "other.yaml"
    assert genomelab_main(["init", "binning", "--out", str(out)]) == 0
    assert f"then snakemake -n --configfile {out}" in capfd.readouterr().err
    # A folder with a Snakefile of its own (a wrapper workflow): `-s` would replace it.
    wrapper = tmp_path / "wrapper"
    (wrapper / "workflow").mkdir(parents=True)
    (wrapper / "workflow" / "Snakefile").write_text("include: 'x.smk'\n")
    monkeypatch.chdir(wrapper)
    assert genomelab_main(["init", "binning", "--out", "my.yaml"]) == 0
    said = capfd.readouterr().err
    assert "then snakemake -n --configfile my.yaml" in said and " -s " not in said


def test_validate_config_applies_the_workflow_checks(tmp_path, capsys):
    assert genomelab_main(["validate-config", str(ROOT / "config" / "test.yaml")]) == 0
    path = tmp_path / "my.yaml"
    path.write_text("tissue: {enabled: true}\n")
    assert genomelab_main(["validate-config", str(path)]) == 1
    assert f"{path} names no run" in capsys.readouterr().err


def test_the_printed_config_is_one_validate_config_accepts(tmp_path, capsys, monkeypatch):
    """--print fills every default, assoc.train.lr and batch_size too, which a config may not
    write (each grid point's replaces them): the demo's printed config, saved and checked
    again, was refused, with advice to move train's default lr into the grid (a change of
    the run). They are left out of the print."""
    monkeypatch.chdir(ROOT)  # the demo's paths are relative to the repository
    assert genomelab_main(["validate-config", "config/demo.yaml", "--print"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["assoc"]["enabled"] and "max_epochs" in printed["assoc"]["train"]
    assert not {"lr", "batch_size"} & set(printed["assoc"]["train"])
    demo = yaml.safe_load(Path("config/demo.yaml").read_text())
    assert printed["tissue"]["train"]["lr"] == demo["tissue"]["train"]["lr"]  # other modules' stay
    path = tmp_path / "printed.yaml"
    path.write_text(yaml.safe_dump(printed, sort_keys=False))
    assert genomelab_main(["validate-config", str(path)]) == 0, capsys.readouterr().err


def test_the_readme_own_data_example_plans_only_its_module(workdir):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using your own data") :]
    example = re.search(r"```yaml\n# my\.yaml\n(.*?)```", section, flags=re.S).group(1)
    config = yaml.safe_load(example)
    sheet = tissue_data(workdir / "readme_data")
    example = example.replace(config["tissue"]["input"]["sheet"], str(sheet))
    path = workdir / "readme_example.yaml"
    path.write_text(example)
    counts, paths = planned(workdir, path)
    assert {rule.split("_")[0] for rule in counts if rule not in RUN_RULES} == {"tissue"}, counts
    assert all(p.startswith((f"results/{config['run']}/", f"logs/{config['run']}/")) for p in paths)


def test_deconv_coverage_is_a_number_or_a_range():
    """mixtures.coverage: the schema takes one depth or [lowest, highest], nothing else."""
    base = {"run": "r", "deconv": {"enabled": True, "input": {"sample_sheet": "s.tsv"}}}
    for ok in (30, [5, 60]):
        cfg = load({**base, "deconv": {**base["deconv"], "mixtures": {"coverage": ok}}})
        assert cfg["deconv"]["mixtures"]["coverage"] == ok
    for bad in ([5], [5, 60, 90], "30x", 0):
        with pytest.raises(ConfigError, match="is invalid"):
            load({**base, "deconv": {**base["deconv"], "mixtures": {"coverage": bad}}})


def test_schema_errors_name_every_bad_key_in_a_few_lines():
    """A misspelt key and a value of the wrong type: each named by its dotted key (with the key
    it was probably meant to be), both at once, and not buried under the schema and config."""
    config = {
        "run": "a",
        "tissue": {"enabled": True, "trian": {"max_epochs": 5}, "train": {"max_epochs": "five"}},
        "deconv": {"reference": {"atlass": "a.csv"}},
    }
    with pytest.raises(ConfigError) as err:
        load(config)
    message = str(err.value)
    assert "my.yaml is invalid: 3 problem(s)" in message
    assert "tissue.trian: unknown key ('trian' was unexpected; did you mean tissue.train?)" in message
    assert (
        "deconv.reference.atlass: unknown key ('atlass' was unexpected; did you mean deconv.reference.atlas?)"
        in message
    )
    assert "tissue.train.max_epochs: 'five' is not of type 'integer'" in message
    assert len(message.splitlines()) == 4, message
    with pytest.raises(
        ConfigError, match=r"zzz: unknown key \('zzz' was unexpected; keys allowed here: run, seed"
    ):
        load({"run": "a", "tissue": {"enabled": True}, "zzz": 1})
    with pytest.raises(ConfigError, match=r"tissue\.models\[1\]: 'transformer' is not one of"):
        load({"run": "a", "tissue": {"enabled": True, "models": ["mlp", "transformer"]}})


def test_deconv_own_data_keys_are_one_list_that_the_check_and_the_docs_use():
    """The deconv keys that name a user's own data were written out three times (schema text,
    docs, config check). The schema's x-own-data is the list: the check takes exactly its keys
    (each alone lets deconv run without simulate; none of them stops the run naming them all)
    and docs/deconv.md "Inputs" names the same keys, in order."""
    from genomelab.config import own_data_keys
    from genomelab.run_config import OWN_DATA_INPUTS

    keys = own_data_keys("deconv")
    assert OWN_DATA_INPUTS["deconv"] == keys and len(keys) == 3
    text = (ROOT / "docs" / "deconv.md").read_text()
    line = re.search(r"^- Your own data is any of (.*?) \(the one\s+list", text, flags=re.M | re.S)
    assert line, "docs/deconv.md: the 'Your own data is any of ...' line is gone"
    assert tuple(re.findall(r"`([^`]+)`", line.group(1))) == keys
    base = {"run": "own", "deconv": {"enabled": True}}
    with pytest.raises(ConfigError, match="names no data of yours") as err:
        load(copy.deepcopy(base))
    assert " or ".join(f"deconv.{k}" for k in keys) in str(err.value)
    for key in keys:
        first, second = key.split(".")
        load({"run": "own", "deconv": {"enabled": True, first: {second: "mine.tsv"}}})


def test_one_validation_names_a_misspelt_key_once_and_fills_every_default(workdir, monkeypatch):
    """The config is validated once, by genomelab (one line per bad key), and its defaults are
    filled across the module schemas as before; Snakemake's validate(config, schema), which
    ran as well after genomelab's and could only repeat it, is not called."""
    from snakemake import utils as smk_utils

    (workdir / "trian.yaml").write_text(
        "run: a\ntissue: {enabled: true, simulate: {}, trian: {max_epochs: 5}}\n"
    )
    res = snakemake(workdir, "-n", "--cores", "1", "--configfile", "trian.yaml")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert out.count("tissue.trian: unknown key ('trian' was unexpected; did you mean tissue.train?)") == 1, (
        out
    )
    assert "Failed validating" not in out and "ValidationError" not in out, out
    calls = []
    monkeypatch.setattr(smk_utils, "validate", lambda *a, **k: calls.append(a))
    given = {"run": "a", "tissue": {"enabled": True, "simulate": {}, "train": {"max_epochs": 5}}}
    config = load(copy.deepcopy(given))
    assert calls == []
    assert config == fill_defaults(copy.deepcopy(given), SCHEMA)
    assert config["tissue"]["train"]["max_epochs"] == 5
    assert config["tissue"]["train"]["lr"] == schema_default("tissue.train.lr")
    assert config["regulon"]["targets"]["block_bp"] == schema_default("regulon.targets.block_bp")
    top = yaml.safe_load(SCHEMA.read_text())["properties"]
    assert (
        config["resources"]["training_mem_mb"] == top["resources"]["properties"]["training_mem_mb"]["default"]
    )


def test_a_predict_only_run_plans_the_predict_rules_of_modules_that_are_off(workdir):
    """New samples classified / deconvolved with an earlier run's model: tissue and deconv off,
    their predict section set. The run plans their predict rules (it did nothing, silently, or
    stopped saying no module is enabled); without the model it stops saying what to name."""
    labelled = tissue_data(workdir / "new_samples")
    # New samples carry no tissue label: the sheets of both predict rules leave it out.
    sheet = labelled.with_name("unlabelled.tsv")
    sheet.write_text("".join(line.rsplit("\t", 1)[0] + "\n" for line in labelled.read_text().splitlines()))
    (workdir / "old").mkdir(exist_ok=True)
    for name in ("model.pt", "deconv.pt", "reference.tsv", "plasma.csv"):
        (workdir / "old" / name).write_text("x")
    config = workdir / "predict_only.yaml"
    config.write_text(
        "run: predonly\n"
        f"tissue: {{enabled: false, predict: {{inputs: {sheet.relative_to(workdir)}, model: old/model.pt}}}}\n"
        f"deconv:\n  enabled: false\n  predict: {{inputs: {sheet.relative_to(workdir)}, model: old/deconv.pt, "
        "reference: old/reference.tsv}\n"
    )
    counts, paths = planned(workdir, config)
    assert counts == {"tissue_predict": 1, "deconv_predict": 1, "all": 1}, counts
    assert {
        "results/predonly/tissue/predict/predictions.json",
        "results/predonly/deconv/predict/join_report.json",
    } <= paths
    base = {"run": "predonly", "tissue": {"enabled": False, "predict": {"inputs": "new.tsv"}}}
    with pytest.raises(
        ConfigError,
        match=r"my.yaml sets tissue.predict.inputs with the module off.*leaves tissue.predict.model empty",
    ):
        load(base)
    deconv = {"run": "p", "deconv": {"enabled": False, "predict": {"inputs": "p.csv", "model": "m.pt"}}}
    with pytest.raises(ConfigError, match=r"leaves deconv.predict.reference empty"):
        load(deconv)
    # regulon, assoc and binning have no predict-only run: off with predict.inputs set they
    # planned nothing, silently; now the run stops and says to use genomelab predict.
    for module in ("regulon", "assoc", "binning"):
        idle = {"run": "p", "tissue": {"enabled": True, "simulate": {}}}
        idle[module] = {"enabled": False, "predict": {"inputs": "new.fna", "model": "m.pt"}}
        with pytest.raises(
            ConfigError,
            match=rf"sets {module}.predict.inputs with the module off.*genomelab predict {module}",
        ):
            load(idle)


def test_the_template_notes_every_train_key_assoc_takes_from_its_grid():
    """config_template may not import a module, so USED_FROM restates assoc's GRID_TRAIN_KEYS:
    the two must name the same keys."""
    from genomelab.assoc.grid import GRID_TRAIN_KEYS

    assert {k for k in USED_FROM if k.startswith("assoc.train.")} == {
        f"assoc.train.{k}" for k in GRID_TRAIN_KEYS
    }
    assert all(USED_FROM[f"assoc.train.{k}"] == f"assoc.grid.{k}" for k in GRID_TRAIN_KEYS)


def test_a_bad_command_line_value_is_named_as_the_command_line_value():
    """`--config seed=abc` was reported as "my.yaml is invalid", naming the file for a value
    the file does not hold; a nested --config value (whose numbers Snakemake keeps as
    strings) gets the advice to write it in a config file."""
    config = {"run": "r", "binning": {"enabled": True, "input": {"contigs": "x.fa"}}, "seed": "abc"}
    with pytest.raises(ConfigError, match=r"^my.yaml with --config seed is invalid: 1 problem") as err:
        load_run_config(copy.deepcopy(config), ["my.yaml"], SCHEMA, SECTIONS, {"seed": "abc"})
    assert "seed: 'abc' is not of type 'integer'" in str(err.value) and "nested" not in str(err.value)
    nested = {**config, "seed": 1, "resources": {"training_mem_mb": "8000"}}
    with pytest.raises(ConfigError, match=r"my.yaml with --config resources \(Snakemake reads the values"):
        load_run_config(nested, ["my.yaml"], SCHEMA, SECTIONS, {"resources": {"training_mem_mb": "8000"}})
    with pytest.raises(ConfigError, match=r"^my.yaml is invalid"):  # the file's own value
        load_run_config(copy.deepcopy(config), ["my.yaml"], SCHEMA, SECTIONS, {"run": "r"})


def test_a_bad_value_in_the_file_is_named_as_the_file_s_in_a_real_run(workdir):
    """Snakemake's overwrite_config holds the config files' contents as well as --config, so
    round 19 named a bad value of the file itself as "with --config seed"."""
    bad = workdir / "bad_seed.yaml"
    bad.write_text("run: bad\nseed: abc\ntissue: {enabled: true, input: {source: simulate}}\n")
    res = snakemake(workdir, "-n", "--configfile", str(bad))
    out = res.stdout + res.stderr
    assert res.returncode != 0 and f"{bad} is invalid: 1 problem" in out, out[-2000:]
    res = snakemake(workdir, "-n", "--configfile", str(bad), "--config", "seed=abd")
    out = res.stdout + res.stderr
    assert f"{bad} with --config seed is invalid" in out, out[-2000:]


def test_a_target_after_configfile_is_named_as_a_target_read_as_a_config(tmp_path):
    """`snakemake --configfile my.yaml results/r/tissue/summary.json` made Snakemake read the
    summary as a second config file: a screen of its keys, unknown, and no word of why."""
    target = tmp_path / "results" / "r" / "summary.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"module": "tissue", "title": "x", "diagnostics": []}))
    config = {"run": "r", "binning": {"enabled": True, "input": {"contigs": "x.fa"}}, "module": "tissue"}
    with pytest.raises(
        ConfigError, match=r"summary.json \(keys module, title\): read as a config file"
    ) as err:
        load_run_config(config, ["my.yaml", target], SCHEMA, SECTIONS)
    assert "name targets before it" in str(err.value)
    # A YAML config's own unknown key is the schema's to name (with its did-you-mean).
    with pytest.raises(ConfigError, match="is invalid"):
        load_run_config(
            {"run": "r", "binning": {"enabled": True, "input": {"contigs": "x.fa"}}, "modul": 1},
            ["my.yaml"],
            SCHEMA,
            SECTIONS,
        )
