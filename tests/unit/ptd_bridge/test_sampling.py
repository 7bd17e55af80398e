"""What a late reply means: the bridge's cadence, missed and late updates, a busy event loop.

The analyzer keeps only its latest update, so an update is lost only when the next one came
before it was read. A reply that arrives later than usual but before that cannot be a later
update: it is late, stamped at its slot, and nothing was missed.
"""

from __future__ import annotations

import asyncio
import io
import time

from infergy.core.clock import SessionClock
from infergy.ptd_bridge.analyzers.base import ChannelReading
from infergy.ptd_bridge.analyzers.specs import device_type
from infergy.ptd_bridge.bridge import BridgeConfig
from infergy.ptd_bridge.measurement import Sample
from infergy.ptd_bridge.sampling import Sampler
from infergy.ptd_bridge.server import PtdBridge

MS = 1_000_000
READING = (ChannelReading(100.0, 230.0, 0.458, 0.95, 300.0, 1.0, 0.002),)


def _sampler(update_ms: int = 100) -> tuple[Sampler, list[Sample], list[str]]:
    samples: list[Sample] = []
    notes: list[str] = []
    s = Sampler(
        numbers=(1,), multichannel=False, on_sample=samples.append,
        on_status=lambda level, text: notes.append(f"{level}: {text}"),
    )  # fmt: skip
    s.configure(update_ms * MS, 1)
    return s, samples, notes


def test_a_reply_late_by_most_of_an_interval_is_late_not_missed() -> None:
    s, samples, notes = _sampler()
    for t_ms in (0, 100, 280):  # the third 80 ms late: the update after it was not due yet
        s.reading(t_ms * MS, READING)
    kinds = [x.kind for x in samples]
    assert kinds == ["ok", "ok", "ok"], f"a late reply was counted {kinds}: {notes}"
    assert s.missed_updates == 0 and s.late_updates == 1
    assert samples[-1].t_ns == 200 * MS and samples[-1].late  # stamped at its slot


def test_a_reply_after_the_following_update_means_one_was_missed() -> None:
    s, samples, _ = _sampler()
    for t_ms in (0, 100, 301):  # the update due at 200 was overwritten at 300 before a read
        s.reading(t_ms * MS, READING)
    assert [x.kind for x in samples] == ["ok", "ok", "missed", "ok"]
    assert s.missed_updates == 1
    assert [x.t_ns for x in samples] == [0, 100 * MS, 200 * MS, 301 * MS]


def test_a_busy_event_loop_does_not_cost_the_bridge_an_update() -> None:
    """The loop is blocked for 3.5 update intervals; the worker keeps reading meanwhile."""

    async def scenario() -> tuple[int, int, list[str]]:
        config = BridgeConfig(device_type(0), "", interval_ms=100, max_update_ms=100)
        async with PtdBridge(config, port=0, console=io.StringIO(), clock=SessionClock()) as b:
            bridge = b.bridge
            await bridge.go(100, 0, "busy")
            await asyncio.sleep(0.5)
            time.sleep(0.35)  # the loop is stuck (a flood of clients, a session's own work)
            await asyncio.sleep(0.5)
            assert bridge.measurement is not None
            kinds = [x.kind for x in bridge.measurement.samples]
            return bridge.sampler.missed_updates, len(kinds), kinds

    missed, n, kinds = asyncio.run(scenario())
    assert missed == 0, f"{missed} updates missed while the loop was busy: {kinds}"
    assert n >= 10 and set(kinds) == {"ok"}, kinds
