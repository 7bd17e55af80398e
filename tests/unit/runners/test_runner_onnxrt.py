from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from infergy.errors import ModelError, PrecisionError, WorkloadError
from infergy.runners import WorkloadConfig
from infergy.runners.backends import create_backend
from infergy.runners.backends.onnxrt import OnnxRuntimeBackend
from infergy.runners.engine import Engine, tight_loop
from infergy.runners.models import ModelSpec, materialize_tiny, resolve_model, tiny_onnx_bytes


def _backend(tmp_path: Path, **kw: object) -> OnnxRuntimeBackend:
    cfg = WorkloadConfig(backend="onnxruntime", cache_dir=tmp_path, intra_op_threads=1, **kw)  # type: ignore[arg-type]
    b = create_backend(cfg, resolve_model("onnxruntime", cfg.model), None)
    assert isinstance(b, OnnxRuntimeBackend)
    return b


def test_tiny_runs_every_batch_size(tmp_path: Path) -> None:
    b = _backend(tmp_path, batch_size=8)
    b.load()
    for n in (1, 3, 8):
        b.infer(n)
    assert b.limits().max_batch == 8 and b.limits().sample_shape == (3, 32, 32)
    d = b.describe()
    assert d["providers"] == ["CPUExecutionProvider"] and d["model"] == "tiny"
    st = tight_loop([b], batch=8, workers_per_device=2, duration_s=0.1)
    assert st.calls >= 3 and st.samples == 8 * st.calls and st.median_ns > 0
    b.close()


def test_fp16_model_runs(tmp_path: Path) -> None:
    b = _backend(tmp_path, precision="fp16", batch_size=2)
    b.load()
    b.infer(2)
    assert b.describe()["precision"] == "fp16"


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_unsupported_precision(tmp_path: Path, precision: str) -> None:
    with pytest.raises(PrecisionError) as err:
        _backend(tmp_path, precision=precision).load()
    assert err.value.exit_code == 2


def test_fp32_model_with_fp16_asked(tmp_path: Path) -> None:
    spec = materialize_tiny(tmp_path)
    b = OnnxRuntimeBackend(spec, precision="fp16", batch_size=1)
    with pytest.raises(PrecisionError, match="takes fp32 input"):
        b.load()


def test_garbage_onnx_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    b = OnnxRuntimeBackend(ModelSpec("bad.onnx", "onnx", bad), precision="fp32", batch_size=1)
    with pytest.raises(ModelError, match="cannot load") as err:
        b.load()
    assert err.value.hint


def test_fixed_batch_model_refuses_a_larger_batch(tmp_path: Path) -> None:
    model = onnx.load_from_string(tiny_onnx_bytes())
    for vi in (model.graph.input[0], model.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_value = 4
    path = tmp_path / "fixed.onnx"
    onnx.save(model, path)
    b = OnnxRuntimeBackend(ModelSpec("fixed.onnx", "onnx", path), precision="fp32", batch_size=8)
    with pytest.raises(WorkloadError, match="fixed batch of 4"):
        b.load()


def test_gpu_without_cuda_provider(tmp_path: Path) -> None:
    spec = materialize_tiny(tmp_path)
    b = OnnxRuntimeBackend(spec, precision="fp32", batch_size=1, gpu=0)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(WorkloadError, match="no CUDA execution provider"):
        b.load()


@pytest.mark.parametrize("backend", ["torch", "tensorrt"])
def test_gpu_backends_need_a_gpu(tmp_path: Path, backend: str) -> None:
    cfg = WorkloadConfig(backend=backend, cache_dir=tmp_path)
    with pytest.raises(WorkloadError, match="no GPU was given"):
        create_backend(cfg, resolve_model(backend, "auto"), None)


def test_engine_open_failure_releases_everything(tmp_path: Path) -> None:
    cfg = WorkloadConfig(backend="onnxruntime", precision="int8", cache_dir=tmp_path)
    engine = Engine(cfg)
    with pytest.raises(PrecisionError):
        engine.open()
    assert engine.backends == []
