"""``python -m genomelab`` is the ``genomelab`` command."""

import sys

from genomelab.cli import main

sys.exit(main())
