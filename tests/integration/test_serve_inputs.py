"""Inputs never crash the printer or the API (issue 20, item 7), against real processes.

Markup-like text in a config value, key or path is printed as written (it crashed rich's markup
parser with a traceback); a job body with a non-string meter is a 422 (a 500 from an
``unhashable type`` inside the job model); a client that hangs up mid-body is one INFO line,
not an ERROR with a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.serve_support import ROOT, ServeProcess

pytestmark = pytest.mark.integration


def _infergy(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "infergy", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("toml", "shown"),
    [
        ('[serve]\nlisten = "[/x]:8765"\n', "'[/x]:8765'"),
        ('[serve]\n"[/bold]" = 1\n', "[/bold]"),
    ],
    ids=["value", "key"],
)
def test_markup_in_the_config_is_printed_as_written(tmp_path: Path, toml: str, shown: str) -> None:
    config = tmp_path / "infergy.toml"
    config.write_text(toml, encoding="utf-8")
    out = _infergy("serve", "--config", str(config))
    assert "Traceback" not in out.stderr and "MarkupError" not in out.stderr, out.stderr
    assert out.returncode == 2, out.stderr
    first = out.stderr.splitlines()[0]
    assert first.startswith("error: config ") and shown in first, out.stderr  # one whole line


def test_markup_in_a_path_is_printed_as_written(tmp_path: Path) -> None:
    missing = tmp_path / "[/x]" / "infergy.toml"
    out = _infergy("serve", "--config", str(missing))
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 2 and str(missing) in out.stderr.replace("\n", ""), out.stderr


def _hang_up_mid_body(port: int, chunked: bool) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        head = "Transfer-Encoding: chunked" if chunked else "Content-Length: 1000"
        body = b'5\r\n{"sce' if chunked else b'{"scen'
        s.sendall(
            f"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}"
            "\r\n\r\n".encode()
            + body
        )


def test_bad_bodies_are_field_errors_and_hang_ups_are_not_errors(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path).start()
    try:
        for meter in ([{"a": 1}], [1], [["nvml"]], "nvml"):
            status, body = serve.request("POST", "/v1/runs", json.dumps({"meter": meter}).encode())
            assert status == 422, (meter, status, body)
            assert body["errors"][0]["loc"][:2] == ["body", "meter"], body
        # a valid meter list is read as JSON sends it (an array): this service has no RAPL,
        # so the job is refused at once, saying so (never accepted and failed later)
        status, body = serve.request("POST", "/v1/runs", b'{"meter": ["rapl"], "duration": 1}')
        assert status == 422 and body["errors"][0]["type"] == "not_runnable_here", body
        assert "does not sample rapl" in body["errors"][0]["msg"], body
        assert serve.get("/v1/runs")[1]["runs"] == [], "a refused job was listed"
        for chunked in (False, True):
            _hang_up_mid_body(serve.port, chunked)
        time.sleep(0.5)
        assert serve.get("/healthz")[1]["components"]["api"]["state"] == "up"  # still serving
    finally:
        rc, _ = serve.stop()
    log = serve.log()
    assert rc == 0, log
    assert "Traceback" not in log and "ERROR" not in log, log
    assert log.count("the client hung up before the request was complete") == 2, log
