"""The measurement core: pure numpy, no I/O; the session clock is its one clock read.

Everything else feeds it: traces (power or energy over time, with declared semantics), the
query log of a measured run, and the window. It returns energies, coverage, MLPerf-rule figures,
per-query energy, uncertainty parts and clock offsets, exactly as MEASUREMENT.md defines them.

Example:
    >>> import numpy as np
    >>> from infergy.core import Semantics, Trace, Window, window_energy
    >>> t = np.arange(0, 11) * 1_000_000_000
    >>> tr = Trace(t, np.full(11, 100.0), Semantics.INSTANT, 1_000_000_000)
    >>> round(window_energy(tr, Window(0, 10_000_000_000)).energy_j, 6)
    1000.0
"""
