"""MaxQ tuning sessions: GPU control (NVML, simulated) with a restore journal, search, Pareto, pick.

Sweeps of power limits, locked clocks, batch sizes and precisions; the GPU's settings are
journaled before the first change and always restored. Layer: may import runners, meters,
exporters, store, config, formats and core; the daemon and the command line drive it.
"""
