"""`python -m spm_warehouse.bench` (see spm_warehouse.bench.cli)."""

import sys

from spm_warehouse.bench.cli import main

sys.exit(main())
