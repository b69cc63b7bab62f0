"""One dispatcher for every rule: the registry, its names, and which genomelab a rule runs."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from genomelab.entry import dispatch, resolve_step
from genomelab.steps_registry import STEPS

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "workflow" / "rules"
# Rules whose step is named otherwise, and why: three tissue diagnostics rules differ only in
# outputs and resources (the check is a param); the gate is one rule for every module, and
# tissue's per-model gate runs the same step.
NAMED_OTHERWISE = {
    "tissue_diagnostic_plot": "genomelab.tissue.steps:diagnostic_step",
    "tissue_diagnostic_overfit": "genomelab.tissue.steps:diagnostic_step",
    "gate": "genomelab.diagnostics.steps:gate_step",
    "tissue_gate": "genomelab.diagnostics.steps:gate_step",
    # One predict code path for every module (genomelab predict, the rules, genomelab serve).
    **{
        f"{m}_predict": f"genomelab.predict.steps:{m}_step"
        for m in ("tissue", "deconv", "regulon", "assoc", "binning")
    },
}


def rule_scripts() -> dict[str, str]:
    """{rule name: its ``script:`` path} over every rule file."""
    scripts: dict[str, str] = {}
    for smk in sorted(RULES.glob("*.smk")):
        rule = None
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            if m := re.match(r"\s*(?:rule|checkpoint) (\w+):", line):
                rule = m.group(1)
                scripts[rule] = ""
            elif line.strip() == "script:" and rule is not None:
                scripts[rule] = lines[i + 1].strip().strip('"')
    return scripts


def test_every_rule_runs_the_dispatcher_and_every_registered_step_is_a_rule():
    scripts = rule_scripts()
    assert len(scripts) > 40, scripts
    assert {r: s for r, s in scripts.items() if s != "../scripts/run_step.py"} == {}
    assert sorted(set(scripts) - set(STEPS)) == [], "rules without a registered step"
    assert sorted(set(STEPS) - set(scripts)) == [], "registered steps without a rule"


@pytest.mark.parametrize("rule", sorted(STEPS))
def test_rule_step_and_module_carry_one_name(rule):
    step = resolve_step(rule)
    assert callable(step)
    if rule in NAMED_OTHERWISE:
        assert STEPS[rule] == NAMED_OTHERWISE[rule]
        return
    module, name = rule.split("_", 1)
    assert STEPS[rule].startswith(f"genomelab.{module}."), STEPS[rule]
    assert step.__name__ == f"{name}_step", f"rule {rule} runs {step.__name__}"


def test_an_unknown_rule_is_refused_with_the_registered_names():
    with pytest.raises(ValueError, match="no step registered for rule 'tissue_trian'") as err:
        resolve_step("tissue_trian")
    assert "registered rules: assoc_baselines, " in str(err.value) and "tissue_ensemble, " in str(err.value)
    with pytest.raises(ValueError, match="has no function no_such_step"):
        resolve_step("x", {"x": "genomelab.tissue.steps:no_such_step"})


@pytest.fixture
def root_logging():
    """run_rule installs its own root handlers; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def smk_like(tmp_path: Path, rule: str, **params) -> SimpleNamespace:
    return SimpleNamespace(
        rule=rule,
        log=[str(tmp_path / "rule.log")],
        resources=SimpleNamespace(gpu=0),
        threads=1,
        wildcards={},
        input=[],
        output=[str(tmp_path / "out.json")],
        params=SimpleNamespace(**params),
        config={"seed": 1},
    )


def test_dispatch_of_an_unknown_rule_exits_1_and_says_why_in_the_rule_log(tmp_path, root_logging):
    with pytest.raises(SystemExit) as exc:
        dispatch(smk_like(tmp_path, "no_such_rule"))
    assert exc.value.code == 1
    log = (tmp_path / "rule.log").read_text()
    assert "rule no_such_rule failed: ValueError: no step registered for rule 'no_such_rule'" in log


def test_dispatch_runs_the_registered_step(tmp_path, root_logging):
    dispatch(smk_like(tmp_path, "report_software_versions", config='{"seed": 1}'))
    assert '"config_sha256"' in (tmp_path / "out.json").read_text()
    assert "rule report_software_versions finished" in (tmp_path / "rule.log").read_text()


