"""The NVML boundary: pynvml's own functions replaced, raising pynvml's own error classes.

This is the one place faking the binding is right: it checks that every NVML error leaves
``infergy.meters.nvml_device`` translated, and that ctypes results (sample buffers, field value
structs) are decoded with the binding's real structures.
"""

from __future__ import annotations

import pynvml
import pytest

from infergy.errors import GpuError, GpuLostError, GpuNotSupportedError, GpuPermissionError
from infergy.meters.gpu import GpuIdentity, clock_event_names, select_visible_gpus
from infergy.meters.nvml_device import NvmlGpu, NvmlLibrary, translate_nvml_error

IDENT = GpuIdentity(0, "GPU-aaaa-1111", "NVIDIA H100 80GB HBM3", "00000000:19:00.0", False)


def raiser(exc_class: type[pynvml.NVMLError]):
    def fn(*_args, **_kw):
        raise exc_class()

    return fn


@pytest.fixture
def gpu() -> NvmlGpu:
    return NvmlGpu(NvmlLibrary(), object(), IDENT)


@pytest.mark.parametrize(
    ("nvml_error", "ours"),
    [
        (pynvml.NVMLError_NotSupported, GpuNotSupportedError),
        (pynvml.NVMLError_FunctionNotFound, GpuNotSupportedError),
        (pynvml.NVMLError_NoPermission, GpuPermissionError),
        (pynvml.NVMLError_GpuIsLost, GpuLostError),
        (pynvml.NVMLError_ResetRequired, GpuLostError),
        (pynvml.NVMLError_DriverNotLoaded, GpuLostError),
        (pynvml.NVMLError_Uninitialized, GpuLostError),
        (pynvml.NVMLError_Timeout, GpuError),
        (pynvml.NVMLError_Unknown, GpuError),
    ],
)
def test_every_nvml_error_leaves_the_device_translated(monkeypatch, gpu, nvml_error, ours):
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", raiser(nvml_error))
    with pytest.raises(ours) as info:
        gpu.energy_mj()
    assert type(info.value) is ours
    assert isinstance(info.value.__cause__, nvml_error)
    assert "GPU 0 (NVIDIA H100 80GB HBM3)" in str(info.value)
    assert "energy counter" in str(info.value)


def test_messages_and_hints():
    err = translate_nvml_error(pynvml.NVMLError_NoPermission(), "read the power limit", "gpu0")
    assert str(err) == "gpu0: cannot read the power limit: Insufficient Permissions"
    assert err.hint and "root" in err.hint
    err = translate_nvml_error(pynvml.NVMLError_NotSupported(), "read the clocks", "gpu0")
    assert "not supported by this GPU or driver" in str(err)
    err = translate_nvml_error(pynvml.NVMLError_LibraryNotFound(), "initialise NVML")
    assert type(err) is GpuError and err.hint and "driver" in err.hint


def test_opening_nvml_without_a_driver_is_a_clear_gpu_error(monkeypatch):
    monkeypatch.setattr(pynvml, "nvmlInit", raiser(pynvml.NVMLError_LibraryNotFound))
    with pytest.raises(GpuError, match="cannot initialise NVML: NVML Shared Library Not Found"):
        NvmlLibrary().open()


def test_energy_and_simple_reads_return_the_binding_values(monkeypatch, gpu):
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", lambda h: 123456789)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetEnforcedPowerLimit", lambda h: 700000)
    clocks = {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}
    monkeypatch.setattr(pynvml, "nvmlDeviceGetClockInfo", lambda h, kind: clocks[kind])
    util = pynvml.c_nvmlUtilization_t(gpu=97, memory=40)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", lambda h: util)
    assert gpu.energy_mj() == 123456789
    assert gpu.power_limit_mw() == 700000
    assert gpu.clocks_mhz() == (1980, 2619)
    assert gpu.utilization_pct() == (97, 40)


