"""A campaign across real ``infergy serve`` nodes through one real mosquitto (issue 15).

Three nodes on loopback (their own state folders, HTTP ports and ``node_name``; simulated
GPUs, real LoadGen and ONNX Runtime on the CPU), one broker, and ``infergy fleet run`` as a
user runs it. Node n3 is busy with a job that only idles (so it costs no CPU), the campaign's
job queued behind it, when it is SIGKILLed: the campaign completes for n1 and n2, reports n3
lost (exit 1, the resume command as the hint), and once n3 restarts (its journal gives the
queued job back and it runs) ``fleet run --resume`` receives n3's result and completes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.mosquitto import running_broker
from tests.integration.serve_support import QUICK_JOB, ROOT, ServeProcess

pytestmark = pytest.mark.integration
NODES = ("n1", "n2", "n3")
BLOCKER = QUICK_JOB | {"idle": 60.0}
"""A job that idles for a minute: n3 is busy (the campaign's job queued) but the CPU is not."""


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def _fleet(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", COLUMNS="200")
    return subprocess.Popen(
        [sys.executable, "-m", "infergy", "fleet", *args], env=env, cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str], timeout_s: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"infergy fleet did not finish in {timeout_s} s:\n{err}") from None
    return proc.returncode, out, err


def _runs(node: ServeProcess) -> list[dict[str, Any]]:
    status, body = node.get("/v1/runs")
    return list(body["runs"]) if status == 200 else []


@contextlib.contextmanager
def _nodes(tmp: Path, port: int) -> Iterator[dict[str, ServeProcess]]:
    for n in NODES:
        (tmp / n).mkdir()
    nodes = {n: ServeProcess(tmp / n, mqtt_port=port, node=n, stop_timeout_s=2) for n in NODES}
    try:
        for node in nodes.values():  # started together: their imports overlap
            node.popen()
        for node in nodes.values():
            node.start_wait()
        yield nodes
    finally:
        for node in nodes.values():
            node.ensure_stopped()


def test_a_campaign_completes_without_a_dead_node_and_resumes_for_it(tmp_path: Path) -> None:
    with running_broker(tmp_path / "broker") as broker, _nodes(tmp_path, broker.port) as nodes:
        config = tmp_path / "controller.toml"
        config.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ntimeout_s = 5.0\n')
        job = tmp_path / "job.json"
        job.write_text(json.dumps(QUICK_JOB))
        campaign = tmp_path / "campaign"
        blocker = nodes["n3"].submit(BLOCKER)
        _wait(lambda: _runs(nodes["n3"])[0]["state"] == "running", 20, "n3's blocker to run")
        # every node online on the broker before the campaign (a node that is not is not sent)
        status = subprocess.run(
            [sys.executable, "-m", "infergy", "fleet", "status", "--json", "--config", str(config)],
            env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
            timeout=30, check=False,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert {r["node"]: r["state"] for r in json.loads(status.stdout)} == dict.fromkeys(
            NODES, "online"
        ), status.stdout

        run = _fleet("run", "--nodes", "n*", "--job", str(job), "--out", str(campaign),
                     "--offline-grace", "0", "--config", str(config), cwd=tmp_path)  # fmt: skip
        # n3 accepted the job (queued behind its blocker, journalled before it replied): kill it
        _wait(lambda: len(_runs(nodes["n3"])) == 2, 30, "n3 to accept the campaign's job")
        queued = next(r for r in _runs(nodes["n3"]) if r["run_id"] != blocker)
        assert queued["state"] == "queued", queued
        nodes["n3"].kill()
        rc, out, err = _finish(run, 60)
        assert rc == 1, f"rc {rc}\n{err}"
        assert "not every node delivered a result: n3 (lost)" in err, err
        assert f"infergy fleet run --resume {campaign}" in err, err
        state = json.loads((campaign / "campaign.json").read_text())
        phases = {n: r["phase"] for n, r in state["nodes"].items()}
        assert phases == {"n1": "done", "n2": "done", "n3": "lost"}, phases
        assert state["nodes"]["n3"]["run_id"] == queued["run_id"], state["nodes"]["n3"]
        rows = {
            r["node"]: r for r in json.loads((campaign / "comparison.json").read_text())["rows"]
        }
        for n in ("n1", "n2"):
            assert rows[n]["samples_per_second"] > 0, rows[n]  # a measured figure, not a zero
        assert rows["n3"]["samples_per_second"] is None, rows["n3"]  # absent, never 0

        # n3 comes back: its journal gives back the queued job, which runs; the resumed
        # campaign (its session kept by the broker) receives the result
        nodes["n3"].start()
        resumed = _fleet("run", "--resume", str(campaign), "--config", str(config),
                         cwd=tmp_path)  # fmt: skip
        rc, out, err = _finish(resumed, 60)
        assert rc == 0, f"rc {rc}\n{err}\n{nodes['n3'].log()[-3000:]}"
        assert all(n in out for n in NODES), out  # the comparison table, every node in it
        state = json.loads((campaign / "campaign.json").read_text())
        assert state["outcome"] == "complete", state
        assert {n: r["phase"] for n, r in state["nodes"].items()} == dict.fromkeys(NODES, "done")
        result = json.loads((campaign / "results" / "n3.json").read_text())
        assert result["run_id"] == queued["run_id"] and result["status"] == "ok", result["status"]
        rows = {
            r["node"]: r for r in json.loads((campaign / "comparison.json").read_text())["rows"]
        }
        assert set(rows) == set(NODES) and rows["n3"]["samples_per_second"] > 0, rows["n3"]
        # the blocker was interrupted by the kill: it came back aborted, not as a result
        assert nodes["n3"].wait_state(blocker, {"aborted"}, timeout_s=5)["state"] == "aborted"
