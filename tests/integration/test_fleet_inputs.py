"""Bad input to ``infergy fleet``: one clear line each, exit 2, nothing left behind (issue 15).

A real mosquitto (``$SYS`` every second, to count the sessions left on it) and light stand-in
nodes (:mod:`tests.integration.fleet_standin`); the command runs as a user runs it, a
subprocess. Unknown node patterns, a job file that does not validate (the same messages as
``POST /v1/runs`` gives, checked against the real API), and a node that rejects the job (the
node that accepted it is sent ``cmd/cancel``). A broker that refuses the credentials is in
test_fleet_security.py, against the shipped config. After each, the broker holds no session
of the controller: nothing stays subscribed or queued for it; and a campaign that ends
incomplete keeps one (for ``--resume``), which shows the count is read right.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from infergy.daemon.http_api import build_app
from infergy.daemon.scheduler import JobScheduler
from tests.integration.fleet_standin import StandIn, standins
from tests.integration.mosquitto import Mosquitto, running_broker
from tests.integration.serve_support import QUICK_JOB, ROOT
from tests.unit.daemon.fakes import FakeSessions

pytestmark = pytest.mark.integration
BAD_JOB = {"scenario": "multi-stream", "duration": -1, "meter": "nvml", "bogus": 1}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    with running_broker(tmp_path_factory.mktemp("broker"), extra_conf="sys_interval 1") as b:
        yield b


def _fleet(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="300")
    return subprocess.run([sys.executable, "-m", "infergy", "fleet", *args], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def _error(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The error line and its hint (the last lines of stderr); exit 2, no traceback."""
    assert done.returncode == 2, f"rc {done.returncode}: {done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    assert len(lines) - at <= 2, f"more than the line and a hint: {lines[at:]}"
    return lines[at:]


async def _sessions_left(port: int, expect: int) -> int:
    """Persistent sessions of disconnected clients on the broker now (``$SYS``).

    mosquitto publishes a ``$SYS`` value (retained) at the first ``sys_interval`` (1 s) after
    it changed: after 2.5 s the retained one is the count now, unless the machine is loaded,
    so a value other than ``expect`` is waited on for a few more seconds; the last one seen.
    """
    await asyncio.sleep(2.5)
    last = -1
    async with aiomqtt.Client("127.0.0.1", port, timeout=3) as probe:
        await probe.subscribe("$SYS/broker/clients/disconnected")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                async for m in probe.messages:
                    last = int(m.payload)  # type: ignore[arg-type]
                    if last == expect:
                        break
    return last


def _job(tmp: Path, body: dict[str, Any], name: str = "job.json") -> Path:
    path = tmp / name
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def _broker_args(broker: Mosquitto) -> tuple[str, str]:
    return ("--broker", f"127.0.0.1:{broker.port}")


def test_unknown_node_patterns_are_one_line_and_leave_no_session(
    broker: Mosquitto, tmp_path: Path
) -> None:
    job = _job(tmp_path, QUICK_JOB)

    async def scenario() -> tuple[Any, Any, int]:
        async with standins([StandIn(broker.port, "edge-01"), StandIn(broker.port, "edge-02")]):
            status = await asyncio.to_thread(
                _fleet, tmp_path, "status", "--nodes", "edge-01,lab-*", *_broker_args(broker)
            )
            run = await asyncio.to_thread(_fleet, tmp_path, "run", "--nodes", "lab-*",
                                          "--job", str(job), *_broker_args(broker))  # fmt: skip
            return status, run, await _sessions_left(broker.port, 0)

    status, run, left = asyncio.run(scenario())
    where = f"127.0.0.1:{broker.port}"
    assert _error(status)[0] == f"error: no node on the broker at {where} matches 'lab-*'"
    line = _error(run)[0]
    assert line == (
        f"error: no node on the broker at {where} matches 'lab-*' (nodes seen: edge-01, edge-02)"
    ), line
    assert not list(tmp_path.glob("fleet-*")), "a refused campaign left a folder"
    assert left == 0, f"{left} session(s) left on the broker"


