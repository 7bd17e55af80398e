"""What of the TensorRT backend runs with only the lean runtime on a GPU (issue 5).

1. infergy's import detection picks ``tensorrt_lean``; its version; a ``Runtime`` is created
   on the GPU (the step that segfaults without one).
2. Deserializing bytes that are not a plan: TensorRT's own refusal (returns None), which the
   backend maps to a clear error.
3. The backend asked to build from ONNX with only the lean runtime: infergy's clear error
   (exit code 2, with a hint), not a crash.
No plan is deserialized for real (none can be built here: the builder is not installable).

Usage: PYTHONPATH=. python bench/trt_lean_check.py
"""

from __future__ import annotations

import json
import sys

from infergy.errors import InfergyError
from infergy.runners.backends.trt_plan import find_trt_module, import_trt

out: dict[str, object] = {"module": find_trt_module()}
trt = import_trt(need_builder=False)
out["version"] = getattr(trt, "__version__", None)
logger = trt.Logger(trt.Logger.WARNING)
runtime = trt.Runtime(logger)
out["runtime_created"] = runtime is not None
engine = runtime.deserialize_cuda_engine(b"not a plan" * 100)
out["garbage_plan_deserializes_to"] = repr(engine)
try:
    import_trt(need_builder=True)
    out["builder"] = "available"
except InfergyError as err:
    out["builder"] = f"refused as expected: {err} (exit {err.exit_code}; hint: {err.hint})"
print(json.dumps(out, indent=2))
sys.exit(0)