def test_temperature_and_clock_events_fall_back_on_older_drivers(monkeypatch, gpu):
    monkeypatch.setattr(
        pynvml, "nvmlDeviceGetTemperatureV", raiser(pynvml.NVMLError_FunctionNotFound)
    )
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTemperature", lambda h, s: 44)
    monkeypatch.setattr(
        pynvml, "nvmlDeviceGetCurrentClocksEventReasons", raiser(pynvml.NVMLError_FunctionNotFound)
    )
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", lambda h: 0x5)
    assert gpu.temperature_c() == 44
    assert gpu.clock_event_reasons() == 0x5
    assert clock_event_names(0x5 | 0x10000) == ("gpu_idle", "sw_power_cap", "0x10000")


def samples(*pairs: tuple[int, int]) -> list[pynvml.c_nvmlSample_t]:
    out = []
    for t_us, mw in pairs:
        s = pynvml.c_nvmlSample_t()
        s.timeStamp = t_us
        s.sampleValue.uiVal = mw
        out.append(s)
    return out


def test_power_samples_decode_sort_and_keep_only_newer(monkeypatch, gpu):
    seen = {}

    def get_samples(handle, kind, since):
        seen.update(kind=kind, since=since)
        batch = samples((1_700_000_000_040_000, 250_000), (1_700_000_000_000_000, 240_000))
        batch += samples((1_700_000_000_020_000, 245_000))
        return pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, batch

    monkeypatch.setattr(pynvml, "nvmlDeviceGetSamples", get_samples)
    got = gpu.power_samples(1_700_000_000_000_000)
    assert seen == {"kind": pynvml.NVML_TOTAL_POWER_SAMPLES, "since": 1_700_000_000_000_000}
    assert got.t_wall_us.tolist() == [1_700_000_000_020_000, 1_700_000_000_040_000]
    assert got.power_mw.tolist() == [245_000.0, 250_000.0]


def test_an_empty_sample_buffer_is_no_samples_not_an_error(monkeypatch, gpu):
    monkeypatch.setattr(pynvml, "nvmlDeviceGetSamples", raiser(pynvml.NVMLError_NotFound))
    assert len(gpu.power_samples(5)) == 0
    monkeypatch.setattr(pynvml, "nvmlDeviceGetSamples", raiser(pynvml.NVMLError_NotSupported))
    with pytest.raises(GpuNotSupportedError, match="power sample buffer"):
        gpu.power_samples(5)


def field_values(ret: int, mw: int, t_us: int = 1_700_000_000_123_456):
    def get(handle, ids):
        arr = (pynvml.c_nvmlFieldValue_t * len(ids))()
        for i, fid in enumerate(ids):
            field_id, scope = fid if isinstance(fid, tuple) else (fid, 0)
            arr[i].fieldId, arr[i].scopeId = field_id, scope
            arr[i].nvmlReturn = ret
            arr[i].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
            arr[i].value.uiVal = mw
            arr[i].timestamp = t_us
        get.ids = ids
        return arr

    return get


def test_field_values_carry_value_timestamp_and_per_field_status(monkeypatch, gpu):
    get = field_values(pynvml.NVML_SUCCESS, 312_500)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetFieldValues", get)
    reading = gpu.power_average()
    assert reading.power_mw == 312_500.0 and reading.t_wall_us == 1_700_000_000_123_456
    assert get.ids == [pynvml.NVML_FI_DEV_POWER_AVERAGE]
    gpu.power_instant()
    assert get.ids == [pynvml.NVML_FI_DEV_POWER_INSTANT]
    gpu.memory_power()
    assert get.ids == [(pynvml.NVML_FI_DEV_POWER_AVERAGE, pynvml.NVML_POWER_SCOPE_MEMORY)]
    monkeypatch.setattr(
        pynvml, "nvmlDeviceGetFieldValues", field_values(pynvml.NVML_ERROR_NOT_SUPPORTED, 0)
    )
    with pytest.raises(GpuNotSupportedError, match="NVML_FI_DEV_POWER_INSTANT"):
        gpu.power_instant()
    monkeypatch.setattr(pynvml, "nvmlDeviceGetFieldValues", field_values(pynvml.NVML_SUCCESS, 0))
    with pytest.raises(GpuNotSupportedError, match="memory power"):
        gpu.memory_power()  # GPUs without a memory rail answer 0


