"""One exception hierarchy for infergy.

Vendor and library errors are translated into these at the boundary where they occur
(``raise InputError(...) from err``). Only ``infergy.cli.app.main`` turns them into exit codes:
every error carries a one-line message and, where it helps, a hint for the user.
"""

from __future__ import annotations


class InfergyError(Exception):
    """Base of every error infergy raises on purpose.

    Attributes:
        hint: one line telling the user what to do about it, or ``None``.
        exit_code: the command-line exit code this error maps to (2: usage, input or config).
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(InfergyError):
    """The configuration file or environment is invalid."""


class InputError(InfergyError):
    """A file or argument given to infergy cannot be used (missing, unreadable, malformed)."""


class TraceError(InputError):
    """A trace or query log violates its invariants (lengths, ordering, units)."""


class AnalysisError(InfergyError):
    """The inputs are well formed but no meaningful result can be computed (e.g. empty window)."""


class StoreError(InfergyError):
    """The results store cannot be opened, migrated, read or written."""

    exit_code = 1


class DamagedRunError(StoreError):
    """A stored run exists but its result cannot be read (a damaged row).

    Attributes:
        status: the run's status as its intact row says (``ok``, ``aborted``...), or ``None``.
    """

    def __init__(self, message: str, *, hint: str | None = None, status: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class MeasurementFailedError(InfergyError):
    """A measurement ran but failed; maps to exit code 1."""

    exit_code = 1


class MeterError(InfergyError):
    """A power source cannot be opened or read."""

    exit_code = 1


class GpuError(MeterError):
    """An NVML call failed (translated once, at the NVML boundary)."""


class GpuNotSupportedError(GpuError):
    """This GPU or driver does not support the call: skip that signal, say so."""


class GpuLostError(GpuError):
    """The GPU fell off the bus or the driver was reloaded: mark the source down, retry."""


class GpuPermissionError(GpuError):
    """The call needs privileges this process does not have."""


class AnalyzerError(MeterError):
    """A power analyzer (serial instrument or PTD server) failed."""


class AnalyzerConnectionError(AnalyzerError):
    """The analyzer cannot be reached (serial port, TCP) or went away."""


class AnalyzerTimeoutError(AnalyzerConnectionError):
    """The instrument (or a PTD server) did not answer in time (stalled, unplugged, too slow)."""


class AnalyzerProtocolError(AnalyzerError):
    """The analyzer answered something that does not parse or is not allowed."""


class AnalyzerRangeError(AnalyzerError):
    """A voltage/current range request was refused or is out of the instrument's ranges."""


class WindowError(InfergyError):
    """A measurement window was misused: begun twice, ended twice or never begun, a bad count."""


class CommandStartError(InputError):
    """``infergy measure``: the command cannot be started (not found, not executable).

    Exit code 127, as a shell gives for a command it cannot run.
    """

    exit_code = 127


class WorkloadError(InfergyError):
    """An inference workload cannot be prepared as asked: exit code 2, nothing left running."""


class ModelError(WorkloadError):
    """The model is missing, unreadable or invalid, or its backend cannot load it."""


class PrecisionError(WorkloadError):
    """The backend or device cannot run the requested precision."""


class PlanMismatchError(WorkloadError):
    """A TensorRT plan was built for another TensorRT version or GPU: rebuild it."""


class DeviceOutOfMemoryError(WorkloadError):
    """The model does not fit at the requested batch size.

    Attributes:
        largest_batch: the largest batch size that did fit, or ``None`` when none did.
    """

    def __init__(
        self, message: str, *, hint: str | None = None, largest_batch: int | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.largest_batch = largest_batch


class LoadgenSettingsError(WorkloadError):
    """The LoadGen settings asked for cannot be met (duration, target QPS, latency...)."""


class WorkloadFailedError(MeasurementFailedError):
    """The workload broke during warmup or the measured run (worker crash, LoadGen error)."""


class ServerRequestError(WorkloadFailedError):
    """A request to a running inference server failed (``kserve``/``openai`` backends).

    Attributes:
        lost: the server did not answer (refused, reset, timed out), as opposed to an error
            reply: enough of these in a row and the server is taken as gone for the run.
    """

    def __init__(self, message: str, *, lost: bool, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.lost = lost


class BrokerError(InfergyError):
    """The MQTT broker cannot be reached, or refuses this client (``infergy fleet``)."""


class FleetError(InfergyError):
    """A fleet request cannot be carried out: no node matches, a node rejects the job."""


class JobError(InfergyError):
    """A request to the service's job queue cannot be carried out (``infergy serve``)."""


class QueueFullError(JobError):
    """The job queue is full, or the service is stopping and accepts no jobs."""


class UnknownRunError(JobError):
    """No job or stored run has this run id."""


class JobConflictError(JobError):
    """The request conflicts with the job's state (e.g. cancelling a finished job)."""
