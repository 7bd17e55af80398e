"""PTD timestamps: ``MM-DD-YYYY HH:MM:SS.fff`` (UTC) to and from int ns since the epoch.

SPEC's PTDaemon stamps every sample, status and console line this way (month first, floored to
the millisecond), and MLPerf LoadGen writes its ``power_begin``/``power_end`` in the same form so
that the two can be lined up. :func:`parse_ptd_time` reads it (and names a day-first date as
such), :func:`format_ptd_time` writes it; both are exact integer arithmetic, no floats and no
local time zone. :mod:`infergy.formats.ptd` re-exports both.
"""

from __future__ import annotations

import re
from datetime import date

from infergy.core.trace import NS_PER_S
from infergy.errors import InputError

NS_PER_MS = 1_000_000

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_TS_RE = re.compile(r"(\d{2})-(\d{2})-(\d{4}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")


def parse_ptd_time(text: str) -> int:
    """Parse a PTD/LoadGen timestamp ``MM-DD-YYYY HH:MM:SS.fff`` (UTC) to int ns since the epoch.

    Raises:
        InputError: the text is not such a timestamp (a day-first date is named as such).
    """
    m = _TS_RE.fullmatch(text.strip())
    if m is None:
        msg = f"not a PTD timestamp (MM-DD-YYYY HH:MM:SS.fff): {text!r}"
        raise InputError(msg)
    month, day, year, hh, mm, ss = (int(g) for g in m.groups()[:6])
    try:
        if hh > 23 or mm > 59 or ss > 59:
            raise ValueError
        days = date(year, month, day).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        why = " (day first? PTD writes the month first)" if month > 12 and day <= 12 else ""
        msg = f"invalid PTD timestamp {text.strip()!r}{why}"
        raise InputError(msg) from None
    frac_ns = int((m.group(7) or "").ljust(9, "0"))
    return ((days * 86_400 + hh * 3_600 + mm * 60 + ss) * NS_PER_S) + frac_ns


def format_ptd_time(t_ns: int) -> str:
    """Format int ns since the epoch as ``MM-DD-YYYY HH:MM:SS.fff`` (UTC), dropping sub-ms digits.

    The inverse of :func:`parse_ptd_time` at millisecond precision (sub-ms is floored).
    """
    ms = int(t_ns) // NS_PER_MS
    s, frac_ms = divmod(ms, 1000)
    days, sod = divmod(s, 86_400)
    try:
        d = date.fromordinal(days + _EPOCH_ORDINAL)
    except (ValueError, OverflowError):
        msg = f"timestamp {t_ns} ns is outside the years 1-9999"
        raise InputError(msg) from None
    hh, rem = divmod(sod, 3_600)
    mi, ss = divmod(rem, 60)
    return f"{d.month:02d}-{d.day:02d}-{d.year:04d} {hh:02d}:{mi:02d}:{ss:02d}.{frac_ms:03d}"
