"""The offline install (issue 15, item 1; docs/install.md): a wheelhouse, then ``--no-index``.

``scripts/wheelhouse.py --from-env`` repacks this environment's installed dependencies and
builds infergy's wheel from this checkout (pip fetches setuptools and wheel for that build:
the only use of the network, skipped without one). A fresh virtual environment, with no
``PYTHONPATH`` and no index, installs infergy from the folder alone; its ``infergy doctor``
passes and a short ``infergy run`` (real LoadGen and ONNX Runtime, simulated power) is ok.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _index_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


def _run(cmd: list[str], cwd: Path, timeout_s: float, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, cwd=cwd, env=clean | env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)  # fmt: skip
    assert done.returncode == 0, f"{' '.join(cmd)}: rc {done.returncode}\n{done.stderr[-3000:]}"
    return done.stdout


def test_a_wheelhouse_installs_with_no_index_and_runs(tmp_path: Path) -> None:
    if not _index_reachable():
        pytest.skip("building infergy's wheel fetches setuptools and wheel: no network here")
    house = tmp_path / "wheelhouse"
    _run([sys.executable, str(ROOT / "scripts" / "wheelhouse.py"), str(house), "--from-env"],
         tmp_path, 300)  # fmt: skip
    names = {p.name.split("-")[0].lower() for p in house.glob("*.whl")}
    assert {"infergy", "numpy", "onnxruntime", "mlcommons_loadgen", "aiomqtt"} <= names, names
    venv = tmp_path / "opt-infergy"
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(venv)], tmp_path, 120)
    _run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-index", "--find-links",
          str(house), "--no-compile", "--disable-pip-version-check", "infergy"],
         tmp_path, 300)  # fmt: skip
    infergy = str(venv / "bin" / "infergy")
    where = _run([str(venv / "bin" / "python"), "-c", "import infergy; print(infergy.__file__)"],
                 tmp_path, 60)  # fmt: skip
    assert where.startswith(str(venv)), f"not the installed infergy: {where}"
    state = {"INFERGY_STORE__PATH": str(tmp_path / "store.db"), "COLUMNS": "120"}
    doctor = _run([infergy, "doctor"], tmp_path, 120, **state)
    assert "basics ok" in doctor, doctor
    out = tmp_path / "runs"
    _run([infergy, "run", "--scenario", "single-stream", "--duration", "1", "--idle", "0.5",
          "--warmup", "0.5", "--meter", "sim", "--out", str(out)], tmp_path, 180, **state)  # fmt: skip
    (result,) = out.glob("*/result.json")
    body = json.loads(result.read_text())
    assert body["status"] == "ok", body["status"]
    assert body["performance"]["samples_per_second"] > 0, body["performance"]
