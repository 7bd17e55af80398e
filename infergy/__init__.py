"""infergy: power-aware inference measurement for GPU edge servers.

The package is one folder per layer (docs/architecture.md); this module holds the version and
the public Python API, imported lazily (PEP 562) so ``import infergy`` stays light::

    import infergy

    with infergy.Measurement() as m:
        m.begin_window("step")
        ...
        w = m.end_window("step")
    print(w["gpu0"].energy_j)

``Measurement``, ``Window`` and ``SourceEnergy`` live in :mod:`infergy.daemon.measurement`
(docs/api.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Measurement", "SourceEnergy", "Window", "__version__"]

if TYPE_CHECKING:  # for type checkers only: the names below resolve through __getattr__
    from infergy.daemon.measurement import Measurement, SourceEnergy, Window


def __getattr__(name: str) -> Any:
    """The public API, imported on first use (``infergy.Measurement``)."""
    if name in ("Measurement", "SourceEnergy", "Window"):
        from infergy.daemon import measurement  # noqa: PLC0415 (lazy on purpose: PEP 562)

        return getattr(measurement, name)
    msg = f"module 'infergy' has no attribute {name!r}"
    raise AttributeError(msg)
