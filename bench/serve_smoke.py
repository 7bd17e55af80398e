"""Smoke run of ``infergy serve`` on this machine: start it, submit one job over HTTP, keep
``/metrics`` and the result, stop it with SIGTERM. Used on a lent GPU to see the service with
real NVML (read-only); also runs on a CPU machine (emulated analyzer, labelled SIMULATED).

Usage: python bench/serve_smoke.py --out DIR [--job '{"backend": "torch", ...}']
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, raw.decode() if path == "/metrics" else json.loads(raw)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--job", default='{"scenario": "single-stream", "duration": 10, "idle": 3, "warmup": 3}'
    )
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    with (out / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infergy",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--state-dir",
                str(out / "state"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        for _ in range(150):
            try:
                if call(port, "GET", "/healthz")[0] in (200, 503):
                    break
            except OSError:
                time.sleep(0.2)
        time.sleep(3)
        (out / "metrics_idle.txt").write_text(call(port, "GET", "/metrics")[1])
        status, body = call(port, "POST", "/v1/runs", json.loads(args.job))
        print("submit:", status, body)
        run_id = body["run_id"]
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            status, job = call(port, "GET", f"/v1/runs/{run_id}")
            if job.get("state") not in ("queued", "running"):
                break
            time.sleep(1)
        (out / "job.json").write_text(json.dumps(job, indent=2))
        (out / "metrics_after.txt").write_text(call(port, "GET", "/metrics")[1])
        print("state:", job.get("state"), "summary:", json.dumps(job.get("summary"))[:600])
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(120)
        print("serve exit code:", rc)
    return 0 if job.get("state") in ("ok", "degraded") and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
