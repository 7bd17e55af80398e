from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from infergy.core.trace import Scenario
from infergy.errors import ModelError, WorkloadError
from infergy.runners import WorkloadConfig
from infergy.runners.models import materialize_tiny, resolve_model, tiny_onnx_bytes


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    cfg = WorkloadConfig(
        backend="torch",
        precision="fp16",
        batch_size=64,
        gpus=(0, 1),
        scenario=Scenario.SERVER,
        target_qps=1000.0,
        cache_dir=tmp_path,
    )
    assert WorkloadConfig.from_json(cfg.to_json()) == cfg
    assert cfg.device_names == ["gpu0", "gpu1"]
    assert WorkloadConfig(backend="onnxruntime").device_names == ["cpu"]


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"backend": "jax"}, "unknown backend"),
        ({"backend": "torch", "precision": "fp8"}, "unknown precision"),
        ({"backend": "torch", "batch_size": 0}, "batch size"),
        ({"backend": "torch", "duration_s": 0}, "duration"),
        ({"backend": "torch", "target_qps": -1.0}, "target QPS"),
        ({"backend": "torch", "gpus": (0, 0)}, "distinct"),
    ],
)
def test_config_rejects_bad_values(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(WorkloadError, match=needle) as err:
        WorkloadConfig(**kw).validate()  # type: ignore[arg-type]
    assert err.value.exit_code == 2 and err.value.hint


def test_tiny_model_is_valid_and_deterministic() -> None:
    a, b = tiny_onnx_bytes(seed=3), tiny_onnx_bytes(seed=3)
    assert a == b and a != tiny_onnx_bytes(seed=4)
    model = onnx.load_from_string(a)
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    half = onnx.load_from_string(tiny_onnx_bytes(fp16=True))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def test_materialize_tiny_writes_once(tmp_path: Path) -> None:
    s1 = materialize_tiny(tmp_path)
    assert s1.path is not None and s1.path.is_file()
    mtime = s1.path.stat().st_mtime_ns
    s2 = materialize_tiny(tmp_path)
    assert s2 == s1 and s2.path is not None and s2.path.stat().st_mtime_ns == mtime


def test_resolve_model_defaults_and_files(tmp_path: Path) -> None:
    assert resolve_model("onnxruntime", "auto").name == "tiny"
    assert resolve_model("torch", "auto").name == "resnet50"
    f = tmp_path / "m.onnx"
    f.write_bytes(tiny_onnx_bytes())
    spec = resolve_model("onnxruntime", str(f))
    assert spec.kind == "onnx" and spec.sha256 and len(spec.sha256) == 64


@pytest.mark.parametrize(
    ("name", "content", "backend", "needle"),
    [
        ("missing.onnx", None, "onnxruntime", "not found"),
        ("model.pt", b"x", "onnxruntime", "unknown file type"),
        ("model.plan", b"x", "onnxruntime", "needs an ONNX model"),
    ],
)
def test_resolve_model_errors(
    tmp_path: Path, name: str, content: bytes | None, backend: str, needle: str
) -> None:
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ModelError, match=needle) as err:
        resolve_model(backend, str(p))
    assert err.value.exit_code == 2 and err.value.hint


class _StopError(Exception):
    pass


@pytest.mark.parametrize("preset", [None, "/elsewhere"])
def test_torch_compile_cache_dir_is_set_before_torch_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset: str | None
) -> None:
    """Inductor writes its default cache dir into the environment the first time anything asks
    (on the H100 an eager model build did): ours must be in place before torch is imported,
    and a directory the user set must win."""
    import infergy.runners.backends.torch_backend as tb  # noqa: PLC0415 (torch-free until load)

    if preset is None:
        monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    else:
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", preset)
    seen: list[str | None] = []

    def fake_import() -> None:
        import os  # noqa: PLC0415

        seen.append(os.environ.get("TORCHINDUCTOR_CACHE_DIR"))
        raise _StopError

    monkeypatch.setattr(tb, "import_torch", fake_import)
    cfg = WorkloadConfig(backend="torch", precision="fp16", gpus=(0,), compile=True,
                         cache_dir=tmp_path)  # fmt: skip
    with pytest.raises(_StopError):
        tb.TorchBackend(cfg, resolve_model("torch", "resnet50"), 0).load()
    assert seen == [preset or str(tmp_path / "torchinductor")]
