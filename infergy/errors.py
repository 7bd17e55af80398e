"""One exception hierarchy for infergy.

Vendor and library errors are translated into these at the boundary where they occur
(``raise InputError(...) from err``). Only ``infergy.cli.main`` turns them into exit codes:
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


class MeasurementFailedError(InfergyError):
    """A measurement ran but failed; maps to exit code 1."""

    exit_code = 1
