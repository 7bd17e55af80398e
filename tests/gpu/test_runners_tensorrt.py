"""TensorRT through the runners on a real GPU (skipped unless `tensorrt` and torch import).

Builds the tiny ONNX model into an fp16 plan (cached), runs a short Offline LoadGen run,
loads the plan again from the cache, and checks a wrong-GPU sidecar is refused.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorrt")
pytest.importorskip("mlperf_loadgen")

from infergy.core.clock import SessionClock  # noqa: E402
from infergy.errors import PlanMismatchError  # noqa: E402
from infergy.runners import Workload, WorkloadConfig  # noqa: E402
from infergy.runners.backends import _onnx_for  # noqa: E402
from infergy.runners.backends.tensorrt import TensorRTBackend  # noqa: E402
from infergy.runners.backends.trt_plan import sidecar_path  # noqa: E402
from infergy.runners.models import ModelSpec, resolve_model  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]  # fmt: skip


def test_tiny_fp16_plan_offline_then_cache_then_mismatch(tmp_path: Path) -> None:
    cfg = WorkloadConfig(backend="tensorrt", model="tiny", precision="fp16", gpus=(0,),
                         batch_size=32, duration_s=2.0, cache_dir=tmp_path / "cache")  # fmt: skip

    async def go() -> tuple[object, dict]:
        wl = await Workload.open(cfg, SessionClock(), tmp_path / "out")
        try:
            await wl.warmup(1.0)
            return await wl.run(), wl.describe()
        finally:
            await wl.aclose()

    out, desc = asyncio.run(go())
    assert out.validity == "VALID", out.problems  # type: ignore[attr-defined]
    plan = Path(desc["per_device"][0]["plan"])
    assert plan.is_file() and sidecar_path(plan).is_file()

    onnx_spec = _onnx_for(cfg, resolve_model("tensorrt", "tiny"), cfg.resolved_cache_dir)
    again = TensorRTBackend(cfg, onnx_spec, 0)
    again.load()
    again.infer(7)
    assert any("from cache" in n for n in again.describe()["notes"])
    again.close()

    side = json.loads(sidecar_path(plan).read_text())
    side["compute_capability"] = "1.0"
    user_plan = tmp_path / "user.plan"
    user_plan.write_bytes(plan.read_bytes())
    sidecar_path(user_plan).write_text(json.dumps(side))
    bad = TensorRTBackend(cfg, ModelSpec("user.plan", "plan", user_plan, "x"), 0)
    with pytest.raises(PlanMismatchError, match=r"compute capability 1\.0"):
        bad.load()
