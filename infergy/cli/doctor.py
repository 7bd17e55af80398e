"""``infergy doctor``: what is present and usable on this host, with a hint for what is not.

It checks, read-only: NVML (driver, NVML and CUDA driver versions; per GPU which signals work:
energy counter, power sample buffer, field values, power limit, clocks..., and whether its
20-ms samples agree with its energy counter over a few seconds), RAPL, serial ports
for an analyzer, the inference backends (TensorRT, ONNX Runtime, PyTorch) and MLPerf LoadGen.
Heavy or fragile imports (TensorRT, PyTorch) run in a child process: TensorRT is only imported,
never asked for a runtime (that crashes without a GPU). ``infergy doctor`` exits 0 when the
basics work (infergy imports, LoadGen, ONNX Runtime, at least one power source; the simulated
one always is), 1 otherwise. Wire it into a typer app with :func:`register`.
"""

from __future__ import annotations

import grp
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infergy import __version__
from infergy.errors import GpuError
from infergy.meters.gpu import GpuDevice
from infergy.meters.nvml_agreement import AGREEMENT_S, Agreement, counter_agreement
from infergy.meters.nvml_device import NvmlLibrary, NvmlVersions
from infergy.meters.nvml_probe import NvmlMeterConfig, probe_gpu
from infergy.meters.rapl import DEFAULT_ROOT, probe_rapl
from infergy.runners.backends.trt_plan import find_trt_module

SERIAL_PATTERNS = ("ttyUSB*", "ttyACM*", "usbtmc*")
_STYLE = {"ok": "green", "missing": "yellow", "none": "dim", "warn": "yellow", "error": "red"}


