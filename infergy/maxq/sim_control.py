"""A simulated GPU's controls over :mod:`infergy.core.gpu_model` (everything SIMULATED).

:class:`SimulatedGpuControl` implements :class:`~infergy.maxq.control.GpuControl` over a
:class:`~infergy.meters.sim_board.SimulatedBoard` (its own, or the one the simulated NVML
device and the simulated workload follow: ``SimulatedGpuControl.for_board``) and validates
like NVML does (limits within the constraints, clock locks within
the supported range, no memory lock before Ampere). It also answers what the model says the
board does under a load at the current settings (:meth:`SimulatedGpuControl.operating_point`),
which is what the simulated workload and the simulated NVML meter follow.

For fault tests it can refuse setters for lack of permission (``permitted=False``) or fail the
N-th setter call (``fail_on_setter_call=N``, counted from 1 over all six setters).
"""

from __future__ import annotations

from dataclasses import replace

from infergy.core.gpu_model import (
    GpuPart,
    ModelSettings,
    OperatingPoint,
    idle_state,
    steady_state,
)
from infergy.maxq.control import ClockLockMhz, GpuSettings, PowerLimitConstraints, SupportedClocks
from infergy.maxq.errors import ControlError, ControlPermissionError, UnsupportedSettingError
from infergy.meters.sim_board import SimulatedBoard


class SimulatedGpuControl:
    """The controls of one simulated board (implements ``GpuControl``; SIMULATED).

    Args:
        part: the model's parameter set (:data:`infergy.core.gpu_model.PARTS`).
        index: the board's index (in its label and UUID).
        permitted: False to refuse every setter as NVML does without CAP_SYS_ADMIN.
        fail_on_setter_call: fail this setter call (1-based over all setters), once.
        board: the board whose settings this control changes (default: a new one).

    Attributes:
        setter_calls: every setter call so far, as ``(name, args)``, failed ones included.
    """

    simulated = True

    def __init__(
        self,
        part: GpuPart,
        *,
        index: int = 0,
        permitted: bool = True,
        fail_on_setter_call: int | None = None,
        board: SimulatedBoard | None = None,
    ) -> None:
        self.board = board if board is not None else SimulatedBoard(part, index)
        self.part = self.board.part
        self.label = self.board.label
        self.uuid = self.board.uuid
        self._permitted = permitted
        self._fail_on = fail_on_setter_call
        self.setter_calls: list[tuple[str, tuple[float, ...]]] = []

    @classmethod
    def for_board(
        cls,
        board: SimulatedBoard,
        *,
        permitted: bool = True,
        fail_on_setter_call: int | None = None,
    ) -> SimulatedGpuControl:
        """The control of a board the simulated NVML device (and workload) follow."""
        return cls(
            board.part,
            index=board.index,
            permitted=permitted,
            fail_on_setter_call=fail_on_setter_call,
            board=board,
        )

    @property
    def _power_limit_w(self) -> float:
        return self.board.settings.power_limit_w

    @property
    def _sm_lock(self) -> ClockLockMhz | None:
        return self.board.settings.sm_lock_mhz

    @property
    def _mem_lock(self) -> ClockLockMhz | None:
        return self.board.settings.mem_lock_mhz

    def _update(self, **changes: object) -> None:
        self.board.set_settings(replace(self.board.settings, **changes))  # type: ignore[arg-type]

    # -- reads ---------------------------------------------------------------------------------

    def check_permission(self) -> None:
        """Raise :class:`ControlPermissionError` when built with ``permitted=False``."""
        if not self._permitted:
            msg = f"{self.label}: changing settings is not permitted (SIMULATED refusal)"
            raise ControlPermissionError(msg)

    def power_limit_constraints(self) -> PowerLimitConstraints:
        """The part's limit range and default."""
        p = self.part
        return PowerLimitConstraints(
            p.min_power_limit_w, p.max_power_limit_w, p.default_power_limit_w
        )

    def enforced_power_limit_w(self) -> float:
        """The requested limit (no other limiter in the simulation)."""
        return self._power_limit_w

    def settings(self) -> GpuSettings:
        """The current settings, labelled simulated."""
        return GpuSettings(self._power_limit_w, self._sm_lock, self._mem_lock, simulated=True)

    def supported_clocks(self) -> SupportedClocks:
        """The part's clocks; every SM clock at every memory clock."""
        p = self.part
        return SupportedClocks(p.mem_clocks_mhz, dict.fromkeys(p.mem_clocks_mhz, p.sm_clocks_mhz))

    def supports_memory_lock(self) -> bool:
        """The part's answer (Turing: no)."""
        return self.part.supports_mem_lock

    def model_settings(self) -> ModelSettings:
        """The current settings as the model takes them."""
        return self.board.settings

    def operating_point(self, *, batch_size: int, precision: str = "fp16") -> OperatingPoint:
        """What the board does under this load at the current settings."""
        return steady_state(
            self.part, self.model_settings(), batch_size=batch_size, precision=precision
        )

    def idle_point(self) -> OperatingPoint:
        """What the board does with nothing running at the current settings."""
        return idle_state(self.part, self.model_settings())

    # -- setters -------------------------------------------------------------------------------

    def _setter(self, name: str, *args: float) -> None:
        """Record the call, then refuse it if not permitted or if it is the one to fail."""
        self.setter_calls.append((name, args))
        if not self._permitted:
            msg = f"{self.label}: cannot {name}: Insufficient Permissions (SIMULATED)"
            raise ControlPermissionError(msg)
        if self._fail_on is not None and len(self.setter_calls) == self._fail_on:
            msg = f"{self.label}: cannot {name}: injected failure (SIMULATED)"
            raise ControlError(msg)

    def set_power_limit_w(self, power_limit_w: float) -> None:
        """Set the limit after checking it against the constraints."""
        self.power_limit_constraints().check(power_limit_w, self.label)
        self._setter("set_power_limit_w", power_limit_w)
        self._update(power_limit_w=float(power_limit_w))

    def reset_power_limit(self) -> None:
        """Set the default limit."""
        self._setter("reset_power_limit")
        self._update(power_limit_w=self.part.default_power_limit_w)

    def lock_sm_clocks_mhz(self, min_mhz: int, max_mhz: int) -> None:
        """Lock the SM clock range after checking it."""
        self.supported_clocks().check_sm_lock(min_mhz, max_mhz, self.label)
        self._setter("lock_sm_clocks_mhz", min_mhz, max_mhz)
        self._update(sm_lock_mhz=(min_mhz, max_mhz))

    def reset_sm_clocks(self) -> None:
        """Unlock the SM clock."""
        self._setter("reset_sm_clocks")
        self._update(sm_lock_mhz=None)

    def _require_mem_lock(self) -> None:
        if not self.part.supports_mem_lock:
            msg = f"{self.label}: memory clock locks: not supported by this GPU (SIMULATED)"
            raise UnsupportedSettingError(msg, hint="memory clock locks need Ampere or newer")

    def lock_mem_clocks_mhz(self, min_mhz: int, max_mhz: int) -> None:
        """Lock the memory clock range after checking it (Ampere and newer)."""
        self._require_mem_lock()
        self.supported_clocks().check_mem_lock(min_mhz, max_mhz, self.label)
        self._setter("lock_mem_clocks_mhz", min_mhz, max_mhz)
        self._update(mem_lock_mhz=(min_mhz, max_mhz))

    def reset_mem_clocks(self) -> None:
        """Unlock the memory clock (Ampere and newer)."""
        self._require_mem_lock()
        self._setter("reset_mem_clocks")
        self._update(mem_lock_mhz=None)
