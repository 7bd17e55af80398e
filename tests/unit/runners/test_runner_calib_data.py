"""INT8 calibration data: loading, validation, hashing, batching, and the plan cache key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from infergy.core.trace import Scenario
from infergy.errors import ModelError, WorkloadError
from infergy.runners import WorkloadConfig
from infergy.runners.backends.tensorrt import GENERATED_CALIBRATION_PROBLEM, TensorRTBackend
from infergy.runners.backends.trt_plan import PlanKey, find_trt_module, read_sidecar, write_plan
from infergy.runners.calib_data import (
    GENERATED,
    calibration_identity,
    load_calibration_data,
)
from infergy.runners.models import ModelSpec
from infergy.runners.outcome import backend_problems, build_outcome

SAMPLE = (3, 4, 4)


def _dir(tmp_path: Path, *counts: int, dtype: str = "float32") -> Path:
    d = tmp_path / "calib"
    d.mkdir()
    start = 0
    for i, n in enumerate(counts):
        arr = np.arange(start, start + n, dtype=np.float64)[:, None, None, None]
        np.save(d / f"b{i:02d}.npy", np.broadcast_to(arr, (n, *SAMPLE)).astype(dtype))
        start += n
    return d


def test_a_directory_of_npy_files(tmp_path: Path) -> None:
    d = _dir(tmp_path, 3, 4)
    (d / "README.txt").write_text("ignored")
    data = load_calibration_data(d)
    assert data.sources == ("b00.npy", "b01.npy") and data.samples == 7
    assert data.sample_shape == SAMPLE and len(data.sha256) == 64
    assert data.describe()["samples"] == 7
    batches = list(data.batches(3, np.float32))
    assert len(batches) == data.batch_count(3) == 3
    assert all(b.shape == (3, *SAMPLE) and b.dtype == np.float32 for b in batches)
    assert all(b.flags.c_contiguous for b in batches)
    firsts = [b[:, 0, 0, 0].tolist() for b in batches]
    assert firsts == [[0, 1, 2], [3, 4, 5], [6, 0, 1]]  # every sample once, then from the start
    half = list(data.batches(16, np.float16))  # fewer samples than one batch
    assert len(half) == 1 and half[0][:, 0, 0, 0].tolist() == [*range(7), *range(7), 0, 1]


def test_one_npz_file_and_float64_is_cast(tmp_path: Path) -> None:
    f = tmp_path / "calib.npz"
    np.savez(f, a=np.ones((2, *SAMPLE)), b=np.zeros((5, *SAMPLE), np.float16))
    data = load_calibration_data(f)
    assert data.sources == ("a", "b") and data.samples == 7 and data.sample_shape == SAMPLE
    (b0, b1) = data.batches(4, np.float32)
    assert b0.dtype == np.float32 and b0[:2].min() == 1 and b1.max() == 1  # b1 wraps to "a"


def test_the_hash_follows_the_data(tmp_path: Path) -> None:
    d = _dir(tmp_path, 3, 4)
    first = load_calibration_data(d).sha256
    assert load_calibration_data(d).sha256 == first  # stable
    arr = np.load(d / "b01.npy")
    arr[0, 0, 0, 0] += 1
    np.save(d / "b01.npy", arr)
    changed = load_calibration_data(d).sha256
    (d / "b01.npy").rename(d / "b99.npy")  # same bytes, another order/name
    assert len({first, changed, load_calibration_data(d).sha256}) == 3


def test_sample_shape_is_checked_against_the_model(tmp_path: Path) -> None:
    data = load_calibration_data(_dir(tmp_path, 2))
    data.check_sample_shape(SAMPLE, "m.onnx")
    with pytest.raises(ModelError, match=r"shape \(3, 4, 4\), but m\.onnx takes \(3, 224, 224\)"):
        data.check_sample_shape((3, 224, 224), "m.onnx")


def _bad(tmp_path: Path, kind: str) -> Path:
    d = tmp_path / "bad"
    d.mkdir()
    good = np.zeros((2, *SAMPLE), np.float32)
    if kind == "ints":
        np.save(d / "a.npy", good.astype(np.uint8))
    elif kind == "1d":
        np.save(d / "a.npy", np.zeros(8, np.float32))
    elif kind == "empty-array":
        np.save(d / "a.npy", np.zeros((0, *SAMPLE), np.float32))
    elif kind == "nan":
        good[1, 0, 0, 0] = np.nan
        np.save(d / "a.npy", good)
    elif kind == "shapes":
        np.save(d / "a.npy", good)
        np.save(d / "b.npy", np.zeros((2, 3, 5, 5), np.float32))
    elif kind == "pickled":
        np.save(d / "a.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif kind == "garbage":
        (d / "a.npy").write_bytes(b"\x93NUMPY garbage")
    elif kind in ("no-npy", "txt-file"):
        (d / "a.txt").write_text("x")
        return d if kind == "no-npy" else d / "a.txt"
    elif kind == "bad-npz":
        (d / "c.npz").write_bytes(b"PK not a zip")
        return d / "c.npz"
    elif kind == "empty-npz":
        np.savez(d / "c.npz")
        return d / "c.npz"
    elif kind == "missing":
        return d / "nope"
    return d


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("ints", "dtype uint8; inputs must be float"),
        ("1d", r"shape \(8,\); expected \(N, \*sample shape\)"),
        ("empty-array", r"shape \(0, 3, 4, 4\)"),
        ("nan", "NaN or infinite"),
        ("shapes", r"a\.npy has \(3, 4, 4\), b\.npy has \(3, 5, 5\)"),
        ("pickled", "cannot read calibration array a.npy"),
        ("garbage", "cannot read calibration array a.npy"),
        ("no-npy", "has no .npy files"),
        ("txt-file", "neither a directory of .npy files nor a .npz"),
        ("bad-npz", "cannot read calibration data"),
        ("empty-npz", "holds no arrays"),
        ("missing", "not found"),
    ],
)
def test_bad_data_is_one_clear_error(tmp_path: Path, kind: str, needle: str) -> None:
    with pytest.raises(WorkloadError, match=needle) as err:
        load_calibration_data(_bad(tmp_path, kind))
    assert err.value.exit_code == 2 and "--calibration-data" in (err.value.hint or "")


def test_config_carries_the_path_and_only_for_int8(tmp_path: Path) -> None:
    cfg = WorkloadConfig(backend="tensorrt", precision="int8", calibration_data=tmp_path)
    assert WorkloadConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg.validate()
    assert cfg.to_json()["calibration_data"] == str(tmp_path)
    with pytest.raises(WorkloadError, match="calibration data is for int8 builds"):
        WorkloadConfig(backend="tensorrt", precision="fp16", calibration_data=tmp_path).validate()


def test_calibration_identity(tmp_path: Path) -> None:
    d = _dir(tmp_path, 2)
    fp16 = WorkloadConfig(backend="tensorrt", precision="fp16")
    assert calibration_identity(fp16) == (None, None)
    assert calibration_identity(WorkloadConfig(backend="tensorrt", precision="int8")) == (
        GENERATED, None,
    )  # fmt: skip
    sha, data = calibration_identity(
        WorkloadConfig(backend="tensorrt", precision="int8", calibration_data=d)
    )
    assert data is not None and sha == data.sha256
    with pytest.raises(WorkloadError, match="not found"):
        calibration_identity(
            WorkloadConfig(backend="tensorrt", precision="int8", calibration_data=d / "x")
        )


KEY = PlanKey("ab" * 32, "10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0", "int8", (1, 64, 64))


def test_plan_key_includes_the_calibration_data(tmp_path: Path) -> None:
    d = _dir(tmp_path, 2)
    sha = load_calibration_data(d).sha256
    keys = [PlanKey(**{**vars(KEY), "calibration": c}) for c in (GENERATED, sha, "0" * 64)]
    assert len({k.digest() for k in keys}) == 3
    assert len({k.plan_path(tmp_path) for k in keys}) == 3
    # other precisions keep their digests from before the field existed
    fp16 = PlanKey(**{**vars(KEY), "precision": "fp16"})
    old = {k: v for k, v in asdict(fp16).items() if k != "calibration"}
    text = json.dumps(old, sort_keys=True)
    assert fp16.digest() == hashlib.sha256(text.encode()).hexdigest()[:24]


def test_sidecar_round_trip_with_calibration_and_old_sidecars(tmp_path: Path) -> None:
    key = PlanKey(**{**vars(KEY), "calibration": "cd" * 32})
    plan = key.plan_path(tmp_path)
    write_plan(plan, b"PLAN", key)
    assert read_sidecar(plan) == key
    old = json.loads(plan.with_suffix(".json").read_text())
    del old["calibration"]  # written before int8 keys had the field
    plan.with_suffix(".json").write_text(json.dumps(old))
    built = read_sidecar(plan)
    assert built is not None and built.calibration is None and built != key  # rebuilt


def test_backend_problems_reach_the_outcome_once(tmp_path: Path) -> None:
    desc = {"per_device": [{"problems": ["generated inputs"]}, {"problems": ["generated inputs"]},
                           {"notes": []}]}  # fmt: skip
    assert backend_problems(desc) == ["generated inputs"]
    assert backend_problems({}) == []
    out = build_outcome(np.zeros((0, 4), np.int64), scenario=Scenario.OFFLINE,
                        device_names=["gpu0"], loadgen_dir=tmp_path / "none",
                        mono_to_session_ns=0, mono_to_wall_ns=0,
                        backend_problems=backend_problems(desc))  # fmt: skip
    assert out.problems[0] == "generated inputs"


def _trt_backend(tmp_path: Path, **kw: object) -> TensorRTBackend:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not parsed: the plan comes from the cache")
    cfg = WorkloadConfig(
        backend="tensorrt", precision="int8", batch_size=64, cache_dir=tmp_path / "cache", **kw
    )  # type: ignore[arg-type]
    return TensorRTBackend(cfg.validate(), ModelSpec("m.onnx", "onnx", onnx, "ab" * 32), 0)


@pytest.mark.skipif(find_trt_module() is not None, reason="TensorRT is installed here")
def test_the_backend_looks_plans_up_by_the_calibration_data(tmp_path: Path) -> None:
    """Without TensorRT: a cached plan is found only under the data it was calibrated on."""
    d = _dir(tmp_path, 2)
    sha = load_calibration_data(d).sha256
    key = PlanKey("ab" * 32, "unknown", "NVIDIA H100", "9.0", "int8", (1, 64, 64),
                  calibration=sha)  # fmt: skip
    write_plan(key.plan_path(tmp_path / "cache"), b"PLAN", key)
    backend = _trt_backend(tmp_path, calibration_data=d)
    assert backend._cached_or_built("NVIDIA H100", "9.0") == key.plan_path(tmp_path / "cache")
    desc = backend.describe()
    assert desc["problems"] == [] and desc["calibration_data"]["sha256"] == sha
    arr = np.load(d / "b00.npy")
    np.save(d / "b00.npy", arr + 1)  # other data: the cached plan no longer applies
    with pytest.raises(WorkloadError, match="TensorRT is not installed"):
        _trt_backend(tmp_path, calibration_data=d)._cached_or_built("NVIDIA H100", "9.0")
    generated = _trt_backend(tmp_path)  # no data: a build, with the problem line
    with pytest.raises(WorkloadError, match="TensorRT is not installed"):
        generated._cached_or_built("NVIDIA H100", "9.0")
    assert generated.describe()["problems"] == [GENERATED_CALIBRATION_PROBLEM]
    with pytest.raises(WorkloadError, match="not found"):  # checked before any build
        _trt_backend(tmp_path, calibration_data=d / "x")._cached_or_built("NVIDIA H100", "9.0")
