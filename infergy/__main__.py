"""``python -m infergy``: the same command line as the ``infergy`` console script."""

from __future__ import annotations

import sys

from infergy.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
