"""PTD bridge under load: emulator at 10 Hz, 8 reader clients; bridge CPU, losses, latency.

    .venv/bin/python bench/ptd_bridge.py --duration 600        # the recorded run
    .venv/bin/python bench/ptd_bridge.py --duration 60 --json  # a quick one

Set-up: the analyzer emulator runs in this process on a pty, updating every 100 ms; each
update's power encodes its sequence number (100 + (seq mod 1000) / 10 W), so every sample a
client receives names the update it came from. The bridge runs as its own process
(``python -m infergy.ptd_bridge -p 0 --interval-ms 100 49 <pty>``, console piped and read),
so its CPU time is its own (``/proc/<pid>/stat`` utime + stime over the measured span). One
client starts ``Go,100,0,bench``; every client then reads with ``RL,1000`` (newest unread
samples; the bridge holds the request up to one interval when nothing is unread), or, with
``--poll-ms N``, plain ``RL`` every N ms.

Figures: bridge CPU as % of one core; samples lost per client (emulator updates in the
measured span that the client never received as a valid sample, -2 missed samples included);
update-to-client latency (emulator release of an update -> the client has read its sample),
p50/p99/max over all clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infergy.ptd_bridge.emulator import AnalyzerEmulator  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Reader:
    """One PTD client: what it received, when."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.received: list[tuple[int, float]] = []  # (monotonic ns read, watts)
        self.requests = 0

    async def run(self, port: int, stop: asyncio.Event, poll_ms: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"RL\r\n" if poll_ms else b"RL,1000\r\n"
        try:
            while not stop.is_set():
                writer.write(request)
                await writer.drain()
                header = await reader.readline()
                t_ns = time.monotonic_ns()
                self.requests += 1
                if header.startswith(b"Last "):
                    for _ in range(int(header.split()[1])):
                        line = await reader.readline()
                        self.received.append((t_ns, float(line.split(b",")[3])))
                if poll_ms:
                    await asyncio.sleep(poll_ms / 1000)
        finally:
            writer.close()


def analyse(reader: Reader, updates: dict[int, int], window: tuple[int, int]) -> dict:
    """Unwrap each sample's sequence number; count losses, collect latencies."""
    by_mod: dict[int, list[int]] = {}
    for seq in updates:
        by_mod.setdefault(seq % 1000, []).append(seq)
    got: set[int] = set()
    latency_ms: list[float] = []
    invalid = 0
    prev: int | None = None
    for t_ns, watts in reader.received:
        if watts < 0:
            invalid += 1
            continue
        mod = round((watts - 100.0) * 10) % 1000
        if prev is None:  # the newest update with this residue released before it was read
            seq = max(s for s in by_mod.get(mod, []) if updates[s] <= t_ns)
        else:
            seq = prev + ((mod - prev) % 1000 or 1000)
        prev = seq
        got.add(seq)
        if seq in updates:
            latency_ms.append((t_ns - updates[seq]) / 1e6)
    expected = {s for s, t in updates.items() if window[0] <= t <= window[1]}
    return {
        "received": len(reader.received),
        "invalid_samples": invalid,
        "lost": len(expected - got),
        "expected": len(expected),
        "requests": reader.requests,
        "latency_ms": latency_ms,
    }


def drain(stream) -> None:
    for _ in stream:
        pass


async def main_async(args: argparse.Namespace) -> dict:
    emu = AnalyzerEmulator("wt310", rate_s=args.rate_ms / 1000, encode_sequence=True)
    emu.start()
    bridge = subprocess.Popen(
        [sys.executable, "-m", "infergy.ptd_bridge", "-p", "0", "--interval-ms",
         str(args.rate_ms), "49", emu.path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        port = None
        assert bridge.stdout is not None
        while port is None:
            line = bridge.stdout.readline()
            if not line:
                raise SystemExit(
                    f"the bridge exited: {bridge.stderr.read() if bridge.stderr else ''}"
                )
            if "Establishing the listener on port " in line:
                port = int(line.rsplit(" ", 1)[1].rstrip(".\n"))
        threading.Thread(target=drain, args=(bridge.stdout,), daemon=True).start()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"Go,%d,0,bench\r\n" % args.rate_ms)
        await w.drain()
        assert (await r.readline()).startswith(b"Starting untimed")
        stop = asyncio.Event()
        readers = [Reader(f"client{k}") for k in range(args.clients)]
        tasks = [
            asyncio.create_task(rd.run(port, stop, args.poll_ms), name=rd.name) for rd in readers
        ]
        await asyncio.sleep(args.warmup)
        t0, c0, self0 = (
            time.monotonic_ns(),
            cpu_s(bridge.pid),
            resource.getrusage(resource.RUSAGE_SELF),
        )
        await asyncio.sleep(args.duration)
        t1, c1, self1 = (
            time.monotonic_ns(),
            cpu_s(bridge.pid),
            resource.getrusage(resource.RUSAGE_SELF),
        )
        await asyncio.sleep(1.0)  # let the last samples of the span arrive
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        w.write(b"Stop\r\n")
        await w.drain()
        await r.readline()
        w.close()
    finally:
        bridge.terminate()
        bridge.wait(timeout=20)
        emu.stop()
    updates = {seq: t for seq, t, _ in emu.updates()}
    # the span: updates released in [t0, t1 - one interval] (their samples can be read by t1 + 1 s)
    window = (t0, t1 - args.rate_ms * 1_000_000)
    per = [analyse(rd, updates, window) for rd in readers]
    lat = np.array([x for p in per for x in p["latency_ms"]])
    wall_s = (t1 - t0) / 1e9
    bench_cpu = (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime) / wall_s
    return {
        "duration_s": round(wall_s, 1),
        "update_interval_ms": args.rate_ms,
        "clients": args.clients,
        "read": f"RL every {args.poll_ms} ms" if args.poll_ms else "RL,1000 (held until a sample)",
        "bridge_cpu_percent_of_one_core": round(100 * (c1 - c0) / wall_s, 2),
        "bench_process_cpu_percent": round(100 * bench_cpu, 1),
        "updates_in_span": per[0]["expected"],
        "samples_lost_per_client": [p["lost"] for p in per],
        "invalid_samples_per_client": [p["invalid_samples"] for p in per],
        "requests_per_client": [p["requests"] for p in per],
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2),
            "p99": round(float(np.percentile(lat, 99)), 2),
            "max": round(float(lat.max()), 2),
            "n": int(lat.size),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0, help="measured seconds (default 600)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rate-ms", type=int, default=100, help="analyzer update = sample interval")
    ap.add_argument("--poll-ms", type=int, default=0, help="0: RL,1000 held; N: RL every N ms")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    args = ap.parse_args()
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:34s} {value}")


if __name__ == "__main__":
    main()
