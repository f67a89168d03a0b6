"""``python -m experiments run CONFIG.toml`` / ``python -m experiments report RUNS...`` (see experiments.cli)."""

import sys

from experiments.cli import main

if __name__ == "__main__":
  sys.exit(main())
