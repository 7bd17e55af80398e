"""``infergy.Measurement``: windows against analytic truth, threads, misuse, overhead, laziness.

The meters are real: the emulated analyzer on a pseudo-terminal behind the real PTD bridge
(its scripted power profile is the truth), and simulated GPUs behind the real NVML meter.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import infergy
from infergy.config.settings import Settings
from infergy.errors import ConfigError, InfergyError, MeterError, WindowError
from infergy.meters.nvml_device import NvmlLibrary

pytestmark = pytest.mark.integration

# 120 W, a step to 300 W at 3 s, a ramp down to 150 W from 5 to 7 s, then flat
PROFILE = "t_s,watts\n0,120\n3,120\n3,300\n5,300\n7,150\n600,150\n"


def _settings(tmp_path: Path, **meters: object) -> Settings:
    (tmp_path / "profile.csv").write_text(PROFILE, encoding="utf-8")
    emulator = {"noise": 0.0, "profile": str(tmp_path / "profile.csv")}
    return Settings.model_validate(
        {
            "store": {"path": str(tmp_path / "store.db")},
            "meters": {"rapl": False, "emulator": emulator, **meters},
            "session": {"tail_s": 1.0},
        }
    )


def _truth_j(m: infergy.Measurement, w: infergy.Window) -> float:
    """The emulator's scripted energy over the window (session clock -> emulator seconds)."""
    assert m.meter_set is not None and m.meter_set.emulator is not None
    emu = m.meter_set.emulator

    def emu_s(unix_ns: int) -> float:
        mono = unix_ns - m.clock.wall0_ns + m.clock.mono0_ns
        return (mono - emu.t0_mono_ns) / 1e9

    return emu.profile.energy_j(emu_s(w.start_ns), emu_s(w.end_ns))


def test_nested_and_overlapping_windows_match_the_profile_within_their_uncertainty(tmp_path):
    with infergy.Measurement(["sim"], settings=_settings(tmp_path)) as m:
        emu = m.meter_set.emulator  # type: ignore[union-attr]
        while emu.now_s() < 2.0:
            time.sleep(0.05)
        m.begin_window("outer")  # ~2 s .. ~7.5 s: the step and the ramp
        time.sleep(0.6)
        m.begin_window("inner")  # nested
        time.sleep(1.5)
        m.begin_window("overlap")  # begins inside inner, ends after it
        time.sleep(0.8)
        inner = m.end_window("inner")
        right_away = inner["sim"]  # read at once: waits for the samples past its end
        time.sleep(1.6)
        overlap = m.end_window("overlap")
        time.sleep(1.0)
        outer = m.end_window("outer")
    assert right_away.coverage == pytest.approx(1.0)
    for w in (inner, overlap, outer):
        ac = w["sim"]
        truth = _truth_j(m, w)
        assert ac.simulated is True and ac.kind == "analyzer"
        assert ac.coverage == pytest.approx(1.0) and ac.problems == ()
        assert ac.energy_j is not None and ac.uncertainty_j is not None
        assert abs(ac.energy_j - truth) <= ac.uncertainty_j, (w.name, ac.energy_j, truth)
        assert abs(ac.energy_j - truth) / truth < 0.02, (w.name, ac.energy_j, truth)
        assert ac.mean_power_w == pytest.approx(ac.energy_j / w.duration_s)
        assert ac.per_item(10) == pytest.approx(ac.energy_j / 10)
    assert outer.start_ns < inner.start_ns < overlap.start_ns < inner.end_ns < overlap.end_ns
    assert outer["sim"].energy_j > inner["sim"].energy_j + overlap["sim"].energy_j / 2  # type: ignore[operator]
    assert [w.name for w in m.windows] == ["inner", "overlap", "outer"]
    assert any("SIMULATED" in p for p in m.problems)


def test_windows_from_several_threads_each_match_the_profile(tmp_path):
    errors: list[BaseException] = []
    ended: list[infergy.Window] = []
    lock = threading.Lock()
    with infergy.Measurement(["sim"], settings=_settings(tmp_path)) as m:

        def worker(k: int) -> None:
            try:
                for i in range(6):
                    m.begin_window(f"t{k}.{i}")
                    if i % 2:  # a nested one every other time
                        m.begin_window(f"t{k}.{i}.in")
                        time.sleep(0.15)
                        with lock:
                            ended.append(m.end_window(f"t{k}.{i}.in"))
                    time.sleep(0.3 + 0.05 * k)
                    with lock:
                        ended.append(m.end_window(f"t{k}.{i}"))
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(ended) == 4 * 9
    for w in ended:
        ac = w["sim"]
        truth = _truth_j(m, w)
        assert ac.coverage == pytest.approx(1.0), w.name
        assert abs(ac.energy_j - truth) <= ac.uncertainty_j, (w.name, ac.energy_j, truth)  # type: ignore[operator]


