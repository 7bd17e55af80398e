"""The errors of MaxQ tuning, all under :class:`infergy.errors.InfergyError`.

Changing a GPU's settings fails in few ways that a user can act on: the process lacks the
privilege (found out *before* anything changed), the GPU or driver does not support the
setting, the value is outside what the GPU allows (the message names the allowed range), or a
restore could not be verified (the message names the GPU and what differs). NVML errors are
first translated by :func:`infergy.meters.nvml_device.translate_nvml_error`; these classes
narrow the ones that matter for setters.
"""

from __future__ import annotations

from infergy.errors import InfergyError


class MaxqError(InfergyError):
    """Base of the MaxQ errors (exit code 2: usage, input or permission)."""


class ControlPermissionError(MaxqError):
    """Changing power limits or clocks needs root or CAP_SYS_ADMIN, which this process lacks."""


class UnsupportedSettingError(MaxqError):
    """This GPU or driver cannot change that setting (e.g. memory clock locks before Ampere)."""


class SettingOutOfRangeError(MaxqError):
    """A power limit or clock outside what the GPU allows; the message names the allowed range."""


class ControlError(MaxqError):
    """A setter failed for another reason (GPU lost, driver error, injected fault)."""

    exit_code = 1


class RestoreError(MaxqError):
    """A GPU's original settings could not be restored or read back as written in the journal."""

    exit_code = 1


class JournalError(MaxqError):
    """The restore journal cannot be written, read or parsed, or another sweep owns it."""

    exit_code = 1


class SweepSpecError(MaxqError):
    """A sweep axis (``--power-limits 150:350:25``, ``--batch-sizes``...) cannot be parsed."""


class SearchError(MaxqError):
    """A search was told a point that is not on its grid, or asked after it ended wrongly."""

    exit_code = 1


class NoFeasiblePointError(MaxqError):
    """No measured point meets the constraints (latency, minimum samples/s)."""

    exit_code = 1
