"""``python -m infergy.ptd_bridge ARGS``: PTDaemon's command line, where tools expect ``ptd``.

``python -m infergy.ptd_bridge -l ptd.log -p 8888 49 /dev/ttyUSB0`` is
``infergy ptd-bridge -l ptd.log -p 8888 49 /dev/ttyUSB0``;
``python -m infergy.ptd_bridge analyzer-sim ...`` is ``infergy analyzer-sim ...``.
An entry point, like ``infergy/__main__.py``: the one module of this package that may import
the command line above it.
"""

from __future__ import annotations

import sys

from infergy.cli.app import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Run the bridge (or the emulator) through infergy's command line and its error handling."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["analyzer-sim"]:
        args = ["ptd-bridge", *args]
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
