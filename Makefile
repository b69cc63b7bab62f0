# The two commands of the README:
#   make demo   set up .venv (CPU build of PyTorch) and run the workflow on the embedded demo
#               (config/demo.yaml: outputs in results/demo/, logs in logs/demo/)
#   make test   set up .venv and run the test suite (what CI runs)
# Other targets: make setup | lint | dry-run | report | bench | clean
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
# The workflow reads no config by default: `demo` runs config/demo.yaml; lint, dry-run and
# report use CONFIG (make dry-run CONFIG=my.yaml).
CONFIG ?= config/demo.yaml
PYTEST_ARGS ?=
# The SLURM cluster tests (tests/slurm: install and start SLURM, then run config/test.yaml
# through sbatch next to the session's local run of it, ~12 min on 2 cores) run in CI only:
# .ci/run sets CI=true (as CI services do), and GENOMELAB_SLURM=1 asks for them anywhere
# else. `make test PYTEST_MARKERS=` runs everything.
ifeq ($(filter true 1,$(CI) $(GENOMELAB_SLURM)),)
PYTEST_MARKERS ?= not slurm
else
PYTEST_MARKERS ?=
endif

.PHONY: setup demo test lint dry-run report bench clean

# Exact versions of everything installed (constraints.txt), so that a fresh checkout gets the
# numbers the snapshot test holds; `make setup CONSTRAINTS=` installs the newest instead.
CONSTRAINTS ?= constraints.txt

$(BIN)/.genomelab-installed: pyproject.toml requirements-cpu.txt $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned to a CPU build, so that `torch>=2.3` below installs nothing more.
	$(BIN)/python -m pip install --quiet -r requirements-cpu.txt
	$(BIN)/python -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[test]'
	touch $@

setup: $(BIN)/.genomelab-installed

demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml

# --no-loadscope-reorder keeps the order tests/conftest.py gives (longest files first).
test: setup
	$(BIN)/pytest -n $(CORES) --dist loadfile --no-loadscope-reorder --durations=15 $(if $(PYTEST_MARKERS),-m "$(PYTEST_MARKERS)") $(PYTEST_ARGS)

lint: setup
	$(BIN)/snakemake --lint --configfile $(CONFIG)
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/ruff check workflow/scripts tests benchmarks
	$(BIN)/ruff format --check workflow/scripts tests benchmarks
	$(BIN)/mypy

dry-run: setup
	$(BIN)/snakemake -n --cores $(CORES) --configfile $(CONFIG)
	$(BIN)/snakemake -n --profile profiles/slurm --configfile $(CONFIG)

# The HTML report of a finished run (results/<run>/report.html), opening on its run summary.
report: setup
	$(BIN)/genomelab report --configfile $(CONFIG)

bench: setup
	$(BIN)/python benchmarks/run_all.py

# Every run's results/<run>/ and logs/<run>/ (make clean RUN=demo removes only that run's).
clean:
	$(if $(RUN),rm -rf results/$(RUN) logs/$(RUN),rm -rf results logs .snakemake report.html)
