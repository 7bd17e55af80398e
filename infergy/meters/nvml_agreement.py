"""Do a GPU's 20-ms power samples agree with its energy counter? A few seconds tell.

infergy reads the energy counter sparsely and anchors the driver's 20-ms samples to it
(:mod:`infergy.core.anchored`): its energy stays counter-true whatever the samples' gain, but
``gpu<i>.samples`` alone is only as good as the sensor behind it, and not every part and driver
has a full-time one. :func:`counter_agreement` (run by ``infergy doctor``) samples one GPU for
a few seconds with the counter read at every update, anchors the samples to it, and reports the
scale counter/samples with its uncertainty, and whether it drifts from 1 (by more than three
uncertainties and 1 %: :meth:`~infergy.core.anchored_scale.ScaleSummary.drifted`).
Read-only, like the meter.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

from infergy.core.anchored_source import anchor_source
from infergy.core.clock import SessionClock
from infergy.core.trace import Semantics
from infergy.meters.gpu import GpuDevice
from infergy.meters.nvml import NvmlMeter
from infergy.meters.nvml_probe import NvmlMeterConfig

AGREEMENT_S = 3.0
"""How long ``infergy doctor`` samples each GPU (about 30 counter intervals at 100 ms)."""


@dataclass(frozen=True)
class Agreement:
    """How one GPU's samples agree with its counter.

    Attributes:
        source: the GPU (``gpu0``).
        seconds: how long it was sampled.
        intervals: counter intervals behind the scale.
        scale: counter energy over samples energy (1: they agree), or None.
        uncertainty: the scale's standard uncertainty, or None (too few intervals).
        drifted: the scale is off 1 beyond its uncertainty and 1 %.
        noise_w: the samples' noise per sample against the counter, or None.
        problems: what could not be anchored.
    """

    source: str
    seconds: float
    intervals: int
    scale: float | None
    uncertainty: float | None
    drifted: bool
    noise_w: float | None
    problems: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        """One line for people."""
        if self.scale is None or self.uncertainty is None:
            return f"too few counter intervals ({self.intervals}) to tell the samples' scale"
        figure = f"{self.scale:.4f} +- {self.uncertainty:.4f} over {self.intervals} intervals"
        if self.drifted:
            return (
                f"samples disagree with the counter: {figure}; do not trust "
                f"{self.source}.samples alone ({self.source} stays counter-true)"
            )
        return f"samples agree with the counter: {figure}"

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return dataclasses.asdict(self) | {"problems": list(self.problems), "verdict": self.verdict}


def counter_agreement(
    gpu: GpuDevice,
    *,
    seconds: float = AGREEMENT_S,
    config: NvmlMeterConfig | None = None,
    source: str = "gpu0",
) -> Agreement | None:
    """Sample one GPU for ``seconds`` and compare its samples with its counter (blocking).

    Returns:
        None when the GPU lacks an energy counter or a sample buffer (nothing to compare).

    Raises:
        GpuError: the GPU does not answer.
    """
    base = config or NvmlMeterConfig(calibration_timeout_s=1.5)
    meter = NvmlMeter(
        [gpu], clock=SessionClock(), config=dataclasses.replace(base, counter_sparse_interval_s=0)
    )
    try:
        infos = {info.name: info for info in meter.describe()}
        main = infos.get("gpu0")
        if "gpu0.samples" not in infos or main is None or main.semantics is not Semantics.COUNTER:
            return None
        asyncio.run(_sample(meter, seconds))
        counter, samples = meter.snapshot("gpu0"), meter.snapshot("gpu0.samples")
    finally:
        meter.close()
    curve = anchor_source(counter, samples)
    if curve is None:
        return Agreement(source, seconds, 0, None, None, False, None, ("no usable readings",))
    s = curve.scale
    return Agreement(
        source, seconds, s.intervals, s.scale, s.uncertainty, s.drifted(), curve.noise_w,
        curve.problems,
    )  # fmt: skip


async def _sample(meter: NvmlMeter, seconds: float) -> None:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(meter.run(), name="meter[nvml].agreement")
        await asyncio.sleep(seconds)
        task.cancel()
