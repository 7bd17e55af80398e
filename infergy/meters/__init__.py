"""Power sources -> Traces: NVML (`nvml`), the PTD analyzer client (`ptd`), RAPL, replay, sim.

Every meter implements :class:`infergy.meters.base.Meter`; timestamps come from one
:class:`infergy.core.clock.SessionClock`.

- :mod:`infergy.meters.nvml`: ``NvmlMeter``, sources ``gpu<i>`` (energy counter, J),
  ``gpu<i>.samples`` (20-ms driver samples, W) and ``gpu<i>.avg`` (1-s average, W); built on
  :mod:`~infergy.meters.gpu` (the ``GpuDevice`` Protocol), :mod:`~infergy.meters.nvml_device`
  (NVML, errors translated once), :mod:`~infergy.meters.nvml_probe`,
  :mod:`~infergy.meters.nvml_counter` and :mod:`~infergy.meters.nvml_sampler`.
- :mod:`infergy.meters.rapl`: ``RaplMeter``, sources ``cpu`` and ``cpu.dram`` (counters, J).
- :mod:`infergy.meters.replay`: ``ReplayMeter``, a recording played back on the session clock.
- :mod:`infergy.meters.sim`: ``SimMeter``, source ``sim``, a power model driven by activity.
"""