@dataclass
class Check:
    """One line of the report.

    Attributes:
        name: what was checked (``nvml``, ``gpu0``, ``rapl``, ``serial``, ``onnxruntime``...).
        status: ``ok``, ``warn`` (usable, with a caveat), ``missing``, ``none`` (nothing
            attached) or ``error``.
        detail: what was found.
        hint: how to fix it, when something is missing or wrong.
        data: the facts behind it, for ``--json``.
    """

    name: str
    status: str
    detail: str
    hint: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """Every check, and whether the basics work."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        """The basics: infergy, LoadGen, ONNX Runtime and at least one power source."""
        status = {c.name: c.status for c in self.checks}
        basics = all(status.get(n) in ("ok", "warn") for n in ("infergy", "loadgen", "onnxruntime"))
        power = [c for c in self.checks if c.data.get("power_source") and c.status == "ok"]
        return basics and bool(power)

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "ok": self.ok,
            "infergy_version": __version__,
            "checks": [asdict(c) for c in self.checks],
        }


def _import(module: str) -> Any:
    """Import a module (a seam for tests)."""
    return importlib.import_module(module)


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_infergy() -> Check:
    """The package itself and the Python running it."""
    detail = f"infergy {__version__} on Python {platform.python_version()} ({sys.executable})"
    return Check("infergy", "ok", detail)


def check_nvml(
    open_library: Callable[[], Any] = NvmlLibrary, agreement_s: float = AGREEMENT_S
) -> list[Check]:
    """NVML and, per visible GPU, which read-only signals work (one read of each).

    Each GPU is then sampled for ``agreement_s`` (0 skips it) to tell whether its 20-ms samples
    agree with its energy counter.
    """
    try:
        library = open_library().open()
    except GpuError as err:
        return [Check("nvml", "missing", str(err), err.hint, {"available": False})]
    try:
        versions: NvmlVersions = library.versions()
        gpus, notes = library.visible_gpus()
        data = {"available": True, **asdict(versions), "notes": notes, "gpus": len(gpus)}
        detail = (
            f"driver {versions.driver}, NVML {versions.nvml}, CUDA driver "
            f"{versions.cuda_driver}; {len(gpus)} visible GPU(s)"
        )
        if notes:
            detail += "; " + "; ".join(notes)
        checks = [Check("nvml", "ok" if gpus else "warn", detail, None, data)]
        with ThreadPoolExecutor(max_workers=max(1, len(gpus))) as pool:
            names = [f"gpu{i}" for i in range(len(gpus))]
            checks += list(pool.map(_check_gpu, names, gpus, [agreement_s] * len(gpus)))
        return checks
    finally:
        library.close()


_SIGNALS = ("counter", "samples", "instant", "average", "power_limit", "clocks",
            "temperature", "clock_events", "utilization", "memory_power")  # fmt: skip


def _check_gpu(source: str, gpu: GpuDevice, agreement_s: float = 0.0) -> Check:
    ident = gpu.identity
    try:
        caps = probe_gpu(gpu, NvmlMeterConfig(calibration_timeout_s=1.5))
    except GpuError as err:
        return Check(source, "error", f"{ident.name}: {err}", err.hint)
    signals = {}
    for sig in _SIGNALS:
        text = caps.status.get(sig, "not tried")
        kind = text.split(" ", 1)[0].rstrip(":")
        kind = {"not": "not_supported", "no": "no_permission", "unusable": "error"}.get(kind, kind)
        signals[sig] = {"status": kind, "detail": text, "value": caps.first_values.get(sig)}
    has_power = any(signals[s]["status"] == "ok" for s in ("counter", "samples", "instant"))
    working = ", ".join(s for s, v in signals.items() if v["status"] == "ok") or "none"
    mig = "MIG on (board power covers all instances)" if ident.mig_enabled else "MIG off"
    data = {
        "power_source": has_power,
        "index": ident.index,
        "uuid": ident.uuid,
        "name": ident.name,
        "pci_bus_id": ident.pci_bus_id,
        "mig_enabled": ident.mig_enabled,
        "counter_period_s": caps.counter_period_s if "counter" in caps.intervals_s else None,
        "sample_period_s": caps.sample_period_s,
        "signals": signals,
    }
    detail = f"{ident.name} ({ident.uuid}, {ident.pci_bus_id}, {mig}); works: {working}"
    hint = (
        None if has_power else "no power signal answers: check the driver (nvidia-smi -q -d POWER)"
    )
    status = "ok" if has_power else "error"
    agreement = _agreement(source, gpu, agreement_s) if has_power and agreement_s > 0 else None
    data["counter_agreement"] = agreement.as_dict() if agreement is not None else None
    if agreement is not None:
        detail += f"; {agreement.verdict}"
        if agreement.drifted:
            status = "warn"
            hint = (
                f"{source}'s energy stays counter-true (its samples are anchored to the counter);"
                f" figures of {source}.samples alone are off by that factor"
            )
    return Check(source, status, detail, hint, data)


def _agreement(source: str, gpu: GpuDevice, seconds: float) -> Agreement | None:
    try:
        return counter_agreement(gpu, seconds=seconds, source=source)
    except GpuError:
        return None


def check_rapl(root: Path = DEFAULT_ROOT) -> Check:
    """RAPL package/DRAM counters (CPU power)."""
    probe = probe_rapl(root)
    if not probe.usable:
        return Check("rapl", "missing", f"RAPL unavailable: {probe.reason}", probe.hint)
    zones = [f"{z.name} ({z.path.name})" for z in probe.zones]
    return Check("rapl", "ok", "readable zones: " + ", ".join(zones), None, {"power_source": True})


def check_serial(dev: Path = Path("/dev")) -> Check:
    """Serial and USBTMC ports an analyzer could be on, with their permissions."""
    ports = sorted(p for pattern in SERIAL_PATTERNS for p in dev.glob(pattern))
    if not ports:
        names = ", ".join(f"{dev}/{p}" for p in SERIAL_PATTERNS)
        hint = "attach the analyzer (USB-serial or USBTMC), or try: infergy analyzer-sim"
        return Check("serial", "none", f"no analyzer port ({names})", hint, {"ports": []})
    found, blocked = [], []
    for p in ports:
        st = p.stat()
        group = _group_name(st.st_gid)
        usable = os.access(p, os.R_OK | os.W_OK)
        found.append({"path": str(p), "mode": stat.filemode(st.st_mode), "group": group,
                      "read_write": usable})  # fmt: skip
        if not usable:
            blocked.append(group)
    detail = ", ".join(f"{f['path']} {f['mode']} {f['group']}" for f in found)
    if blocked:
        g = blocked[0]
        hint = f"add your user to group {g}: sudo usermod -aG {g} $USER (then log in again)"
        return Check("serial", "warn", detail + " (not all read/write)", hint, {"ports": found})
    return Check("serial", "ok", detail, None, {"ports": found})


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


_TORCH_PROBE = (
    "import json, torch; c = torch.cuda.is_available(); print(json.dumps({'version': "
    "torch.__version__, 'cuda_available': c, 'cuda': torch.version.cuda, "
    "'devices': torch.cuda.device_count() if c else 0}))"
)
# import only: creating a TensorRT Runtime without a GPU crashes the process
_TRT_PROBE = "import json, {m} as t; print(json.dumps({{'version': t.__version__}}))"


def _child_json(code: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Run a probe in a child Python and parse its one JSON line (raises on failure)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RuntimeError(last)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def check_tensorrt() -> Check:
    """TensorRT (the lean runtime first): importable, and its version."""
    module = find_trt_module()
    if module is None:
        return Check("tensorrt", "missing", "TensorRT not installed",
                     "pip install 'infergy[tensorrt]' (needs an NVIDIA driver)")  # fmt: skip
    try:
        info = _child_json(_TRT_PROBE.format(m=module))
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as err:
        return Check("tensorrt", "error", f"import {module} failed: {err}",
                     "reinstall TensorRT matching the CUDA driver")  # fmt: skip
    return Check("tensorrt", "ok", f"{module} {info['version']} (imported only)", None, info)


def check_onnxruntime() -> Check:
    """ONNX Runtime and its execution providers."""
    try:
        ort = _import("onnxruntime")
    except ImportError as err:
        return Check("onnxruntime", "missing", f"not importable: {err}", "pip install onnxruntime")
    providers = list(ort.get_available_providers())
    data = {"version": ort.__version__, "providers": providers}
    detail = f"{ort.__version__}; providers: {', '.join(providers)}"
    if not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(providers):
        hint = "CPU only: for GPU inference install onnxruntime-gpu instead of onnxruntime"
        return Check("onnxruntime", "warn", detail, hint, data)
    return Check("onnxruntime", "ok", detail, None, data)


def check_torch() -> Check:
    """PyTorch, and whether it sees CUDA (in a child process)."""
    if importlib.util.find_spec("torch") is None:
        return Check("torch", "missing", "PyTorch not installed", "pip install 'infergy[torch]'")
    try:
        info = _child_json(_TORCH_PROBE)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as err:
        return Check("torch", "error", f"import torch failed: {err}", "reinstall PyTorch")
    detail = f"{info['version']}; CUDA {info['cuda']}, available: {info['cuda_available']}"
    if not info["cuda_available"]:
        return Check("torch", "warn", detail, "no CUDA device visible to PyTorch", info)
    return Check("torch", "ok", f"{detail} ({info['devices']} device(s))", None, info)


def check_loadgen() -> Check:
    """MLPerf LoadGen (``mlperf_loadgen``)."""
    try:
        _import("mlperf_loadgen")
    except ImportError as err:
        return Check(
            "loadgen", "missing", f"not importable: {err}", "pip install mlcommons-loadgen"
        )
    version = _dist_version("mlcommons-loadgen") or "unknown version"
    return Check("loadgen", "ok", f"mlperf_loadgen {version}", None, {"version": version})


def check_sim() -> Check:
    """The simulated power source, always there (and always labelled ``sim``)."""
    return Check("sim", "ok", "simulated power source (labelled sim, not a measurement)", None,
                 {"power_source": True})  # fmt: skip


def run_checks(
    *,
    open_library: Callable[[], Any] = NvmlLibrary,
    powercap_root: Path = DEFAULT_ROOT,
    dev: Path = Path("/dev"),
) -> Report:
    """Every check, in report order (blocking: probes hardware, starts child processes)."""
    checks = [check_infergy(), *check_nvml(open_library), check_rapl(powercap_root)]
    checks += [check_serial(dev), check_tensorrt(), check_onnxruntime(), check_torch()]
    checks += [check_loadgen(), check_sim()]
    return Report(checks)


def render(console: Console, report: Report) -> None:
    """The report as rich tables: one line per check, then each GPU's signals."""
    table = Table(title="infergy doctor", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("check", "status", "detail", "hint"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        style = _STYLE.get(c.status, "")
        table.add_row(c.name, Text(c.status, style), Text(c.detail), Text(c.hint or ""))
    console.print(table)
    for c in report.checks:
        signals: Mapping[str, Mapping[str, Any]] = c.data.get("signals", {})
        if not signals:
            continue
        t = Table(title=f"{c.name} signals", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("signal", "status", "first reading", "detail"):
            t.add_column(col, overflow="fold")
        for name, s in signals.items():
            style = "green" if s["status"] == "ok" else "yellow"
            value = "" if s["value"] is None else str(s["value"])
            t.add_row(name, Text(s["status"], style), Text(value), Text(str(s["detail"])))
        console.print(t)
    verdict = "[green]basics ok[/green]" if report.ok else "[red]basics missing[/red]"
    console.print(f"{verdict}: infergy, LoadGen, ONNX Runtime and a power source")


def register(app: typer.Typer) -> None:
    """Add ``infergy doctor`` to a typer app."""

    @app.command(name="doctor")
    def doctor(
        json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> int:
        """Check what is present and usable: NVML and GPUs, RAPL, serial ports, backends."""
        report = run_checks()
        if json_out:
            typer.echo(json.dumps(report.as_dict(), indent=2))
        else:
            render(Console(), report)
        return 0 if report.ok else 1
