"""The simulated devices of a session: the emulated analyzer and the load they follow.

The emulated analyzer is a Yokogawa emulator on a pseudo-terminal behind the real PTD bridge
on loopback, so the simulated path runs the same serial, protocol and client code as a real
WT310. Everything it measures is labelled SIMULATED: its meter is built knowing it, and the
bridge says so to any client (the emulator's identity names it).
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from infergy.config.settings import Settings
from infergy.core.clock import SessionClock
from infergy.ptd_bridge.analyzers.specs import device_type
from infergy.ptd_bridge.bridge import BridgeConfig
from infergy.ptd_bridge.emulator import AnalyzerEmulator
from infergy.ptd_bridge.server import PtdBridge
from infergy.ptd_bridge.watts_profile import WattsProfile

EMULATED_INTERVAL_MS = 250
"""The emulated analyzer updates (and is sampled) every 250 ms: a WT310's power-on rate and
what the bridge uses on a real line. At the WT310's fastest, 100 ms, the wait/reply handshake
with an in-process emulator lost updates on a loaded 2-core machine (honestly: the reply
came after the next update) and turned short runs degraded; at 250 ms a late reply is late."""
_EMULATED_DEVICE = {"wt310": 49, "wt310e": 49, "wt333e": 49, "wt210": 8}
"""PTDaemon device type numbers of the emulated models."""


class ActivityMean:
    """The exact time-average of a piecewise-constant activity since the last take."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0
        self._since_ns = self._taken_ns = time.monotonic_ns()
        self._integral = 0.0  # activity x ns since the last take

    def set(self, value: float) -> None:
        """The activity from now on."""
        now = time.monotonic_ns()
        with self._lock:
            self._integral += self._value * (now - self._since_ns)
            self._value, self._since_ns = value, now

    def take_mean(self) -> float:
        """The mean since the last call (or since construction); starts a new period."""
        now = time.monotonic_ns()
        with self._lock:
            total = self._integral + self._value * (now - self._since_ns)
            span = now - self._taken_ns
            self._integral, self._since_ns, self._taken_ns = 0.0, now, now
        return total / span if span > 0 else self._value


@dataclass
class Emulated:
    """The in-process emulated analyzer: emulator on a pty + PTD bridge on loopback."""

    emulator: AnalyzerEmulator
    bridge: PtdBridge
    tmp: tempfile.TemporaryDirectory[str]
    console: TextIO
    idle_w: float
    busy_w: float
    scripted: bool


async def open_emulated(settings: Settings, clock: SessionClock) -> Emulated:
    """Start the emulator (on a pty) and a PTD bridge in front of it on a free loopback port."""
    em = settings.meters.emulator
    profile = WattsProfile.from_csv(em.profile) if em.profile is not None else None
    tmp = tempfile.TemporaryDirectory(prefix="infergy-emu-")
    emulator = AnalyzerEmulator(
        em.model, profile=profile, watts=em.idle_w, noise=em.noise,
        rate_s=EMULATED_INTERVAL_MS / 1000, link=Path(tmp.name) / "ttyEMU0",
    )  # fmt: skip
    emulator.start()
    config = BridgeConfig(
        device_type(_EMULATED_DEVICE[em.model]), emulator.path,
        interval_ms=EMULATED_INTERVAL_MS, reply_timeout_s=0.5, connect_timeout_s=5,
        backoff_max_s=0.5,
    )  # fmt: skip
    # The bridge talks to its console like PTDaemon does: into a file, not our stdout.
    console = (Path(tmp.name) / "bridge-console.txt").open("w", encoding="utf-8")
    bridge = PtdBridge(config, port=0, host="127.0.0.1", console=console, clock=clock)
    try:
        await bridge.__aenter__()
    except BaseException:
        emulator.stop()
        console.close()
        tmp.cleanup()
        raise
    return Emulated(emulator, bridge, tmp, console, em.idle_w, em.busy_w, profile is not None)
