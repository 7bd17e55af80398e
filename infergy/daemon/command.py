"""``infergy measure -- CMD``: one command measured like a run, with the phases it marks.

The meters are chosen and opened as ``infergy run`` opens them (an
:class:`~infergy.daemon.measurement.Measurement`, optionally with an idle baseline), then the
command runs with ``$INFERGY_MARK`` naming a FIFO it may write ``begin NAME`` / ``end NAME``
lines to (:mod:`infergy.daemon.marks`). The measured window is the command's lifetime, from
just before it is spawned to when it has been reaped; its figures come from
:func:`infergy.core.analysis.analyze` like a run's, and each phase's from the same window
figures as the Python API. The result is schema 1 (``scenario`` null: no LoadGen run) with
``command`` (argv, exit code, signal) and ``phases``.

Signals: Ctrl-C (SIGINT) and SIGQUIT reach the command from the terminal (same process
group); infergy ignores them while it runs, then stores what was measured. SIGTERM and SIGHUP
sent to infergy are passed on to the command.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from infergy import __version__
from infergy.config.settings import Settings
from infergy.core.analysis import analyze
from infergy.core.inputs import AnalysisOptions, Workload
from infergy.core.trace import NS_PER_S, Scenario, Trace
from infergy.core.trace import Window as Span
from infergy.daemon.marks import ENV_VAR, MarkReader
from infergy.daemon.measurement import Measurement
from infergy.daemon.provenance import gpu_provenance, software_versions
from infergy.daemon.windows import SourceEnergy, Window
from infergy.errors import AnalysisError, CommandStartError

COMMAND_WINDOW = "<command>"
"""The whole command's window (not a valid phase name, so no mark can touch it)."""
_FORWARDED = (signal.SIGTERM, signal.SIGHUP)
_IGNORED = (signal.SIGINT, signal.SIGQUIT)


@dataclass
class CommandOutcome:
    """What ``measure`` produced: the result, its traces, and the command's exit code."""

    result: dict[str, Any]
    traces: dict[str, Trace] = field(default_factory=dict)
    exit_code: int = 0
    """The command's exit status; 128 + N when it was killed by signal N (as a shell says)."""


def resolve_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The executable ``argv[0]`` names, checked before any meter is opened.

    Raises:
        CommandStartError: no command, or it is not found / not executable (exit 127).
    """
    if not argv or not argv[0]:
        msg = "no command given: write it after --, e.g. infergy measure -- ./bench.sh"
        raise CommandStartError(msg)
    name = argv[0]
    path_var = (os.environ if env is None else env).get("PATH", os.defpath)
    found = name if "/" in name else shutil.which(name, path=path_var)
    if found is None:
        msg = f"cannot run {name!r}: command not found"
        raise CommandStartError(msg)
    p = Path(found)
    if p.is_dir() or not os.access(p, os.X_OK):
        why = "is a directory" if p.is_dir() else "is not executable (or does not exist)"
        where = "" if found == name else f" ({found})"
        msg = f"cannot run {name!r}{where}: it {why}"
        raise CommandStartError(msg)
    return found


def measure_command(
    argv: Sequence[str],
    *,
    run_id: str,
    settings: Settings,
    meters: Sequence[str] = (),
    idle_s: float = 0.0,
    env: Mapping[str, str] | None = None,
) -> CommandOutcome:
    """Measure one command: meters, optional idle baseline, the command, its phases, analysis.

    Raises:
        CommandStartError: the command cannot be started (nothing is measured or stored).
        MeterError, ConfigError: the meters cannot be opened.
    """
    executable = resolve_command(argv, env)
    m = Measurement(meters, settings=settings, idle_s=idle_s, env=env)
    m.start()
    problems: list[str] = []
    command: dict[str, Any] = {"argv": list(argv), "executable": executable}
    try:
        gpus_start = gpu_provenance(m.meter_set) if m.meter_set is not None else []
        with MarkReader(m.begin_window, m.end_window) as marks:
            child_env = dict(os.environ if env is None else env)
            child_env[ENV_VAR] = str(marks.path)
            with _while_it_runs() as child:
                m.begin_window(COMMAND_WINDOW)
                try:
                    proc = child.proc = subprocess.Popen(
                        list(argv), executable=executable, env=child_env
                    )
                except OSError as err:
                    msg = f"cannot run {argv[0]!r}: {err.strerror or err}"
                    raise CommandStartError(msg) from None
                command["pid"] = proc.pid
                status = proc.wait()
            marks.drain()
            for name in list(marks.open_phases):
                m.end_window(name)
                problems.append(f"phase {name!r} was not ended: it ends with the command")
            whole = m.end_window(COMMAND_WINDOW)
            problems += marks.problems
        gpus_end = gpu_provenance(m.meter_set) if m.meter_set is not None else []
    finally:
        m.close()
    exit_code = status if status >= 0 else 128 - status
    command["exit_code"] = status if status >= 0 else None
    command["signal"] = signal.Signals(-status).name if status < 0 else None
    if status != 0:
        how = f"was killed by {command['signal']}" if status < 0 else f"exited with {status}"
        problems.append(f"note: the command {how}")
    phases = sorted((w for w in m.windows if w.name != COMMAND_WINDOW), key=lambda w: w.start_ns)
    identity = _identity(
        run_id, argv=argv, settings=settings, m=m, whole=whole, gpus_start=gpus_start,
        gpus_end=gpus_end,
    )  # fmt: skip
    result, traces = _analyze(m, whole, identity, problems)
    result["command"] = command
    result["phases"] = [phase_entry(w) for w in phases]
    return CommandOutcome(result, traces, exit_code)


def phase_entry(w: Window) -> dict[str, Any]:
    """A phase as the result carries it: name, edges and every source's figures."""
    return {
        "name": w.name,
        "start_unix_ns": w.start_ns,
        "end_unix_ns": w.end_ns,
        "duration_s": w.duration_s,
        "power": {name: _power_entry(s) for name, s in w.sources.items()},
    }


