"""How long ``infergy serve`` takes to stop on SIGTERM: idle, draining a job, aborting one.

    .venv/bin/python bench/serve_stop.py --repeat 5           # the recorded figures
    .venv/bin/python bench/serve_stop.py --repeat 1 --json    # a quick one

Each repetition starts a real mosquitto and a fresh ``infergy serve`` (``[meters]
simulated_gpus = 1``, the emulated analyzer in-process, MQTT on) per case, and times SIGTERM
to process exit:

- ``idle``: no job;
- ``draining``: a SingleStream job (ONNX Runtime, 5 s) in its measured phase, with
  ``stop_timeout_s = 30``: the job finishes, is analysed, stored, published, then the service
  exits (the figure includes the rest of the job; ``after_job_s`` is the time after it ended);
- ``aborting``: a 120-s job in its measured phase with ``stop_timeout_s = 3``: 3 s of grace,
  then the abort (the LoadGen process ended, the partial run analysed, stored, its files and
  plots written, published) and the exit (``after_grace_s`` = total - 3 s).

The unit's ``TimeoutStopSec`` is sized from these (systemd/infergy.service).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
JOB = {"backend": "onnxruntime", "scenario": "single-stream", "idle": 0.5, "warmup": 0.5}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _case(workdir: Path, mqtt_port: int, case: str) -> dict[str, Any]:
    port = free_port()
    stop_timeout_s = 3 if case == "aborting" else 30
    config = workdir / "infergy.toml"
    config.write_text(
        f'node_name = "stop"\n[store]\npath = "{workdir / "store.db"}"\n'
        f'[output]\ndir = "{workdir / "out"}"\n[meters]\nrapl = false\nsimulated_gpus = 1\n'
        f'[serve]\nlisten = "127.0.0.1:{port}"\nstop_timeout_s = {stop_timeout_s}\n'
        f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {mqtt_port}\n'
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    with (workdir / f"serve-{case}.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "infergy", "serve", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            health = _http(port, "GET", "/healthz")
            if health["components"].get("meters", {}).get("state") == "up":
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError((workdir / f"serve-{case}.log").read_text())
        time.sleep(0.1)
    job_ended: float | None = None
    if case != "idle":
        duration = 5 if case == "draining" else 120
        run_id = _http(port, "POST", "/v1/runs", JOB | {"duration": duration})["run_id"]
        records = workdir / "out" / run_id / "runner" / "queries-run.bin"
        while not (records.is_file() and records.stat().st_size):
            time.sleep(0.05)
        time.sleep(1.0)  # into the measured phase
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    if case == "draining":  # when did the job end? (its result is stored then)
        while proc.poll() is None and job_ended is None:
            with contextlib.suppress(OSError):
                state = _http(port, "GET", f"/v1/runs/{run_id}")["state"]
                if state not in ("queued", "running"):
                    job_ended = time.monotonic()
            time.sleep(0.02)
    rc = proc.wait(300)
    exited = time.monotonic()
    took = exited - t0
    out: dict[str, Any] = {"case": case, "stop_s": took, "rc": rc}
    if case == "draining" and job_ended is not None:
        out["after_job_s"] = exited - job_ended
    if case == "aborting":
        out["after_grace_s"] = took - stop_timeout_s
    return out


def one_round(cases: list[str]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        mqtt_port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\nuser root\n")
        broker = subprocess.Popen(
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(0.3)
            return [_case(workdir, mqtt_port, case) for case in cases]
        finally:
            broker.kill()
            broker.wait()


def main() -> None:
    """Run and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--cases", default="idle,draining,aborting")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    cases = a.cases.split(",")
    runs = [r for _ in range(a.repeat) for r in one_round(cases)]
    median = {
        case: {
            key: statistics.median(r[key] for r in runs if r["case"] == case and key in r)
            for key in ("stop_s", "after_job_s", "after_grace_s")
            if any(key in r for r in runs if r["case"] == case)
        }
        for case in cases
    }
    summary = {"runs": runs, "median": median}
    print(json.dumps(summary, indent=2) if a.json else median)


if __name__ == "__main__":
    main()
