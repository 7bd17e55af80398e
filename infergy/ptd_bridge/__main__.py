"""``python -m infergy.ptd_bridge ARGS``: PTDaemon's command line, where tools expect ``ptd``.

``python -m infergy.ptd_bridge -l ptd.log -p 8888 49 /dev/ttyUSB0`` is
``infergy ptd-bridge -l ptd.log -p 8888 49 /dev/ttyUSB0``;
``python -m infergy.ptd_bridge analyzer-sim ...`` is ``infergy analyzer-sim ...``.
"""

from __future__ import annotations

import sys

from infergy import cli
from infergy.ptd_bridge.commands import register


def main(argv: list[str] | None = None) -> int:
    """Run the bridge (or the emulator) through infergy's command line and its error handling."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(c.name == "ptd-bridge" for c in cli.app.registered_commands):
        register(cli.app)
    if args[:1] != ["analyzer-sim"]:
        args = ["ptd-bridge", *args]
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
