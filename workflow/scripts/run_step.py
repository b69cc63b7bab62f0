"""The ``script:`` of every rule: run the step registered for the rule's name.

The steps and their rule names are in ``genomelab/steps_registry.py``. Snakemake appends this
folder to ``sys.path``, after site-packages and PYTHONPATH, so an installed ``genomelab`` (a
``pip install .``, another clone's editable install) would run instead of this workflow's
own code: put this folder first, and forget a ``genomelab`` imported from anywhere else.

Keep this file unchanged where possible: Snakemake reruns every job whose outputs are older
than its script file (rerun trigger ``code``), and this is the script of every rule.
"""

import sys
from pathlib import Path

# Snakemake sets __file__ to this file (the job runs a temporary copy with a preamble).
scripts_dir = Path(__file__).resolve().parent
sys.path.insert(0, str(scripts_dir))
for name in [m for m in sys.modules if m == "genomelab" or m.startswith("genomelab.")]:
    origin = getattr(sys.modules[name], "__file__", None)
    if origin is None or not Path(origin).resolve().is_relative_to(scripts_dir):
        del sys.modules[name]

from genomelab.entry import dispatch  # noqa: E402 - after the path set-up

dispatch(snakemake)  # noqa: F821 - injected by Snakemake
