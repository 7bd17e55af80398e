"""`infergy doctor` on this GPU-less machine, and with fake GPUs, ports and RAPL zones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from rich.console import Console

import infergy.cli.doctor as doctor
from infergy.meters.gpu import PowerSamples
from infergy.meters.nvml_device import NvmlVersions
from tests.fake_gpu import FakeGpu

NAMES = ["infergy", "nvml", "rapl", "serial", "tensorrt", "onnxruntime", "torch", "loadgen", "sim"]


def cli(args: list[str]) -> int:
    app = typer.Typer()
    doctor.register(app)

    @app.callback()
    def _root() -> None:
        """infergy (test app)."""

    rv = app(args=args, prog_name="infergy", standalone_mode=False)
    assert isinstance(rv, int)
    return rv


def test_doctor_json_on_this_machine(capsys):
    rc = cli(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["ok"] is True  # LoadGen, ONNX Runtime and the sim are here
    assert report["infergy_version"]
    names = [c["name"] for c in report["checks"]]
    gpu_checks = [n for n in names if n.startswith("gpu")]
    assert [n for n in names if n not in gpu_checks] == NAMES
    for c in report["checks"]:
        assert set(c) == {"name", "status", "detail", "hint", "data"}
        assert c["status"] in {"ok", "warn", "missing", "none", "error"}
        if c["status"] in {"missing", "error"} and c["name"] != "rapl":
            assert c["hint"], c  # everything missing says how to fix it
    by = {c["name"]: c for c in report["checks"]}
    assert by["loadgen"]["status"] == "ok"
    assert by["onnxruntime"]["data"]["providers"]
    assert by["sim"]["data"]["power_source"] is True
    if not gpu_checks:  # no GPU here: reported, not an error
        assert by["nvml"]["status"] == "missing" and by["nvml"]["data"]["available"] is False


def test_doctor_table_and_exit_code_when_loadgen_is_missing(monkeypatch, capsys):
    real = doctor._import

    def no_loadgen(name: str):
        if name == "mlperf_loadgen":
            raise ImportError("No module named 'mlperf_loadgen'")
        return real(name)

    monkeypatch.setattr(doctor, "_import", no_loadgen)
    monkeypatch.setenv("COLUMNS", "160")
    assert cli(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "pip install mlcommons-loadgen" in out and "basics missing" in out


class FakeLibrary:
    def __init__(self) -> None:
        self.gpus = [
            FakeGpu(index=0),
            FakeGpu(index=1, unsupported={"power_samples", "memory_power"}, mig_enabled=True),
        ]
        self.closed = False

    def open(self) -> FakeLibrary:
        return self

    def close(self) -> None:
        self.closed = True

    def versions(self) -> NvmlVersions:
        return NvmlVersions(driver="580.159.04", nvml="13.580.159.04", cuda_driver="13.0")

    def visible_gpus(self):
        return self.gpus, ["CUDA_VISIBLE_DEVICES note"]


def test_doctor_reports_each_gpu_signal(monkeypatch):
    lib = FakeLibrary()
    checks = doctor.check_nvml(lambda: lib, agreement_s=1.0)
    assert lib.closed
    nvml, gpu0, gpu1 = checks
    assert nvml.status == "ok" and "driver 580.159.04" in nvml.detail
    assert "2 visible GPU(s)" in nvml.detail and "CUDA_VISIBLE_DEVICES note" in nvml.detail
    assert gpu0.status == "ok" and gpu0.data["power_source"]
    assert gpu0.data["counter_period_s"] == pytest.approx(0.01, rel=0.3)
    signals = gpu1.data["signals"]
    assert signals["counter"]["status"] == "ok"
    assert signals["samples"]["status"] == "not_supported"
    assert signals["instant"]["status"] == "ok"
    assert signals["memory_power"]["status"] == "not_supported"
    assert signals["power_limit"]["value"] == "700 W"
    assert signals["clocks"]["value"] == "1980/2619 MHz (SM/memory)"
    assert signals["clock_events"]["value"] == "sw_power_cap"
    assert "MIG on" in gpu1.detail
    assert gpu0.data["counter_agreement"]["drifted"] is False
    assert "samples agree with the counter" in gpu0.detail
    # no sample buffer: its polled instant field stands for the samples, and is compared
    assert gpu1.data["counter_agreement"]["drifted"] is False
    console = Console(width=160, record=True)
    doctor.render(console, doctor.Report(checks))
    text = console.export_text()
    assert "gpu1 signals" in text and "not_supported" in text


def test_doctor_serial_ports_and_rapl(tmp_path: Path):
    dev = tmp_path / "dev"
    dev.mkdir()
    assert doctor.check_serial(dev).status == "none"
    (dev / "ttyUSB0").write_text("")
    (dev / "usbtmc0").write_text("")
    serial = doctor.check_serial(dev)
    assert serial.status == "ok" and [p["path"] for p in serial.data["ports"]] == [
        str(dev / "ttyUSB0"),
        str(dev / "usbtmc0"),
    ]
    root = tmp_path / "powercap" / "intel-rapl:0"
    root.mkdir(parents=True)
    for name, value in (("name", "package-0"), ("energy_uj", "5"), ("max_energy_range_uj", "9")):
        (root / name).write_text(value)
    rapl = doctor.check_rapl(tmp_path / "powercap")
    assert rapl.status == "ok" and rapl.data["power_source"]


class LowSensorGpu(FakeGpu):
    """A GPU whose power samples read 5 % low (its counter is right)."""

    def power_samples(self, since_wall_us: int) -> PowerSamples:
        s = super().power_samples(since_wall_us)
        return PowerSamples(s.t_wall_us, s.power_mw * 0.95)


def test_doctor_flags_samples_that_disagree_with_the_counter(capsys):
    lib = FakeLibrary()
    lib.gpus = [LowSensorGpu(index=0, counter_period_s=0.05)]
    nvml, gpu0 = doctor.check_nvml(lambda: lib, agreement_s=1.5)
    agreement = gpu0.data["counter_agreement"]
    assert agreement["drifted"] is True, agreement
    assert agreement["scale"] == pytest.approx(1 / 0.95, rel=0.01)
    assert agreement["uncertainty"] < 0.01
    assert gpu0.status == "warn" and gpu0.data["power_source"] is True
    assert "do not trust gpu0.samples alone" in gpu0.detail
    assert "counter-true" in (gpu0.hint or "")
    report = doctor.Report([doctor.check_infergy(), nvml, gpu0])
    assert json.loads(json.dumps(report.as_dict()))["checks"][2]["data"]["counter_agreement"][
        "verdict"
    ].startswith("samples disagree")