def fake_genomelab(where: Path, body: str) -> Path:
    """A ``genomelab`` package elsewhere: what a `pip install .` or another clone provides."""
    (where / "genomelab").mkdir(parents=True)
    (where / "genomelab" / "__init__.py").write_text(body)
    return where


def test_the_dispatcher_drops_a_genomelab_imported_from_elsewhere(tmp_path):
    """run_step.py run as Snakemake runs it (``snakemake`` injected) after another genomelab
    was already imported: the step must run this checkout's code."""
    fake = fake_genomelab(tmp_path / "site", "__version__ = 'fake'\n")
    out = tmp_path / "out"
    code = f"""
import sys, runpy
from types import SimpleNamespace
sys.path.insert(0, {str(fake)!r})
import genomelab
assert genomelab.__version__ == "fake"
smk = SimpleNamespace(
    rule="report_software_versions", log=[{str(out / "rule.log")!r}], resources=SimpleNamespace(gpu=0),
    threads=1, wildcards={{}}, input=[], output=[{str(out / "versions.json")!r}],
    params=SimpleNamespace(config="{{}}"), config={{"seed": 1}},
)
runpy.run_path({str(ROOT / "workflow" / "scripts" / "run_step.py")!r}, init_globals={{"snakemake": smk}})
print(sys.modules["genomelab"].__file__)
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    own = ROOT / "workflow" / "scripts" / "genomelab"
    assert res.stdout.strip() == str(own / "__init__.py")
    assert f"genomelab code: {own}" in (out / "rule.log").read_text()
    assert (out / "versions.json").is_file()


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_a_job_lets_idle_openmp_threads_sleep_unless_its_environment_says_otherwise(
    tmp_path, given, expected
):
    """run_step.py run as Snakemake runs it: when torch first loads in the job (libgomp reads
    the policy then, once), OMP_WAIT_POLICY is already PASSIVE, or what the user set."""
    out = tmp_path / "out"
    code = f"""
import os, sys, runpy
from types import SimpleNamespace
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
        return None
sys.meta_path.insert(0, Watch())
smk = SimpleNamespace(
    rule="report_software_versions", log=[{str(out / "rule.log")!r}], resources=SimpleNamespace(gpu=0),
    threads=1, wildcards={{}}, input=[], output=[{str(out / "versions.json")!r}],
    params=SimpleNamespace(config="{{}}"), config={{"seed": 1}},
)
runpy.run_path({str(ROOT / "workflow" / "scripts" / "run_step.py")!r}, init_globals={{"snakemake": smk}})
import torch
print(seen[0])
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OMP_WAIT_POLICY")}
    if given:
        env["OMP_WAIT_POLICY"] = given
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == [expected]
    assert (out / "versions.json").is_file()


def test_a_rule_runs_this_workflows_genomelab_not_another_on_the_path(tmp_path):
    """A real Snakemake run of a cheap rule in a copy of the repository, with another
    genomelab on PYTHONPATH (ahead of the folder Snakemake appends for scripts) and the
    shared venv's editable install pointing at yet another checkout."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    copy = tmp_path / "repo"
    for rel in files:
        if (ROOT / rel).is_file():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, copy / rel)
    fake = fake_genomelab(tmp_path / "site", "raise ImportError('the other genomelab was imported')\n")
    env = dict(os.environ, PYTHONPATH=str(fake), PYTHONWARNINGS="ignore")
    # The tests set OMP_WAIT_POLICY for themselves (conftest.py); a user's shell does not.
    env.pop("OMP_WAIT_POLICY", None)
    target = "results/test/report/software_versions.json"  # config/test.yaml's run: test
    snakemake = Path(sys.executable).parent / "snakemake"
    res = subprocess.run(
        [str(snakemake), target, "--cores", "1", "--configfile", "config/test.yaml"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = (copy / "logs" / "test" / "report" / "software_versions.log").read_text()
    assert f"genomelab code: {copy / 'workflow' / 'scripts' / 'genomelab'}\n" in log, log
    # The job's own thread settings, in its log: Snakemake's OMP_NUM_THREADS (the rule's
    # threads) and the wait policy genomelab sets when the environment has none.
    assert re.search(r"threads: (\d+) \(OMP_NUM_THREADS=\1, OMP_WAIT_POLICY=PASSIVE\)\n", log), log
    assert (copy / target).is_file()
