"""Power sources -> Traces: NVML (per GPU), the PTD analyzer client, RAPL, replay, simulated.

Every meter implements :class:`infergy.meters.base.Meter`; timestamps come from one
:class:`infergy.meters.base.SessionClock`.
"""
