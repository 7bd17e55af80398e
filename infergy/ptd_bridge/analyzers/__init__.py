"""Analyzer drivers behind one Protocol (:class:`~.base.Analyzer`).

- :mod:`.yokogawa`: WT300/WT300E (WT310, WT310E, WT332E, WT333E), ``:NUMeric`` tree;
- :mod:`.wt210`: WT210 in its 488.2 mode, ``:CONFigure``/``:MEASure`` trees;
- :mod:`.dummy`: PTDaemon's device type 0, fixed readings, no I/O;
- :mod:`.specs`: models, ranges, update rates, the accuracy table, PTDaemon device types;
- :mod:`.lines`: the serial/pty (pyserial) and USBTMC lines.

:func:`open_analyzer` opens and identifies the analyzer a PTDaemon command line names.
"""

from __future__ import annotations

from collections.abc import Sequence

from infergy.errors import AnalyzerError
from infergy.ptd_bridge.analyzers.base import Analyzer, ChannelReading, RangeState, Reading
from infergy.ptd_bridge.analyzers.dummy import DummyAnalyzer
from infergy.ptd_bridge.analyzers.lines import open_line
from infergy.ptd_bridge.analyzers.specs import DeviceType, ModelSpec, device_type
from infergy.ptd_bridge.analyzers.wt210 import YokogawaWT210
from infergy.ptd_bridge.analyzers.yokogawa import YokogawaWT300

__all__ = [
    "Analyzer",
    "ChannelReading",
    "DeviceType",
    "ModelSpec",
    "RangeState",
    "Reading",
    "device_type",
    "open_analyzer",
]


def open_analyzer(
    dtype: DeviceType,
    port: str,
    *,
    channels: Sequence[int] | None = None,
    baud: int = 9600,
    framing: str = "8N1",
    reply_timeout_s: float = 1.0,
) -> Analyzer:
    """Open ``port`` and identify the analyzer on it (blocking: call it off the event loop).

    Args:
        dtype: the PTDaemon device type.
        port: the serial device, pty or ``/dev/usbtmc*`` (ignored by the dummy).
        channels: elements to read; default element 1, or all of them when ``dtype`` is
            multichannel.
        baud: serial line speed.
        framing: serial data bits, parity, stop bits.
        reply_timeout_s: wait for a reply beyond the update interval.

    Raises:
        AnalyzerError: the port cannot be opened, nothing answers, or it is another model.
    """
    if dtype.family == "dummy":
        return DummyAnalyzer()
    line = open_line(port, baud=baud, framing=framing)
    cls = YokogawaWT210 if dtype.family == "wt210" else YokogawaWT300
    analyzer = cls(line, channels=channels or (1,), dc=dtype.dc, reply_timeout_s=reply_timeout_s)
    try:
        analyzer.identify()
    except AnalyzerError:
        analyzer.close()
        raise
    if channels is None and dtype.multichannel:
        analyzer.channels = tuple(range(1, analyzer.spec.elements + 1))
    return analyzer