def test_a_job_file_that_does_not_validate_gets_the_errors_of_post_v1_runs(
    tmp_path: Path,
) -> None:
    async def api_errors() -> list[dict[str, Any]]:
        app = build_app(JobScheduler(FakeSessions(), max_queued=1), token=None,
                        max_body_bytes=4096)  # fmt: skip
        async with TestClient(TestServer(app)) as client:
            r = await client.post("/v1/runs", json=BAD_JOB)
            assert r.status == 422, await r.text()
            return list((await r.json())["errors"])

    errors = asyncio.run(api_errors())
    assert len(errors) >= 3, errors
    # no broker at all: the file is refused before anything connects
    done = _fleet(tmp_path, "run", "--nodes", "edge-*", "--job", str(_job(tmp_path, BAD_JOB)),
                  "--broker", "127.0.0.1:1")  # fmt: skip
    line, hint = _error(done)
    assert line.startswith(f"error: job file {tmp_path / 'job.json'} is not a valid run: "), line
    for e in errors:
        where = ".".join(str(x) for x in e["loc"][1:]) or "(body)"
        assert f"{where}: {e['msg']}" in line, f"{e} not in: {line}"
    assert "POST /v1/runs" in hint, hint
    for body, says in (("[1, 2]", "Input should be an object"), ("{", "Invalid JSON")):
        path = tmp_path / "raw.json"
        path.write_text(body)
        done = _fleet(tmp_path, "run", "--nodes", "e", "--job", str(path), "--broker", "h:1")
        assert says in _error(done)[0], done.stderr
    done = _fleet(tmp_path, "run", "--nodes", "e", "--job", str(tmp_path / "none.json"),
                  "--broker", "h:1")  # fmt: skip
    assert _error(done)[0] == f"error: job file {tmp_path / 'none.json'}: No such file or directory"


def test_a_node_rejecting_the_job_cancels_it_elsewhere_in_one_line(
    broker: Mosquitto, tmp_path: Path
) -> None:
    job = _job(tmp_path, QUICK_JOB)
    ok = StandIn(broker.port, "r-ok", job_s=30)  # still running when the cancel comes
    refuses = StandIn(broker.port, "r-no", behaviour="reject")

    async def scenario() -> tuple[Any, int]:
        async with standins([ok, refuses]):
            done = await asyncio.to_thread(
                _fleet, tmp_path, "run", "--nodes", "r-*", "--job", str(job), "--out", "c",
                *_broker_args(broker),
            )  # fmt: skip
            return done, await _sessions_left(broker.port, 0)

    done, left = asyncio.run(scenario())
    line, hint = _error(done)
    assert line == (
        "error: 1 node(s) rejected the job (r-no); it was cancelled on the nodes that had "
        "accepted it"
    ), line
    assert "r-no: rejected the job: this service does not sample nvml" in done.stderr, done.stderr
    assert "say why each refused it" in hint, hint
    assert [j["state"] for j in ok.jobs] == ["aborted"], ok.jobs  # called off on r-ok
    state = json.loads((tmp_path / "c" / "campaign.json").read_text())
    assert state["outcome"] == "rejected", state
    assert left == 0, f"{left} session(s) left on the broker"


def test_an_incomplete_campaign_keeps_its_session_for_resume(tmp_path: Path) -> None:
    job = _job(tmp_path, QUICK_JOB)

    async def scenario(broker: Mosquitto) -> tuple[Any, int]:
        async with standins([StandIn(broker.port, "m-1", behaviour="silent")]):
            done = await asyncio.to_thread(
                _fleet, tmp_path, "run", "--nodes", "m-1", "--job", str(job), "--out", "c",
                "--accept-timeout", "0.5", *_broker_args(broker),
            )  # fmt: skip
            return done, await _sessions_left(broker.port, 1)

    with running_broker(tmp_path / "own", extra_conf="sys_interval 1") as own:  # its own
        done, left = asyncio.run(scenario(own))
    assert done.returncode == 1, done.stderr  # ran, but not every node delivered
    assert "not every node delivered a result: m-1 (no reply)" in done.stderr, done.stderr
    assert left == 1, "the incomplete campaign's session (for --resume) is not counted"
