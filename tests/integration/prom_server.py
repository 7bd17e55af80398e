"""A real Prometheus server for tests: temp config and data, free loopback port, HTTP API.

Reusable by any test that has a ``/metrics`` endpoint to check (``infergy serve`` included):

    with start_prometheus("127.0.0.1:9464", tmp_path) as prom:
        series = prom.wait_for_data('infergy_power_watts{source="gpu0"}')

Prometheus shows a first sample only ~5 s after it starts, even scraping every second (its
scrape manager applies target updates every 5 s; shared/research/libs.md), so waits poll the
HTTP API for up to 20 s. The tests that need it skip, with the reason, when the binary is
missing (``make test`` installs it: scripts/system-deps.sh).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIRST_SAMPLE_TIMEOUT_S = 20.0


def prometheus_binary() -> str | None:
    """The prometheus executable, or None."""
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )


def require_prometheus() -> str:
    """The prometheus executable; skips the calling test (saying why) when it is absent."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus; make system-deps)")
    return binary


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusError(AssertionError):
    """Prometheus answered an API call with something other than success."""


class PrometheusServer:
    """One Prometheus process scraping ``target`` every ``scrape_interval_s``.

    Args:
        binary: the prometheus executable.
        workdir: where the config, the TSDB and the log go (a test's tmp_path).
        target: ``host:port`` serving ``/metrics``.
        scrape_interval_s: scrape (and evaluation) interval.
        config: a whole ``prometheus.yml`` instead (``target`` is then only its name).
    """

    def __init__(
        self,
        binary: str,
        workdir: Path,
        target: str,
        *,
        scrape_interval_s: float = 1.0,
        config: str | None = None,
    ) -> None:
        self.binary, self.workdir, self.target = binary, workdir, target
        self.config = config
        self.scrape_interval_s = scrape_interval_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        """Write the config, start the server, wait until it is ready (a few hundred ms)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        interval = f"{round(self.scrape_interval_s * 1000)}ms"
        config = self.workdir / "prometheus.yml"
        config.write_text(
            self.config
            or "global:\n"
            f"  scrape_interval: {interval}\n"
            f"  evaluation_interval: {interval}\n"
            "scrape_configs:\n"
            "  - job_name: infergy\n"
            f"    scrape_timeout: {interval}\n"
            f"    static_configs: [{{targets: ['{self.target}']}}]\n"
        )
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                msg = f"prometheus exited with {self._proc.returncode}: {self.log()}"
                raise RuntimeError(msg)
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r,
            ):
                if r.status == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        msg = f"prometheus not ready after 15 s: {self.log()}"
        raise RuntimeError(msg)

    def log(self) -> str:
        """The server's log so far (for failure messages)."""
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM (Prometheus exits in ms), then SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the HTTP API ---------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> tuple[int, dict[str, Any]]:
        """GET ``/api/v1/<path>``: (HTTP status, decoded JSON), errors included."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result list (``data.result``); raises unless it succeeded."""
        status, body = self.api("query", query=expr)
        if status != 200 or body.get("status") != "success":
            msg = f"query {expr!r}: HTTP {status}: {body}"
            raise PrometheusError(msg)
        result = body["data"]["result"]
        return result if isinstance(result, list) else [{"value": result}]

    def wait_for_data(
        self, expr: str, timeout_s: float = FIRST_SAMPLE_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """Poll an instant query until it returns something (fails with the server's view)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                _status, targets = self.api("targets")
                msg = f"no data for {expr!r} after {timeout_s} s; targets: {targets}; {self.log()}"
                raise PrometheusError(msg)
            time.sleep(0.25)


def values(result: list[dict[str, Any]]) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant vector as {sorted labels without name, job and instance: value}."""
    out = {}
    for item in result:
        labels = {
            k: v for k, v in item["metric"].items() if k not in ("__name__", "job", "instance")
        }
        out[tuple(sorted(labels.items()))] = float(item["value"][1])
    return out


@contextlib.contextmanager
def start_prometheus(
    target: str, workdir: Path, *, scrape_interval_s: float = 1.0
) -> Iterator[PrometheusServer]:
    """A running Prometheus scraping ``target`` (``host:port``); skips if it is not installed."""
    server = PrometheusServer(
        require_prometheus(), workdir, target, scrape_interval_s=scrape_interval_s
    )
    with server.start():
        yield server