def test_reconnect_finds_the_gpu_by_uuid_and_reinitialises_after_a_driver_reload(monkeypatch):
    calls = []
    state = {"initialised": False}

    def by_uuid(uuid):
        calls.append(("uuid", uuid))
        if not state["initialised"]:
            raise pynvml.NVMLError_Uninitialized()
        return "new-handle"

    def init():
        calls.append(("init",))
        state["initialised"] = True

    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByUUID", by_uuid)
    monkeypatch.setattr(pynvml, "nvmlShutdown", raiser(pynvml.NVMLError_Uninitialized))
    monkeypatch.setattr(pynvml, "nvmlInit", init)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", lambda h: 5)
    gpu = NvmlGpu(NvmlLibrary(), "old-handle", IDENT)
    gpu.reconnect()
    assert gpu.handle == "new-handle"
    assert calls == [("uuid", IDENT.uuid), ("init",), ("uuid", IDENT.uuid)]
    monkeypatch.setattr(
        pynvml, "nvmlDeviceGetTotalEnergyConsumption", raiser(pynvml.NVMLError_GpuIsLost)
    )
    with pytest.raises(GpuLostError):
        gpu.reconnect()


def test_visible_gpus_enumerates_by_nvml_index_with_identity(monkeypatch):
    uuids = ["GPU-aaaa-0000", "GPU-bbbb-1111", "GPU-cccc-2222"]
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 3)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: i)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUUID", lambda h: uuids[h])
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: "NVIDIA H100 80GB HBM3")

    def pci(h):
        info = pynvml.nvmlPciInfo_t()
        info.busId = f"00000000:{0x19 + h:02X}:00.0".encode()
        return info

    monkeypatch.setattr(pynvml, "nvmlDeviceGetPciInfo", pci)
    mig = {0: [0, 0], 1: [1, 1]}

    def mig_mode(h):
        if h == 2:
            raise pynvml.NVMLError_NotSupported()
        return mig[h]

    monkeypatch.setattr(pynvml, "nvmlDeviceGetMigMode", mig_mode)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByUUID", lambda u: "mig-handle")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetDeviceHandleFromMigDeviceHandle", lambda m: 1)
    with NvmlLibrary() as nvml:
        gpus, notes = nvml.visible_gpus({})
        assert [g.identity.uuid for g in gpus] == uuids
        assert gpus[1].identity.pci_bus_id == "00000000:1A:00.0"
        assert [g.identity.mig_enabled for g in gpus] == [False, True, None]
        gpus, notes = nvml.visible_gpus({"CUDA_VISIBLE_DEVICES": "MIG-x-1,MIG-x-2,GPU-cccc"})
        assert [g.identity.index for g in gpus] == [1, 2]
        assert gpus[0].identity.mig_instances == ("MIG-x-1", "MIG-x-2")
        assert any("not counted twice" in n for n in notes)


@pytest.mark.parametrize(
    ("visible", "indices", "note"),
    [
        (None, [0, 1, 2, 3], None),
        ("", [], "hides every GPU"),
        ("2,0", [0, 2], "CUDA_DEVICE_ORDER=PCI_BUS_ID"),
        ("1,7,2", [1], "'7' matches no GPU"),
        ("GPU-bb", [1], None),
        ("GPU-a", [], "matches no GPU"),  # ambiguous prefix (GPU-aa..., GPU-ab...)
        ("GPU-dddd-3333,GPU-aaaa-0000", [0, 3], None),
        ("-1", [], "matches no GPU"),
        ("1,1", [1], "twice"),
    ],
)
def test_cuda_visible_devices_is_read_the_way_cuda_reads_it(visible, indices, note):
    uuids = ["GPU-aaaa-0000", "GPU-bbbb-1111", "GPU-abcd-2222", "GPU-dddd-3333"]
    sel = select_visible_gpus(uuids, visible)
    assert sel.indices == indices
    if note is None:
        assert not sel.notes
    else:
        assert any(note in n for n in sel.notes), sel.notes
