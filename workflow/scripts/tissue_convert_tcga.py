"""Convert a TCGA-style beta-value CSV into the tissue module's stacked HDF5 (see docs/tissue.md)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from genomelab.tissue.convert import main  # noqa: E402 - after the path set-up

if __name__ == "__main__":
    main()
