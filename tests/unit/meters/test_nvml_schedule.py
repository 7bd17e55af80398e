"""The NVML meter's energy-counter schedule, against fake GPUs in real time.

Sparse reads (~every ``counter_sparse_interval_s``) where nobody asked for more, dense reads
(every update) in a span asked for with ``dense_counter``, applied at once rather than after
the sparse read already planned; and what that saves: counter reads per second, the meter's
main CPU cost (2.7-12 ms of CPU each on an H200), against a meter reading at every update.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import numpy as np

from infergy.core.clock import SessionClock
from infergy.meters.nvml import NvmlMeter, NvmlMeterConfig
from tests.fake_gpu import FakeGpu, SineProfile

PERIOD_S = 0.05  # the fake counter's update period (the H200's is 100 ms)
SPARSE = NvmlMeterConfig(
    counter_sparse_interval_s=10 * PERIOD_S,
    counter_dense_span_s=0.3,
    calibration_pause_s=0.001,
    calibration_timeout_s=1.0,
    samples_read_interval_s=0.2,
    context_interval_s=0.5,
    call_timeout_s=1.0,
)
BURST_S = 0.012  # reads closer than this are one re-sync (tight reads around an update)


class TimedGpu(FakeGpu):
    """A fake GPU that also records when (time.monotonic) its energy counter was read."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.read_at: list[float] = []

    def energy_mj(self) -> int:
        self.read_at.append(time.monotonic())
        return super().energy_mj()


def regular_reads(read_at: Sequence[float], lo: float, hi: float) -> np.ndarray:
    """The scheduled reads in [lo, hi): a re-sync's tight reads around an update are left out.

    A scheduled read is alone; a re-sync reads a few times within milliseconds.
    """
    t = np.asarray(read_at)
    gap = np.diff(t)
    alone = np.concatenate(([True], gap > BURST_S)) & np.concatenate((gap > BURST_S, [True]))
    return t[alone & (t >= lo) & (t < hi)]


def run_meters(
    meters: Sequence[NvmlMeter],
    duration_s: float,
    actions: Sequence[tuple[float, Callable[[], object]]] = (),
) -> float:
    """Run the meters together for ``duration_s``; returns the monotonic start time."""
    t0 = time.monotonic()

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(m.run(), name=f"meter[nvml]{i}") for i, m in enumerate(meters)]
            for at_s, act in sorted(actions, key=lambda a: a[0]):
                await asyncio.sleep(max(0.0, t0 + at_s - time.monotonic()))
                act()
            await asyncio.sleep(max(0.0, t0 + duration_s - time.monotonic()))
            for task in tasks:
                task.cancel()

    asyncio.run(main())
    return t0


def test_the_counter_is_read_sparsely_then_densely_at_once_when_asked_then_sparsely_again():
    gpu = TimedGpu(SineProfile(), counter_period_s=PERIOD_S)
    meter = NvmlMeter([gpu], clock=SessionClock(), config=SPARSE)
    asked: list[float] = []

    def ask() -> None:
        asked.append(time.monotonic())
        meter.dense_counter()  # the configured span: 0.3 s

    try:
        gpu.read_at.clear()  # the probe's calibration reads are not the schedule
        t0 = run_meters([meter], 3.2, [(1.55, ask)])
    finally:
        meter.close()
    call = asked[0]
    # sparse: 2 reads/s (a re-sync moves the grid to its update, so spacings vary); dense: 20
    before = regular_reads(gpu.read_at, t0 + 0.3, call)
    assert 1 <= before.size <= 2 * (call - t0 - 0.3) / 0.5 + 1, f"not sparse before: {before}"
    dense = regular_reads(gpu.read_at, call, call + 0.3)
    first_s = dense[0] - call
    assert first_s <= 1.5 * PERIOD_S, f"first dense read {first_s * 1e3:.0f} ms after the ask"
    assert dense.size >= 0.3 / PERIOD_S - 1, f"{dense.size} reads in a 0.3-s dense span"
    # every update is read; a re-sync's tight reads are left out above, which can open one
    # gap of two periods, never a sparse one
    gaps_s = np.diff(dense)
    assert np.median(gaps_s) <= 1.2 * PERIOD_S, f"dense reads not at every update: {gaps_s}"
    assert np.max(gaps_s) <= 2.5 * PERIOD_S, f"a gap in the dense span: {gaps_s}"
    lo = call + 0.3 + 2 * PERIOD_S
    after = regular_reads(gpu.read_at, lo, t0 + 3.2)
    assert 2 <= after.size <= 2 * (t0 + 3.2 - lo) / 0.5 + 1, f"not sparse after: {after}"


