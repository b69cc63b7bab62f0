"""Names that become parts of file paths (samples, runs, genomes): one rule for all of them.

``NAME_PATTERN`` is the bare pattern for Snakemake wildcard constraints
(``workflow/rules/common.smk`` imports it); ``NAME_RE`` the anchored compiled form.
"""

from __future__ import annotations

import re

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
NAME_RE = re.compile(rf"^{NAME_PATTERN}$")
NAME_RULE = "may only contain letters, digits and _ . + - (it becomes a file name)"


def is_safe_name(name: str) -> bool:
    """True when ``name`` can be used as a file name and a Snakemake wildcard value."""
    return NAME_RE.match(name) is not None
