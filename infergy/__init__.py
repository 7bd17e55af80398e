"""infergy: power-aware inference measurement for GPU edge servers.

Layers (dependencies point down): ``cli`` -> ``exporters``, ``store``, ``formats`` -> ``core``.
``core`` is pure numpy: traces, query logs, windows, energy, MLPerf rules, uncertainty, clocks.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
