"""On a GPU, `infergy run`'s defaults measure what the hardware can do, for as long as asked.

Issue 13 (sections 2 and 5): the defaults were fp32 batch 1 (4.3 samples/s/W on the H200 where
fp16 batch 256 gives about 24), and an Offline window could be 0.5-3.8x ``--duration``. A real
session with the defaults (torch ResNet-50, NVML, the emulated analyzer), ~1.5 min on an H200.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("mlperf_loadgen")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device for torch"),
]
ROOT = Path(__file__).resolve().parents[2]
DURATION_S = 30.0


def test_default_offline_session_is_fp16_batch_256_valid_and_within_20_percent(
    tmp_path: Path,
) -> None:
    config = tmp_path / "infergy.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "store.db"}"\n[output]\ndir = "{tmp_path / "out"}"\n',
        encoding="utf-8",
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    cmd = [sys.executable, "-m", "infergy", "run", "--config", str(config), "--gpus", "0",
           "--duration", f"{DURATION_S:g}", "--idle", "3", "--warmup", "10", "--json"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert (r["backend"], r["model"], r["precision"], r["batch_size"]) == (
        "torch",
        "resnet50",
        "fp16",
        256,
    )
    assert r["loadgen"]["validity"] == "VALID", r["problems"]
    window_s = r["window"]["duration_s"]
    assert DURATION_S <= window_s <= 1.2 * DURATION_S, (window_s, r["loadgen"].get("attempts"))
    assert r["performance"]["queries"] == 1
    gpu = r["efficiency"]["gpu0"]
    print(json.dumps({"window_s": window_s, "attempts": r["loadgen"].get("attempts"),
                      "samples_per_second": r["performance"]["samples_per_second"],
                      "gpu0": gpu}, indent=1))  # fmt: skip
    assert gpu["samples_per_second_per_watt"] > 10  # fp32 batch 1 gave 4.3 on the H200
