"""``infergy run --backend kserve|openai``: the real LoadGen against small real servers.

The servers (tests/integration/inference_servers.py) run in their own processes: a KServe v2
server in front of the built-in ``tiny`` ONNX model on ONNX Runtime, and an OpenAI-compatible
streaming server with known first-token and per-token delays. Each test runs the real
``infergy run`` (its LoadGen child process included) and checks what the server saw.
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

from tests.integration.inference_servers import running, stats

pytestmark = pytest.mark.integration


def _run(tmp_path: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "infergy.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "store.db"}"\n[output]\ndir = "{tmp_path / "out"}"\n'
        "[session]\ntail_s = 0.5\nplots = false\n[meters]\nrapl = false\n",
        encoding="utf-8",
    )
    env = {**os.environ, "INFERGY_CONFIG": str(config)}
    base = ["--meter", "sim", "--idle", "0", "--warmup", "1", "--json"]
    return subprocess.run(
        [sys.executable, "-m", "infergy", "run", *base, *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _result(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_offline_sends_every_sample_with_at_most_concurrency_in_flight(tmp_path, binary):
    flags = ["--binary"] if binary else []
    with running("kserve", *flags) as (_proc, port):
        done = _run(
            tmp_path, "--backend", "kserve", "--endpoint", f"http://127.0.0.1:{port}/v2/models/tiny",
            "--duration", "2", "--batch-size", "8", "--concurrency", "3",
        )  # fmt: skip
        served = stats(port)
    assert done.returncode == 0, done.stderr
    r = _result(done)
    assert r["status"] == "ok", r["problems"]
    assert r["backend"] == "kserve" and r["devices"] == ["server"]
    lg = r["loadgen"]
    assert lg["validity"] in ("VALID", "INVALID")  # LoadGen's timing verdict (a busy 2-core VM)
    samples = lg["effective"]["samples_per_query"]  # the one Offline query's samples
    assert r["performance"]["samples"] == samples > 0
    net = lg["network"]
    assert net["failed"] == 0 and net["server_lost"] is False and net["max_batch"] == 8
    assert net["answered"] == net["requests"] >= samples / 8
    assert served["samples"] >= samples  # every sample was sent (the warm-up's too)
    assert served["max_in_flight"] <= 3  # the concurrency limit, as the server saw it
    assert 1 <= served["connections"] <= 3  # kept alive and reused
    server = r["provenance"]["software"]["workload"]["per_device"][0]["server"]
    assert server["encoding"] == ("binary" if binary else "json")
    assert r["power"]["sim"]["simulated"] is True


def test_kserve_single_stream_and_server_scenarios(tmp_path):
    with running("kserve") as (_proc, port):
        url = f"http://127.0.0.1:{port}/v2/models/tiny"
        single = _run(tmp_path, "--backend", "kserve", "--endpoint", url, "--scenario",
                      "single-stream", "--duration", "2")  # fmt: skip
        server = _run(tmp_path, "--backend", "kserve", "--endpoint", url, "--scenario",
                      "server", "--target-qps", "120", "--duration", "5", "--concurrency", "2",
                      # a generous bound and enough queries for early stopping (~460 here):
                      # this checks the protocol, not the server's speed
                      "--target-latency-ms", "2000")  # fmt: skip
        served = stats(port)
    for done in (single, server):
        assert done.returncode == 0, done.stderr
        r = _result(done)
        assert r["status"] == "ok", r["problems"]
        assert r["loadgen"]["network"]["failed"] == 0
        assert r["performance"]["queries"] == r["loadgen"]["result_query_count"]
    assert (
        served["max_in_flight"] <= 2 or _result(single)["loadgen"]["network"]["concurrency"] == 16
    )


def test_openai_streams_give_loadgen_first_token_and_per_token_latencies(tmp_path):
    with running("openai", "--tokens", "6", "--ttft-ms", "30", "--tpot-ms", "8") as (_p, port):
        done = _run(
            tmp_path, "--backend", "openai", "--endpoint", f"http://127.0.0.1:{port}/v1",
            "--scenario", "offline", "--duration", "2", "--max-tokens", "6", "--concurrency", "4",
        )  # fmt: skip
        served = stats(port)
    assert done.returncode == 0, done.stderr
    r = _result(done)
    res, net = r["loadgen"]["results"], r["loadgen"]["network"]
    assert net["failed"] == 0 and net["tokens"] == 6 * r["performance"]["samples"]
    assert served["max_in_flight"] <= 4
    # Offline logs token throughput; it is the tokens over LoadGen's own duration
    assert res["result_tokens_per_second"] > 0
    assert r["loadgen"]["requested"]["use_token_latencies"] is True
    with running("openai", "--tokens", "6", "--ttft-ms", "30", "--tpot-ms", "8") as (_p, port):
        done = _run(
            tmp_path, "--backend", "openai", "--endpoint", f"http://127.0.0.1:{port}/v1",
            "--scenario", "single-stream", "--duration", "2", "--max-tokens", "6",
        )  # fmt: skip
    res = _result(done)["loadgen"]["results"]
    ttft_ms = res["result_first_token_50.00_percentile_latency_ns"] / 1e6
    tpot_ms = res["result_time_per_output_token_50.00_percentile_ns"] / 1e6
    assert 30 <= ttft_ms < 60, ttft_ms  # the server's 30 ms, plus the hops (a busy 2-core VM)
    assert 8 <= tpot_ms < 16, tpot_ms  # (latency - TTFT) / (tokens - 1): the server's 8 ms


def test_openai_chat_endpoint_and_a_server_refusing_stream_options(tmp_path):
    with running("openai", "--tokens", "4", "--refuse-stream-options") as (_p, port):
        done = _run(
            tmp_path, "--backend", "openai", "--model", "infergy-test-llm",
            "--endpoint", f"http://127.0.0.1:{port}/v1/chat/completions",
            "--duration", "1", "--max-tokens", "4",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    r = _result(done)
    assert r["loadgen"]["network"]["tokens"] == 4 * r["performance"]["samples"]  # chunks counted
    server = r["provenance"]["software"]["workload"]["per_device"][0]["server"]
    assert server["protocol"] == "openai-chat" and server["usage_reported"] is False


@pytest.mark.parametrize(
    ("kind", "mode"), [("kserve", "die"), ("kserve", "hang"), ("openai", "die")]
)
def test_a_server_that_goes_away_mid_run_gives_a_degraded_run_with_what_was_measured(
    tmp_path, kind, mode
):
    # the warm-up takes ~1.5 s from the first request; the server fails 2 s into the 8-s run
    with running(kind, "--fail-after-s", "3.5", "--fail-mode", mode) as (_proc, port):
        url = f"http://127.0.0.1:{port}" + ("/v2/models/tiny" if kind == "kserve" else "/v1")
        t0 = time.monotonic()
        done = _run(
            tmp_path, "--backend", kind, "--endpoint", url, "--duration", "8",
            "--concurrency", "4", "--request-timeout", "2", "--strict",
        )  # fmt: skip
        took_s = time.monotonic() - t0
    assert done.returncode == 3, done.stderr  # degraded, --strict
    r = _result(done)
    assert r["status"] == "degraded"
    net = r["loadgen"]["network"]
    assert net["server_lost"] is True and net["samples_not_sent"] > 0
    problems = "\n".join(r["problems"])
    assert "the server stopped answering" in problems
    why = (
        ("no answer within 2 s",) if mode == "hang" else ("cannot connect", "closed the connection")
    )
    assert any(w in problems for w in why), problems
    assert r["performance"]["queries"] > 0  # what completed before it went is measured
    assert 0 < r["window"]["duration_s"] < 5
    assert r["power"]["sim"]["coverage"] == pytest.approx(1.0)
    assert took_s < 60, took_s  # no hang: an Offline run ends when the server is gone


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--backend", "kserve"], "the kserve backend needs endpoint"),
        (["--endpoint", "http://127.0.0.1:1/v2/models/x"], "endpoint is for the kserve and openai"),
        (["--backend", "kserve", "--endpoint", "ftp://host/v2/models/x"], "http(s)"),
        (["--backend", "kserve", "--endpoint", "http://host:1/models/x"], "not a KServe v2 model URL"),
        (["--backend", "openai", "--endpoint", "http://host:1/api"], "not an OpenAI API URL"),
        (["--backend", "kserve", "--endpoint", "http://h:1/v2/models/x", "--prompts", "p.txt"],
         "prompts is an openai option"),
    ],
)  # fmt: skip
def test_bad_network_options_are_one_line_and_exit_2(tmp_path, args, expected):
    done = _run(tmp_path, *args, timeout=60)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_an_unreachable_server_fails_before_measuring_with_the_reason(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v2/models/tiny"
    done = _run(tmp_path, "--backend", "kserve", "--endpoint", url, "--request-timeout", "2",
                timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    first = done.stderr.strip().splitlines()
    assert any("cannot use the KServe server" in ln and "cannot connect" in ln for ln in first)
    assert "Traceback" not in done.stderr
