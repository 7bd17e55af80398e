"""TensorRT pieces that run without a GPU: plan keys, sidecars, version/GPU checks, imports."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from infergy.errors import ModelError, PlanMismatchError, WorkloadError
from infergy.runners.backends import trt_plan
from infergy.runners.backends.trt_plan import PlanKey, check_plan, read_sidecar, write_plan

KEY = PlanKey("ab" * 32, "10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0", "fp16", (1, 256, 256))


def test_plan_key_changes_with_every_field(tmp_path: Path) -> None:
    variants = [
        PlanKey("cd" * 32, *list(vars(KEY).values())[1:]),
        PlanKey(KEY.model_sha256, "10.14.0.1", KEY.gpu_name, "9.0", "fp16", KEY.profile),
        PlanKey(KEY.model_sha256, KEY.trt_version, "NVIDIA H200", "9.0", "fp16", KEY.profile),
        PlanKey(KEY.model_sha256, KEY.trt_version, KEY.gpu_name, "8.9", "fp16", KEY.profile),
        PlanKey(KEY.model_sha256, KEY.trt_version, KEY.gpu_name, "9.0", "int8", KEY.profile),
        PlanKey(KEY.model_sha256, KEY.trt_version, KEY.gpu_name, "9.0", "fp16", (1, 128, 128)),
        PlanKey(KEY.model_sha256, KEY.trt_version, KEY.gpu_name, "9.0", "fp16", KEY.profile, True),
    ]
    digests = {v.digest() for v in variants} | {KEY.digest()}
    assert len(digests) == len(variants) + 1
    assert KEY.digest() == PlanKey(**vars(KEY)).digest()  # stable
    assert KEY.plan_path(tmp_path).parent == tmp_path / "trt"


def test_sidecar_round_trip(tmp_path: Path) -> None:
    plan = KEY.plan_path(tmp_path)
    write_plan(plan, b"PLAN", KEY)
    assert plan.read_bytes() == b"PLAN" and read_sidecar(plan) == KEY
    other = tmp_path / "user.plan"
    other.write_bytes(b"x")
    assert read_sidecar(other) is None
    (tmp_path / "user.json").write_text("{not json")
    assert read_sidecar(other) is None


def test_check_plan_accepts_same_and_compatible() -> None:
    assert check_plan(KEY, "10.13.0.35", "9.0") == []
    assert check_plan(KEY, "10.13.2.6", "9.0")  # same minor: a note, no error
    compat = PlanKey(**{**vars(KEY), "version_compatible": True})
    assert "version-compatible" in check_plan(compat, "10.15.1.29", "9.0")[0]
    assert "unchecked" in check_plan(None, "10.13.0.35", "9.0")[0]


@pytest.mark.parametrize(
    ("built", "runtime", "cc", "needle"),
    [
        (KEY, "10.13.0.35", "8.9", "compute capability 9.0"),
        (KEY, "10.15.1.29", "9.0", "built with TensorRT 10.13"),
        (PlanKey(**{**vars(KEY), "version_compatible": True}), "11.4.0.106", "9.0", "TensorRT"),
        (PlanKey(**{**vars(KEY), "version_compatible": True}), "10.1.0", "9.0", "TensorRT"),
    ],
)
def test_check_plan_refuses_mismatches(built: PlanKey, runtime: str, cc: str, needle: str) -> None:
    with pytest.raises(PlanMismatchError, match=needle) as err:
        check_plan(built, runtime, cc)
    assert err.value.exit_code == 2 and "rebuild" in (err.value.hint or "")


def test_import_errors_are_infergy_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        trt_plan.importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("tensorrt") else real(name, *a),
    )
    assert trt_plan.find_trt_module() is None
    with pytest.raises(WorkloadError, match="not installed"):
        trt_plan.import_trt(need_builder=False)
    monkeypatch.setattr(trt_plan, "find_trt_module", lambda: "tensorrt_lean")
    with pytest.raises(ModelError, match="lean runtime") as err:
        trt_plan.import_trt(need_builder=True)
    assert err.value.exit_code == 2


def test_find_trt_module_sees_what_is_installed() -> None:
    found = trt_plan.find_trt_module()
    expected = next((m for m in trt_plan.TRT_MODULES if importlib.util.find_spec(m)), None)
    assert found == expected


def test_without_pytorch_the_tensorrt_backend_says_why_it_needs_it(tmp_path: Path) -> None:
    """It was "PyTorch is not importable" with a hint for the torch backend."""
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("PyTorch is installed here")
    from infergy.runners.backends.tensorrt import TensorRTBackend  # noqa: PLC0415
    from infergy.runners.models import ModelSpec  # noqa: PLC0415
    from infergy.runners.types import WorkloadConfig  # noqa: PLC0415

    plan = tmp_path / "m.plan"
    plan.write_bytes(b"not a plan")
    spec = ModelSpec(name="m.plan", kind="plan", path=plan, sha256="0" * 64)
    backend = TensorRTBackend(WorkloadConfig(backend="tensorrt", gpus=(0,)), spec, 0)
    with pytest.raises(WorkloadError, match=r"needs PyTorch .* CUDA streams") as err:
        backend.load()
    assert err.value.hint is not None and "infergy[tensorrt]" in err.value.hint


def test_the_extras_install_what_the_backends_import() -> None:
    """[torch] brings torchvision (the built-in ResNet-50); [tensorrt] brings [torch]."""
    import tomllib  # noqa: PLC0415

    root = Path(__file__).resolve().parents[3]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = {k: {re.split(r"[<>=\[ ]", r, maxsplit=1)[0] for r in v} for k, v in extras.items()}
    assert {"torch", "torchvision"} <= names["torch"]
    assert "infergy[torch]" in extras["tensorrt"]
    assert any(r.startswith("torchvision>=") and "<" in r for r in extras["torch"])  # a range