def test_simulated_gpus_give_per_gpu_and_summed_figures_with_an_idle_baseline(tmp_path):
    settings = _settings(tmp_path, simulated_gpus=2)
    with infergy.Measurement(["nvml"], settings=settings, idle_s=1.0) as m:
        m.begin_window("busy")  # an open window is what the simulated boards follow
        time.sleep(1.5)
        w = m.end_window("busy")
        figures = w.sources
    assert set(figures) >= {"gpu0", "gpu1", "gpus", "gpu0.samples"}
    for name in ("gpu0", "gpu1"):
        g = figures[name]
        assert g.simulated is True and g.kind == "nvml" and g.coverage == pytest.approx(1.0)
        assert g.idle_w == pytest.approx(70.0, rel=0.02)  # the boards' idle power
        # busy 650 W; the boards follow the open window within one 20-ms follow period
        assert g.mean_power_w == pytest.approx(650.0, rel=0.04)
        assert g.dynamic_energy_j == pytest.approx(g.energy_j - 70.0 * w.duration_s, rel=0.03)  # type: ignore[operator]
    total = figures["gpus"]
    both = figures["gpu0"].energy_j + figures["gpu1"].energy_j  # type: ignore[operator]
    assert total.energy_j == pytest.approx(both, rel=0.01)
    assert total.idle_w == pytest.approx(140.0, rel=0.02)
    assert total.per_item(1000) == pytest.approx(total.energy_j / 1000)  # type: ignore[operator]
    assert m.idle_window is not None and m.idle_window.duration_s == pytest.approx(1.0)


def test_misused_windows_raise_clear_errors(tmp_path):
    m = infergy.Measurement(["sim"], settings=_settings(tmp_path))
    with pytest.raises(WindowError, match="not running"):
        m.begin_window("early")
    with m:
        m.begin_window("a")
        with pytest.raises(WindowError, match="'a' is already open"):
            m.begin_window("a")
        w = m.end_window("a")
        with pytest.raises(WindowError, match="'a' was already ended"):
            m.end_window("a")
        with pytest.raises(WindowError, match="'nope' was never begun"):
            m.end_window("nope")
        with pytest.raises(WindowError, match="non-empty string"):
            m.begin_window("")
        with pytest.raises(WindowError, match="non-empty string"):
            m.end_window(3)  # type: ignore[arg-type]
        for bad in (0, -1, float("nan"), True, "5"):
            with pytest.raises(WindowError, match="positive number of items"):
                w["sim"].per_item(bad)  # type: ignore[arg-type]
        with pytest.raises(KeyError, match="has no source 'gpu7'"):
            w["gpu7"]
        m.begin_window("left-open")
        with m.window("ctx") as slot:
            time.sleep(0.05)
    assert slot.window is not None and slot.window.duration_s >= 0.05
    assert "window 'left-open' was begun but never ended (dropped)" in m.problems
    with pytest.raises(WindowError, match="not running"):
        m.end_window("left-open")
    with pytest.raises(WindowError, match="runs once"):
        m.start()
    t0 = time.monotonic()
    assert w["sim"].energy_j is not None  # after close: final at once, no waiting
    assert time.monotonic() - t0 < 0.5


def test_a_bad_or_unavailable_meter_fails_at_start_with_the_reason(tmp_path):
    with pytest.raises(ConfigError, match="unknown meter 'bogus'"):
        infergy.Measurement(["bogus"], settings=_settings(tmp_path)).start()
    # this machine has no NVIDIA driver: asked for explicitly, NVML says why
    no_gpu = Settings.model_validate({"meters": {"rapl": False}})
    try:
        with NvmlLibrary():
            pytest.skip("an NVIDIA driver is present")
    except InfergyError:
        pass
    with pytest.raises(MeterError, match="NVML"):
        infergy.Measurement(["nvml"], settings=no_gpu).start()


def test_a_window_costs_microseconds_on_the_callers_thread(tmp_path):
    with infergy.Measurement(["sim"], settings=_settings(tmp_path)) as m:
        names = [f"r{i}" for i in range(2000)]
        runs = []
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for n in names:
                m.begin_window(n)
                m.end_window(n)
            runs.append((time.perf_counter_ns() - t0) / len(names) / 1000)
    per_window_us = statistics.median(runs)
    assert per_window_us < 100, f"begin+end took {per_window_us:.1f} µs (median of 5 runs)"


def test_import_infergy_is_light_and_the_api_resolves_lazily():
    code = (
        "import sys, infergy\n"
        "assert not [m for m in sys.modules if m.startswith('infergy.')], sorted(sys.modules)\n"
        "from infergy.daemon.measurement import Measurement\n"
        "assert infergy.Measurement is Measurement\n"
        "try:\n    infergy.nothing\nexcept AttributeError as e:\n    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "module 'infergy' has no attribute 'nothing'" in done.stdout