def test_a_long_dense_span_can_be_cut_short_when_the_window_starts():
    gpu = TimedGpu(SineProfile(), counter_period_s=PERIOD_S)
    meter = NvmlMeter([gpu], clock=SessionClock(), config=SPARSE)
    marks: dict[str, float] = {}

    def mark(name: str, act: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            marks[name] = time.monotonic()
            act()

        return run

    try:
        t0 = run_meters(
            [meter],
            3.0,
            [
                (0.8, mark("long", lambda: meter.dense_counter(30.0))),  # the start is near
                (1.4, mark("short", lambda: meter.dense_counter(0.0))),  # ...and came
            ],
        )
    finally:
        meter.close()
    dense = regular_reads(gpu.read_at, marks["long"], marks["short"])
    assert dense.size >= 0.6 / PERIOD_S - 2, f"{dense.size} reads in 0.6 s of a dense span"
    lo = marks["short"] + 2 * PERIOD_S
    after = regular_reads(gpu.read_at, lo, t0 + 3.0)
    assert after.size <= 2 * (t0 + 3.0 - lo) / 0.5 + 1, f"still dense: {np.diff(after)}"


def test_without_a_sample_buffer_the_counter_stays_dense():
    """Nothing to give the shape between sparse reads: every update is read."""
    gpu = TimedGpu(SineProfile(), counter_period_s=PERIOD_S, unsupported={"power_samples"})
    meter = NvmlMeter([gpu], clock=SessionClock(), config=SPARSE)
    try:
        t0 = run_meters([meter], 1.6)
    finally:
        meter.close()
    reads = regular_reads(gpu.read_at, t0 + 0.4, t0 + 1.6)
    assert reads.size >= 1.2 / PERIOD_S - 3, f"{reads.size} reads in 1.2 s without samples"


def test_counter_reads_per_second_fall_to_about_a_tenth_during_a_measurement():
    """Two meters over the same measurement: sparse with dense edges vs at every update.

    Time runs 10x the H200's: a 10-ms counter, 0.1-s sparse reads, 0.05-s dense spans at each
    edge, re-syncs capped at 3 s (for 30 s), after 2.6 s of settling (the idle baseline and
    warm-up): the 6-s window stands for a 60-s one. The dense edges and the re-syncs (the
    same on both meters) keep the ratio above 1/10: 60 + 10 + ~10 reads against ~610.
    """
    period_s = 0.01
    base = dict(SPARSE.__dict__) | {"counter_resync_s": 3.0, "counter_min_interval_s": 0.002}
    sparse_cfg = NvmlMeterConfig(
        **base | {"counter_sparse_interval_s": 10 * period_s, "counter_dense_span_s": 0.05}
    )
    dense_cfg = NvmlMeterConfig(**base | {"counter_sparse_interval_s": 0.0})
    gpus = [FakeGpu(SineProfile(), counter_period_s=period_s, index=i) for i in range(2)]
    sparse = NvmlMeter([gpus[0]], clock=SessionClock(), config=sparse_cfg)
    dense = NvmlMeter([gpus[1]], clock=SessionClock(), config=dense_cfg)
    counts: dict[str, tuple[int, int, int]] = {}

    def snap(name: str) -> Callable[[], None]:
        def run() -> None:
            own = sparse.counter_reads()["gpu0"]
            counts[name] = (gpus[0].calls["energy_mj"], gpus[1].calls["energy_mj"], own)

        return run

    try:
        run_meters(
            [sparse, dense],
            8.7,
            [
                (2.6, snap("start")),
                (2.6, sparse.dense_counter),  # the window's start...
                (8.6, sparse.dense_counter),  # ...and its end
                (8.65, snap("end")),
            ],
        )
    finally:
        sparse.close()
        dense.close()
    window_s = 6.05
    n_sparse = counts["end"][0] - counts["start"][0]
    n_dense = counts["end"][1] - counts["start"][1]
    assert n_dense >= 0.8 * window_s / period_s, f"the reference read only {n_dense} times"
    ratio = n_sparse / n_dense
    assert ratio <= 0.16, (
        f"sparse meter: {n_sparse / window_s:.1f} reads/s vs {n_dense / window_s:.1f} at every "
        f"update (x{ratio:.3f}; target ~1/10)"
    )
    assert counts["end"][2] - counts["start"][2] == n_sparse, "counter_reads() misses reads"


def test_a_new_poll_factor_applies_at_once_not_after_the_planned_read():
    """``infergy serve`` switches from slow idle reads to a session's rate: no 1-s lag."""
    gpu = TimedGpu(SineProfile(), counter_period_s=PERIOD_S)
    config = NvmlMeterConfig(**SPARSE.__dict__ | {"counter_sparse_interval_s": 0.0})
    meter = NvmlMeter([gpu], clock=SessionClock(), config=config)
    meter.set_counter_poll_factor(20.0)  # every second
    asked: list[float] = []

    def fast() -> None:
        asked.append(time.monotonic())
        meter.set_counter_poll_factor(1.0)

    try:
        run_meters([meter], 2.0, [(1.3, fast)])
    finally:
        meter.close()
    reads = regular_reads(gpu.read_at, asked[0], asked[0] + 0.5)
    assert reads.size and reads[0] - asked[0] <= 1.5 * PERIOD_S, reads - asked[0]
    assert reads.size >= 0.5 / PERIOD_S - 2, f"{reads.size} reads in 0.5 s at every update"
