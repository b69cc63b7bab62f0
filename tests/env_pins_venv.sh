#!/usr/bin/env bash
# The test suite against the package versions envs/*.yaml pin (what `snakemake --use-conda`
# installs), where CI and `make setup` use constraints.txt's newer ones. Builds .venv-envs
# (git-ignored) from constraints.txt with every package an env pins replaced by the env's
# version, then runs the suite there (SLURM tests left out). torch stays requirements-cpu.txt's
# (the pinned pytorch is not on PyPI as a CPU build) and Python is this machine's.
#   bash tests/env_pins_venv.sh [pytest args]      # ~5 min to build, the suite's time to run
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-envs
python3 - <<'PY' > "$VENV.constraints.txt"
import re, yaml
# conda-forge names that differ on PyPI; python and pytorch are not taken from the envs.
rename = {"matplotlib-base": "matplotlib", "pyyaml": "pyyaml"}
pins = {}
for env in ("envs/cpu.yaml", "envs/torch.yaml"):
    for dep in yaml.safe_load(open(env))["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)=([0-9][^<>=,]*)", dep)
        if m and m.group(1) not in ("python", "pytorch"):
            pins[rename.get(m.group(1), m.group(1)).lower()] = m.group(2)
for line in open("constraints.txt"):
    m = re.match(r"([A-Za-z0-9_.-]+)==", line)
    name = m.group(1).lower() if m else None
    # The SLURM executor plugin runs beside Snakemake, not in a rule's env, and wants a newer
    # numpy; llvmlite and pyparsing follow numba and matplotlib (pyparsing 3.3 deprecates
    # names matplotlib 3.10 uses, an error under the suite's warning filters).
    if name in ("snakemake-executor-plugin-slurm", "llvmlite", "pyparsing", "torch"):
        continue
    print(f"{m.group(1)}=={pins[name]}" if name in pins else line.rstrip())
PY
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements-cpu.txt
grep '==' "$VENV.constraints.txt" > "$VENV.requirements.txt"
"$VENV/bin/python" -m pip install --quiet --no-deps -r "$VENV.requirements.txt"
# What --no-deps left out: pandas's and tensorboard's small dependencies, and the llvmlite
# this numba was built for.
LLVMLITE=$("$VENV/bin/python" -c 'from importlib.metadata import requires
from packaging.requirements import Requirement
print(next(f"llvmlite{r.specifier}" for r in map(Requirement, requires("numba")) if r.name == "llvmlite"))')
"$VENV/bin/python" -m pip install --quiet pytz six "pyparsing<3.3" "$LLVMLITE"
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
"$VENV/bin/python" -m pip list --format=freeze | grep -iE '^(numpy|scipy|pandas|scikit-learn|h5py|matplotlib|numba|torch)=='
"$VENV/bin/pytest" -n 2 --dist loadfile --no-loadscope-reorder -m "not slurm" -p no:cacheprovider "$@" tests
