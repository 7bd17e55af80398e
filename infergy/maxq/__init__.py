"""MaxQ tuning: GPU control, restore journal, sweep search, Pareto fronts, recommendation.

Sweeps of power limits, locked clocks, batch sizes and precisions; the GPU's settings are
journaled before the first change and always restored.

- :mod:`.control` (the ``GpuControl`` Protocol), :mod:`.nvml_control` (NVML, root or
  CAP_SYS_ADMIN), :mod:`.sim_control` (a simulated part following
  :mod:`infergy.core.gpu_model`, labelled SIMULATED);
- :mod:`.journal`: the original settings, written durably before the first change, restored
  and verified;
- :mod:`.plan` (axes and their parsers), :mod:`.search` and :mod:`.coordinate` (grid and
  golden-section searches, ask/tell), :mod:`.points`, :mod:`.pareto`, :mod:`.recommend`.

Layer: may import runners, meters, exporters, store, config, formats and core; the daemon and
the command line drive it.
"""
