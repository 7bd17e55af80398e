"""``infergy analyzer-sim`` and ``infergy ptd-bridge`` as programs: real processes, pipes, TCP."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import typer

from infergy.cli import analyzer_sim, ptd_bridge
from infergy.errors import InputError

pytestmark = pytest.mark.integration

PY = [sys.executable, "-m", "infergy.ptd_bridge"]


def _app() -> typer.Typer:
    app = typer.Typer()
    ptd_bridge.register(app)
    analyzer_sim.register(app)
    return app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["47", "/dev/ttyUSB0"], "device type 47 (Yokogawa WT1800) is not supported"),
        (["-g", "49", "20"], "interface -g (GPIB) is not supported"),
        (["49"], "DEVICE_PORT is missing"),
        (["-c", "0,x", "77", "/dev/ttyUSB0"], "invalid channel list -c '0,x'"),
        (["-D", "0", "dummy"], "device type 0 has no DC mode (-D)"),
    ],
)
def test_bad_command_lines_are_one_clear_error(args, message):
    with pytest.raises(InputError, match=re.escape(message)):
        _app()(args=["ptd-bridge", *args], standalone_mode=False)


def _readline(proc: subprocess.Popen[str], timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            return line.rstrip("\n")
        if proc.poll() is not None:
            break
    raise AssertionError(f"no output line (rc={proc.poll()})")


def _exchange(sock: socket.socket, request: str) -> list[str]:
    sock.sendall(request.encode() + b"\r\n")
    f = sock.makefile("r", encoding="ascii", newline="\r\n")
    first = f.readline().rstrip("\r\n")
    lines = [first]
    if first.startswith("Last "):
        lines += [f.readline().rstrip("\r\n") for _ in range(int(first.split()[1]))]
    return lines


def test_the_programs_talk_through_a_pty_and_flush_their_output_at_once(tmp_path):
    sim = subprocess.Popen(
        [*PY, "analyzer-sim", "--rate", "100ms", "--watts", "80", "--link", str(tmp_path / "tty"),
         "--control", str(tmp_path / "sim.sock")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    bridge = None
    try:
        path = _readline(sim)  # the first line: the pty's path, flushed although stdout is a pipe
        assert path == str(tmp_path / "tty")
        bridge = subprocess.Popen(
            [*PY, "-l", str(tmp_path / "ptd.log"), "-p", "0", "--interval-ms", "100", "49", path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        port = None
        while port is None:  # console lines arrive while it runs (line by line, flushed)
            m = re.search(r": Establishing the listener on port (\d+)\.\.\.$", _readline(bridge))
            port = int(m.group(1)) if m else None
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            assert _exchange(s, "Hello") == ["Hello, PTDaemon here!"]
            assert _exchange(s, "Go,100,0,cli")[0].startswith("Starting untimed measurement")
            rl = _exchange(s, "RL,3")
            assert rl[0].startswith("Last ") and rl[1].endswith(
                ",Watts,80.000000,Volts,230.000000,Amps,0.366130,PF,0.950000"
            )
            assert _exchange(s, "Stop") == ["Stopping untimed measurement"]
        bridge.send_signal(signal.SIGTERM)
        out, err = bridge.communicate(timeout=20)
        assert bridge.returncode == 0, err
        assert "Traceback" not in err
        assert ": Response to client sent: Hello, PTDaemon here!" in out
        log = (tmp_path / "ptd.log").read_text()
        assert ",Mark,cli" in log and ",NOTICE,Go with mark 'cli'" in log
    finally:
        for proc in (bridge, sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=20)
    assert sim.returncode == 0


def test_an_absent_analyzer_fails_start_up_with_one_line_and_exit_code_1(tmp_path):
    proc = subprocess.run(
        [*PY, "--connect-timeout", "0.3", "-p", "0", "49", str(tmp_path / "no-such-tty")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "error: cannot open the analyzer's port" in proc.stderr
    assert "hint:" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unsupported_device_type_exits_2_with_the_supported_list():
    proc = subprocess.run(
        [*PY, "66", "/dev/ttyUSB0"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert "device type 66 (Yokogawa WT5000) is not supported" in proc.stderr
    assert "49 WT310/WT310E" in proc.stderr and "Traceback" not in proc.stderr


def test_a_port_in_use_is_a_usage_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [*PY, "-p", str(port), "0", "dummy"], capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr
