"""The RAPL meter against a fake powercap tree (wraparound, zones, unreadable counters)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

import infergy.meters.rapl as rapl
from infergy.core.clock import SessionClock
from infergy.core.energy import window_energy
from infergy.core.trace import Semantics, Window
from infergy.errors import MeterError
from infergy.meters.base import Meter
from infergy.meters.rapl import RaplMeter, probe_rapl

MAX_UJ = 262_143_328_850  # a real package zone's max_energy_range_uj


def zone(root: Path, name: str, label: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", MAX_UJ - 1_000_000)  # 1 J before the wrap
    zone(root, "intel-rapl:0:0", "core", 5)
    zone(root, "intel-rapl:0:1", "dram", 2_000_000, max_uj=65_712_999_613)
    zone(root, "intel-rapl:1", "package-1", 10_000_000)
    zone(root, "intel-rapl-mmio:0", "package-0", 123)  # the same package through MMIO
    (root / "intel-rapl").mkdir()  # the control type, not a zone
    return root


def set_uj(root: Path, name: str, uj: int) -> None:
    tmp = root / name / "energy_uj.tmp"
    tmp.write_text(f"{uj}\n")
    tmp.replace(root / name / "energy_uj")  # atomic: the meter's thread never reads it half-written


def test_sources_zones_and_semantics(tree):
    meter = RaplMeter(clock=SessionClock(), root=tree)
    assert isinstance(meter, Meter)
    infos = {i.name: i for i in meter.describe()}
    assert list(infos) == ["cpu", "cpu.dram"]
    assert infos["cpu"].semantics is Semantics.COUNTER and infos["cpu"].unit == "J"
    assert infos["cpu"].device == "package-0, package-1"
    assert "intel-rapl:1" in infos["cpu"].details["zones"]
    assert "mmio" not in infos["cpu"].details["zones"]
    assert infos["cpu.dram"].device == "dram"


def test_the_counter_unwraps_at_max_energy_range(tree):
    meter = RaplMeter(clock=SessionClock(), root=tree)
    set_uj(tree, "intel-rapl:0", MAX_UJ - 400_000)  # +0.6 J
    set_uj(tree, "intel-rapl:1", 12_000_000)  # +2 J
    meter.sample()
    set_uj(tree, "intel-rapl:0", 1_600_000)  # wrapped: +0.4 J to the top, +1.6 J after
    set_uj(tree, "intel-rapl:0:1", 2_500_000)  # dram +0.5 J
    meter.sample()
    cpu = meter.snapshot("cpu")
    assert np.diff(cpu.values).tolist() == pytest.approx([2.6, 2.0])
    assert np.diff(meter.snapshot("cpu.dram").values).tolist() == pytest.approx([0.0, 0.5])
    assert meter.wraps == 1
    assert window_energy(cpu, Window(int(cpu.t_ns[0]), int(cpu.t_ns[-1]))).resets == 0


def test_the_meter_samples_on_its_own_until_cancelled(tree):
    meter = RaplMeter(clock=SessionClock(), root=tree, interval_s=0.01)

    async def main() -> None:
        task = asyncio.create_task(meter.run())
        for k in range(1, 6):
            await asyncio.sleep(0.02)
            set_uj(tree, "intel-rapl:1", 10_000_000 + k * 1_000_000)
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    trace = meter.snapshot("cpu")
    assert len(trace) >= 8
    assert trace.values[-1] - trace.values[0] == pytest.approx(5.0)
    assert meter.health()["cpu"].up and not meter.health()["cpu"].errors


def test_unreadable_counters_make_the_meter_absent_with_the_reason(tree, monkeypatch):
    real = rapl._read_text

    def no_energy(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(rapl, "_read_text", no_energy)
    probe = probe_rapl(tree)
    assert not probe.usable and "not readable" in str(probe.reason)
    assert probe.hint and "CVE-2020-8694" in probe.hint
    with pytest.raises(MeterError, match="RAPL is not available") as info:
        RaplMeter(clock=SessionClock(), root=tree)
    assert info.value.hint and "root" in info.value.hint


def test_no_powercap_at_all(tmp_path):
    assert "does not exist" in str(probe_rapl(tmp_path / "nope").reason)
    (tmp_path / "empty").mkdir()
    assert "no intel-rapl zones" in str(probe_rapl(tmp_path / "empty").reason)
    zone(tmp_path / "dram-only", "intel-rapl:0:1", "dram", 1)
    assert "no package zone" in str(probe_rapl(tmp_path / "dram-only").reason)
