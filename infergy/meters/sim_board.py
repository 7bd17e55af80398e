"""One simulated board's state: its part, its settings and its load (everything SIMULATED).

A :class:`SimulatedBoard` is what a simulated GPU *is*: a parameter set of
:mod:`infergy.core.gpu_model`, the settings in force (power limit, clock locks) and the load
it runs (batch size, precision). Three things share it and so agree with each other:

- the simulated NVML device (:class:`~infergy.meters.gpu_sim.SimulatedGpu`) reports the
  model's power, clocks and enforced limit for these settings and this load;
- MaxQ's simulated control (:class:`~infergy.maxq.sim_control.SimulatedGpuControl`) changes
  the settings through it;
- the session hands the settings to the simulated workload (``--backend sim``), which sleeps
  the model's batch latency.

Like a real board's, its settings outlive the process that changed them when the board has a
``state_dir``: every change is written (temporary file, fsync, rename) to
``<state_dir>/<uuid>.json`` and read back when the board is made again, so a process killed
mid-sweep leaves the simulated GPU changed for the next start to restore, as a real one would.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infergy.core.gpu_llm import reference_point
from infergy.core.gpu_model import (
    PARTS,
    GpuPart,
    ModelSettings,
    OperatingPoint,
    idle_state,
    memory_clock_mhz,
    steady_state,
)
from infergy.errors import ConfigError

UUID_PREFIX = "GPU-simulated-"


def board_uuid(part_key: str, index: int) -> str:
    """``GPU-simulated-h200-0000``: the UUID of a simulated board (the journal's key)."""
    return f"{UUID_PREFIX}{part_key}-{index:04d}"


def parse_board_uuid(uuid: str) -> tuple[GpuPart, int] | None:
    """The part and index a simulated board's UUID names, or None for any other UUID."""
    if not uuid.startswith(UUID_PREFIX):
        return None
    key, _, index = uuid.removeprefix(UUID_PREFIX).rpartition("-")
    part = PARTS.get(key)
    return (part, int(index)) if part is not None and index.isdigit() else None


def simulated_part(key: str) -> GpuPart:
    """The part called ``key`` (``t4``, ``l4``, ``a2``, ``h200``).

    Raises:
        ConfigError: an unknown part (the message lists the known ones).
    """
    try:
        return PARTS[key]
    except KeyError:
        msg = f"unknown simulated GPU part {key!r}"
        raise ConfigError(msg, hint=f"choose one of {', '.join(PARTS)}") from None


class SimulatedBoard:
    """The settings and load of one simulated board; thread-safe (see the module docstring).

    Args:
        part: the model's parameter set.
        index: the board's index (in its label and UUID).
        state_dir: where its settings persist (None: in memory only).
    """

    def __init__(self, part: GpuPart, index: int = 0, *, state_dir: Path | None = None) -> None:
        self.part = part
        self.index = index
        self.uuid = board_uuid(part.key, index)
        self.label = f"GPU {index} ({part.name})"
        self._lock = threading.Lock()
        self._path = None if state_dir is None else state_dir / f"{self.uuid}.json"
        self._settings = self._read() or ModelSettings(part.default_power_limit_w)
        self._batch_size = 1
        self._precision = "fp16"
        self._workload = "vision"
        self._listeners: list[Callable[[], None]] = []

    # -- settings ------------------------------------------------------------------------------

    @property
    def settings(self) -> ModelSettings:
        """The settings in force."""
        with self._lock:
            return self._settings

    def set_settings(self, settings: ModelSettings) -> None:
        """Change the settings (persisted first when the board has a state dir)."""
        with self._lock:
            if settings == self._settings:
                return
            self._write(settings)
            self._settings = settings
        self._notify()

    def _read(self) -> ModelSettings | None:
        if self._path is None or not self._path.exists():
            return None
        try:
            return ModelSettings.from_json(json.loads(self._path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a torn or foreign file: the board starts at its defaults

    def _write(self, settings: ModelSettings) -> None:
        if self._path is None:
            return
        body = {"uuid": self.uuid, "simulated": True, **settings.to_json()}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self._path)

    # -- the load ------------------------------------------------------------------------------

    def set_load(self, batch_size: int, precision: str, workload: str = "vision") -> None:
        """The load the board runs when busy (the session's batch size, precision, workload).

        ``llm``: busy means every part of the GPU busy (:func:`~infergy.core.gpu_llm.
        reference_point`); the generative workload reports each step's share of it.
        """
        load = (max(1, batch_size), precision, workload)
        with self._lock:
            if load == (self._batch_size, self._precision, self._workload):
                return
            self._batch_size, self._precision, self._workload = load
        self._notify()

    def loaded_point(self) -> OperatingPoint:
        """What the model says the board does fully busy with the current load and settings."""
        with self._lock:
            settings, batch, precision = self._settings, self._batch_size, self._precision
            workload = self._workload
        if workload == "llm":
            ref = reference_point(self.part, settings, precision)
            mem = memory_clock_mhz(self.part, settings.mem_lock_mhz)
            return OperatingPoint(ref.sm_clock_mhz, mem, ref.power_w, 0.0, 0.0, 1.0, 1.0,
                                  power_capped=ref.power_capped)  # fmt: skip
        with contextlib.suppress(ValueError):
            return steady_state(self.part, settings, batch_size=batch, precision=precision)
        return steady_state(self.part, settings, batch_size=batch)  # an unmodelled precision

    def idle_point(self) -> OperatingPoint:
        """What the model says the board does with nothing running."""
        return idle_state(self.part, self.settings)

    # -- listeners -----------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each change of settings or load (in the changer's thread)."""
        with self._lock:
            self._listeners.append(callback)

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def describe(self) -> dict[str, Any]:
        """The settings as JSON (what the simulated workload is told)."""
        return {"part": self.part.key, "index": self.index, "simulated": True,
                **self.settings.to_json()}  # fmt: skip
