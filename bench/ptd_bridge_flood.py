"""PTD bridge fairness: a measuring client's sample loss while another client floods.

    .venv/bin/python bench/ptd_bridge_flood.py --repeat 5            # the recorded figures
    .venv/bin/python bench/ptd_bridge_flood.py --duration 10 --json  # a quick one

Set-up, all real processes: ``infergy analyzer-sim`` (a WT310 on a pty, updating every
250 ms) behind ``infergy ptd-bridge`` (console to a file). The measuring client sends
``Go,1000,0,measure`` and then ``RL`` every second, as MLPerf's power client does; after a
settling second a flooding client connects, pipelines ``--flood`` requests (``RL``) as fast as
the socket takes them and never reads a reply. Over ``--duration`` seconds:

- the measuring client's samples: valid, bad (-1), missed (-2); loss = bad + missed (target 0);
- whether the bridge closed the flooder (a client that never reads its replies) and when;
- the bridge console's lines (PTDaemon echoes every reply: unbounded without a limit).

Each repetition is a fresh pair of processes; the median over repetitions is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(
    os.environ,
    PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    PYTHONUNBUFFERED="1",
)


def _start(tmp: Path) -> tuple[subprocess.Popen[str], subprocess.Popen[str], int, Path]:
    sim = subprocess.Popen(
        [sys.executable, "-m", "infergy", "analyzer-sim", "--rate", "250ms", "--watts", "250",
         "--link", str(tmp / "tty")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert sim.stdout is not None
    tty = sim.stdout.readline().strip()
    console = tmp / "console.txt"
    with console.open("w", encoding="utf-8") as out:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "infergy.ptd_bridge", "-p", "0", "49", tty],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=ENV,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"listener on port (\d+)", console.read_text(errors="replace"))
        if found:
            return sim, bridge, int(found.group(1)), console
        time.sleep(0.05)
    raise RuntimeError(f"the bridge did not start: {console.read_text(errors='replace')}")


def _lines(sock: socket.socket, buffer: bytearray) -> list[str]:
    """One reply (an RL's header and its sample lines)."""

    def line() -> str:
        while b"\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buffer.extend(chunk)
        raw, _, rest = bytes(buffer).partition(b"\r\n")
        buffer[:] = rest
        return raw.decode("ascii", "replace")

    first = line()
    return (
        [first, *(line() for _ in range(int(first.split()[1])))]
        if first.startswith("Last ")
        else [first]
    )


def _flood(port: int, n: int, out: dict[str, Any]) -> None:
    t0 = time.monotonic()
    payload = b"RL\r\n" * n
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
            sent = 0
            view = memoryview(payload)
            while sent < len(payload):
                sent += s.send(view[sent : sent + 65536])
            out["sent_all_s"] = time.monotonic() - t0
            while not out.get("stop"):  # more of the same, never reading: fails once closed
                s.sendall(b"RL\r\n" * 100)
                time.sleep(0.1)
    except OSError as err:
        out["closed_by_bridge_s"] = time.monotonic() - t0
        out["error"] = type(err).__name__
    out["requests_sent"] = sent // 4 if "sent" in locals() else 0


def one_run(duration_s: float, flood: int) -> dict[str, Any]:
    """One repetition: fresh processes, the measuring client, the flooder."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sim, bridge, port, console = _start(tmp)
        flood_out: dict[str, Any] = {}
        try:
            m = socket.create_connection(("127.0.0.1", port), timeout=30)
            buf = bytearray()
            m.sendall(b"Go,1000,0,measure\r\n")
            _lines(m, buf)
            time.sleep(1.0)
            flooder = threading.Thread(target=_flood, args=(port, flood, flood_out), daemon=True)
            flooder.start()
            valid = bad = missed = 0
            latency: list[float] = []
            end = time.monotonic() + duration_s
            while time.monotonic() < end:
                time.sleep(1.0)
                t0 = time.monotonic()
                m.sendall(b"RL\r\n")
                reply = _lines(m, buf)
                latency.append(time.monotonic() - t0)
                for line in reply[1:]:
                    watts = float(line.split(",Watts,")[1].split(",")[0])
                    valid += watts >= 0
                    bad += watts == -1
                    missed += watts == -2
            flood_out["stop"] = True
            m.sendall(b"Stop\r\n")
            _lines(m, buf)
            m.close()
        finally:
            for proc in (bridge, sim):
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        text = console.read_text(errors="replace")
    return {
        "samples_valid": valid,
        "samples_bad": bad,
        "samples_missed": missed,
        "loss": bad + missed,
        "rl_latency_max_s": max(latency, default=None),
        "flooder_closed_after_s": flood_out.get("closed_by_bridge_s"),
        "flooder_closed_why": next(
            (ln.split(": ", 3)[-1] for ln in text.splitlines() if "Closing the connection" in ln),
            None,
        ),
        "console_lines": text.count("\n"),
        "console_kib": len(text.encode()) / 1024,
    }


def main() -> None:
    """Run and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    p.add_argument("--flood", type=int, default=100_000, help="requests the flooder pipelines")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    runs = [one_run(a.duration, a.flood) for _ in range(a.repeat)]
    keys = ("loss", "samples_missed", "samples_bad", "samples_valid", "console_lines",
            "rl_latency_max_s")  # fmt: skip
    median = {k: statistics.median(r[k] for r in runs) for k in keys}
    closed = [r["flooder_closed_after_s"] for r in runs]
    summary = {"runs": runs, "median": median, "flooder_closed_after_s": closed,
               "duration_s": a.duration, "flood_requests": a.flood}  # fmt: skip
    if a.json:
        print(json.dumps(summary, indent=2))
        return
    for r in runs:
        print(r)
    print("median:", median)


if __name__ == "__main__":
    main()
