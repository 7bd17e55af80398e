"""Liveness tells the truth (issue 20, item 6): an unplugged analyzer is down, and its old
reading is not exported.

A real chain: ``infergy analyzer-sim`` behind ``infergy ptd-bridge`` (processes, a pty), and
``infergy serve`` measuring wall power through it. While the analyzer is unplugged the bridge
reports missed samples (-2): ``/healthz`` must say the meters are down and ``/metrics`` must
stop exporting the last reading (``infergy_power_watts`` absent, ``infergy_meter_up 0``);
plugged back in, both recover.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.serve_support import AnalyzerChain, ServeProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WATTS = 199.997


def _metrics(serve: ServeProcess) -> str:
    url = f"http://127.0.0.1:{serve.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def _ac(text: str, name: str) -> float | None:
    found = re.search(rf'^{name}\{{[^}}]*source="ac"[^}}]*\}} (\S+)$', text, re.M)
    return None if found is None else float(found.group(1))


def _meters(serve: ServeProcess) -> str:
    return str(serve.get("/healthz")[1]["components"]["meters"]["state"])


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.25)


def test_an_unplugged_analyzer_is_down_and_its_last_reading_is_not_exported(
    tmp_path: Path,
) -> None:
    chain = AnalyzerChain(tmp_path, watts=WATTS)
    serve = None
    try:
        serve = ServeProcess(
            tmp_path, meters=f'rapl = false\nptd = "127.0.0.1:{chain.port}"\n'
        ).start()
        live = lambda: _ac(_metrics(serve), "infergy_power_watts")  # noqa: E731
        _wait(lambda: live() is not None and abs(live() - WATTS) < 1, 30, "live wall power")
        assert _meters(serve) == "up"
        chain.command("fault unplug")
        # the bridge sends -2 each second; stale after 5 s without a reading
        _wait(lambda: _meters(serve) == "down", 15, "/healthz to say the meters are down")
        text = _metrics(serve)
        assert _ac(text, "infergy_power_watts") is None, "the last reading is still exported"
        assert _ac(text, "infergy_meter_up") == 0.0, text
        chain.command("plug")
        _wait(lambda: _meters(serve) == "up", 30, "the meters to come back")
        assert abs((live() or 0) - WATTS) < 1
    finally:
        if serve is not None:
            rc, _ = serve.stop()
            assert rc == 0, serve.log()
        chain.close()
    assert "Traceback" not in serve.log()