def _power_entry(s: SourceEnergy) -> dict[str, Any]:
    return {
        "kind": s.kind,
        "simulated": s.simulated,
        "energy_joules": s.energy_j,
        "average_watts": s.mean_power_w,
        "idle_watts": s.idle_w,
        "samples": s.samples,
        "coverage": s.coverage,
        "uncertainty_joules": s.uncertainty_j,
        "problems": list(s.problems),
    }


def _analyze(
    m: Measurement, whole: Window, identity: dict[str, Any], problems: list[str]
) -> tuple[dict[str, Any], dict[str, Trace]]:
    """The command window's schema-1 result through the core analysis (or a failed one)."""
    a = m.settings.analysis
    span = Span(whole.start_ns, whole.end_ns)
    all_problems = [*m.problems, *problems]
    try:
        analysis = analyze(
            m.source_inputs(), Workload(Scenario.OFFLINE), span, identity=identity,
            options=AnalysisOptions(
                gap_factor=a.gap_factor, degraded_coverage=a.degraded_coverage,
                idle_window=m.idle_window,
            ),
            problems=all_problems,
        )  # fmt: skip
    except AnalysisError as err:
        result = _bare(identity, span, [*all_problems, f"no analysis: {err}"])
        return result, {s.name: s.trace for s in m.source_inputs()}
    result = analysis.result
    result["scenario"] = None  # no LoadGen run: nothing is a query
    result["efficiency"] = {}
    for name in m.simulated:
        if name in result["power"]:
            result["power"][name]["simulated"] = True
    if "gpus" in result["power"] and any(
        result["power"].get(g, {}).get("simulated") for g in result["power"] if g[:3] == "gpu"
    ):
        result["power"]["gpus"]["simulated"] = True
    return result, dict(analysis.traces)


def _bare(identity: dict[str, Any], span: Span, problems: list[str]) -> dict[str, Any]:
    return {
        "schema_version": 1, "run_id": identity["run_id"], "status": "failed",
        "problems": problems, "scenario": None,
        **{k: identity[k] for k in ("backend", "model", "precision", "batch_size")},
        "devices": identity["devices"], "host": identity["host"],
        "window": {"start_unix_ns": span.start_ns, "end_unix_ns": span.end_ns,
                   "duration_s": span.duration_s},
        "performance": {"queries": None, "samples": None, "samples_per_second": None,
                        "latency_ms": None},
        "power": {}, "efficiency": {}, "provenance": identity["provenance"],
    }  # fmt: skip


def _identity(
    run_id: str,
    *,
    argv: Sequence[str],
    settings: Settings,
    m: Measurement,
    whole: Window,
    gpus_start: list[dict[str, Any]],
    gpus_end: list[dict[str, Any]],
) -> dict[str, Any]:
    idle = m.idle_window
    return {
        "run_id": run_id,
        "backend": "command",
        "model": Path(argv[0]).name,
        "precision": None,
        "batch_size": None,
        "devices": [g["source"] for g in gpus_start],
        "host": socket.gethostname(),
        "provenance": {
            "infergy_version": __version__,
            "command": "measure",
            "argv": list(argv),
            "config": settings.dump_masked(),
            "software": software_versions(),
            "platform": platform.platform(),
            "gpus": gpus_start,
            "gpus_at_end": gpus_end,
            "meters": m.meters_description,
            "session_clock": {"wall0_ns": m.clock.wall0_ns, "mono0_ns": m.clock.mono0_ns},
            "idle_window": None
            if idle is None
            else {"start_unix_ns": idle.start_ns, "end_unix_ns": idle.end_ns},
            "command_started_after_s": (whole.start_ns - (m.started_ns or whole.start_ns))
            / NS_PER_S,
        },
    }


class _Child:
    proc: subprocess.Popen[bytes] | None = None


@contextlib.contextmanager
def _while_it_runs() -> Iterator[_Child]:
    """Terminal signals reach the command itself; SIGTERM/SIGHUP sent to us are passed on.

    Installed before the command is spawned: Python-level handlers (never SIG_IGN, which a
    child would inherit) are reset to the defaults in the child when it execs.
    """
    child = _Child()

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signum)

    def ignore(_signum: int, _frame: FrameType | None) -> None:
        """The terminal sent it to the command too; we wait for the command."""

    previous: dict[int, Any] = {}
    try:
        for sig in _FORWARDED:
            previous[sig] = signal.signal(sig, forward)
        for sig in _IGNORED:
            previous[sig] = signal.signal(sig, ignore)
    except ValueError:  # not the main thread: no handlers, the defaults stay
        pass
    try:
        yield child
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
