"""GPU tests: skipped cleanly without NVML or a GPU; NVML setters are blocked while they run.

These tests run on lent, shared GPUs: every NVML function that changes state (power limits,
clocks, persistence, resets, MIG layout...) is replaced by one that fails the test.
"""

from __future__ import annotations

import functools

import pytest

try:
    import pynvml
except ImportError:  # reported by gpu_unavailable()
    pynvml = None

_STATE_CHANGING = (
    "nvmlDeviceSet",
    "nvmlDeviceReset",
    "nvmlDeviceClear",
    "nvmlDeviceModify",
    "nvmlDeviceCreate",
    "nvmlDeviceRemove",
    "nvmlDeviceDiscover",
    "nvmlSystemSet",
    "nvmlGpuInstanceCreate",
    "nvmlGpuInstanceDestroy",
    "nvmlComputeInstanceDestroy",
    "nvmlUnitSet",
    "nvmlVgpuInstanceSet",
)


@functools.cache
def gpu_unavailable() -> str | None:
    """Why GPU tests cannot run here, or None when NVML sees at least one GPU."""
    if pynvml is None:
        return "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return f"NVML unavailable ({err})"
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    return None if count else "NVML sees no GPU"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    for item in items:
        if "tests/gpu/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(autouse=True)
def _need_a_gpu() -> None:
    reason = gpu_unavailable()
    if reason:
        pytest.skip(f"no GPU: {reason}")


@pytest.fixture(autouse=True)
def _read_only_nvml(monkeypatch: pytest.MonkeyPatch, _need_a_gpu: None) -> None:
    def forbid(name: str):
        def call(*_args: object, **_kw: object) -> None:
            pytest.fail(f"{name} called: GPU tests must never change GPU state")

        return call

    for name in dir(pynvml):
        if name.startswith(_STATE_CHANGING):
            monkeypatch.setattr(pynvml, name, forbid(name))
