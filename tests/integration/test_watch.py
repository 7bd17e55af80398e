"""``infergy watch``: the real command against simulated GPUs, the emulated analyzer and serve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from infergy.errors import InfergyError
from infergy.meters.nvml_device import NvmlLibrary
from tests.integration.mosquitto import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, extra: str = "") -> dict[str, str]:
    config = tmp_path / "infergy.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "store.db"}"\n[meters]\nrapl = false\n{extra}',
        encoding="utf-8",
    )
    return {**os.environ, "INFERGY_CONFIG": str(config), "PYTHONPATH": str(ROOT)}


def _watch(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infergy", "watch", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _csv_rows(text: str) -> tuple[str, list[list[str]]]:
    header, *lines = text.strip().splitlines()
    return header, [ln.split(", ") for ln in lines]


def test_csv_like_nvidia_smi_from_simulated_gpus_and_the_emulated_analyzer(tmp_path):
    env = _env(tmp_path, "simulated_gpus = 2\n")
    done = _watch(
        env, "--meter", "nvml", "--meter", "sim", "--format", "csv", "-l", "0.5", "-c", "3"
    )
    assert done.returncode == 0, done.stderr
    header, rows = _csv_rows(done.stdout)
    assert header.startswith("timestamp, source, power.draw [W], energy.since_start [J]")
    assert [r[1] for r in rows] == ["gpu0", "gpu1", "gpus", "sim"] * 3  # one header, 3 updates
    for r in rows:
        assert r[-1] == "SIMULATED", r
    gpu0 = [r for r in rows if r[1] == "gpu0"]
    assert all(abs(float(r[2]) - 70.0) < 3 for r in gpu0)  # the simulated boards' idle power
    energies = [float(r[3]) for r in gpu0]
    assert energies == sorted(energies) and energies[-1] > energies[0]  # J since start grows
    assert all(r[4] != "[N/A]" and r[6] != "[N/A]" for r in gpu0)  # clocks and reasons
    gpus = [r for r in rows if r[1] == "gpus"]
    for total, a, b in zip(gpus, gpu0, [r for r in rows if r[1] == "gpu1"], strict=True):
        assert float(total[2]) == pytest.approx(float(a[2]) + float(b[2]), abs=0.02)
    assert "note: sim: SIMULATED" in done.stderr


def test_the_table_format_off_a_terminal_prints_each_update(tmp_path):
    done = _watch(_env(tmp_path), "--meter", "sim", "-c", "2", "-l", "0.3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("infergy watch") == 2
    assert "J since start" in done.stdout and "SIMULATED" in done.stdout


def test_ctrl_c_ends_the_watch_with_exit_code_0(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "infergy", "watch", "--meter", "sim", "--format", "csv", "-l", "0.2"],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("timestamp, source")
    assert ", sim, " in proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_without_any_meter_it_says_why(tmp_path):
    try:
        with NvmlLibrary():
            pytest.skip("an NVIDIA driver is present: NVML is a meter here")
    except InfergyError:
        pass
    done = _watch(_env(tmp_path))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: no power meter is available here: nvml: ")
    assert "rapl: disabled ([meters] rapl = false)" in lines[0]
    assert "no analyzer configured ([meters] ptd)" in lines[0]
    assert lines[1].startswith("hint: --meter sim") and len(lines) == 2


def test_bad_options_exit_2(tmp_path):
    env = _env(tmp_path)
    done = _watch(env, "--format", "xml")
    assert done.returncode == 2 and "--format takes table or csv" in done.stderr
    done = _watch(env, "--from", "http://127.0.0.1:1", "--meter", "sim")
    assert done.returncode == 2 and "not both" in done.stderr


def test_from_a_running_serve_through_its_metrics(tmp_path):
    port = free_port()
    env = _env(tmp_path, f'simulated_gpus = 2\n[serve]\nlisten = "127.0.0.1:{port}"\n')
    with (tmp_path / "serve.log").open("w") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "infergy", "serve"], env=env, stdout=log,
            stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        time.sleep(1.5)  # a few telemetry polls
        done = _watch(env, "--from", f"http://127.0.0.1:{port}", "--format", "csv", "-l", "1",
                      "-c", "3")  # fmt: skip
    finally:
        serve.terminate()
        serve.wait(30)
    assert done.returncode == 0, done.stderr
    _header, rows = _csv_rows(done.stdout)
    sources = [r[1] for r in rows]
    assert sources[:4] == ["gpu0", "gpu1", "gpus", "ac"] and len(rows) == 12
    assert all(r[-1] == "SIMULATED" for r in rows)  # the service's emulated analyzer too
    first, last = float(rows[0][3]), float(rows[8][3])
    assert first == pytest.approx(0.0, abs=1e-6) and last > 100  # J since the watch started
    assert abs(float(rows[0][2]) - 70.0) < 3 and rows[0][4] != "[N/A]"
    gone = _watch(env, "--from", f"http://127.0.0.1:{port}", "-c", "1")
    assert gone.returncode == 1 and "cannot read http://127.0.0.1:" in gone.stderr
