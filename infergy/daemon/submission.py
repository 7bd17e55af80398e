"""An MLPerf submission folder: the checks that need more than one run's files.

When ``infergy analyze --loadgen-log`` points at ``.../performance/run_1/`` (the testing pass
of a result as submitted), MLPerf's checkers also look beside it:

- the submission checker requires ``run_1/`` and ``ranging/`` to hold
  ``mlperf_log_summary.txt``, ``mlperf_log_detail.txt`` and ``spl.txt``, and ``power/`` to hold
  ``client.json``, ``client.log``, ``ptd_logs.txt``, ``server.json``, ``server.log``
  (``REQUIRED_PERF_FILES``, ``REQUIRED_PERF_POWER_FILES``, ``REQUIRED_POWER_FILES``);
- the Power WG checker (``power_checker.py``) fails a testing pass whose mean power is 5 % or
  more below the ranging pass's, both means taken as the submission checker takes them.

Its other checks (source checksums, PTD's messages and versions, phase timestamps from
``client.json``/``server.json``) are about how a run was produced with SPEC's PTDaemon and
MLCommons' harness, which infergy does not reproduce: they are not made here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infergy.core.energy import mlperf_mean_watts
from infergy.core.mlperf import ranging_delta_percent, ranging_ok
from infergy.errors import InputError
from infergy.formats import load_power_source
from infergy.formats.loadgen import load_loadgen_detail

PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "spl.txt")
POWER_FILES = ("client.json", "client.log", "ptd_logs.txt", "server.json", "server.log")


def testing_dir(loadgen_log: Path) -> Path | None:
    """``.../performance/run_1`` when ``loadgen_log`` is that folder or a file in it."""
    d = loadgen_log if loadgen_log.is_dir() else loadgen_log.parent
    d = d.resolve()
    return d if d.name == "run_1" and d.parent.name == "performance" else None


def submission_checks(
    run_1: Path, testing_spl: Path | None, testing_w: float | None, problems: list[str]
) -> dict[str, Any]:
    """Layout and ranging checks of a ``performance/`` folder; appends what fails to problems.

    Args:
        run_1: the testing pass's folder.
        testing_spl: the ``--power`` file inside it, if one was given.
        testing_w: MLPerf's mean W of that source over the testing window.
        problems: where failures are reported.

    Returns:
        The result's ``mlperf.submission`` entry.
    """
    perf = run_1.parent
    missing = [f"run_1/{f}" for f in PERF_FILES if not (run_1 / f).is_file()]
    missing += [f"ranging/{f}" for f in PERF_FILES if not (perf / "ranging" / f).is_file()]
    missing += [f"power/{f}" for f in POWER_FILES if not (perf / "power" / f).is_file()]
    if missing:
        problems.append(
            f"MLPerf submission layout under {perf}: missing {', '.join(missing)} "
            "(the submission checker requires them)"
        )
    entry: dict[str, Any] = {"path": str(perf), "missing_files": missing, "ranging": None}
    ranging = perf / "ranging"
    if testing_spl is None or testing_w is None or not (ranging / "spl.txt").is_file():
        return entry
    try:
        detail = load_loadgen_detail(ranging)
        window = detail.window
        loaded = load_power_source(ranging / "spl.txt")
    except InputError as err:
        problems.append(f"ranging pass unreadable: {err}")
        return entry
    samples = loaded.mlperf_samples
    if window is None or samples is None:
        problems.append("ranging pass: no power_begin/power_end or no PTD samples")
        return entry
    ranging_w = mlperf_mean_watts(*samples, window).mean_w
    if not ranging_w:
        problems.append("ranging pass: no power sample inside its window")
        return entry
    delta = ranging_delta_percent(testing_w, ranging_w)
    ok = ranging_ok(delta)
    entry["ranging"] = {"average_watts_mlperf": ranging_w, "testing_average_watts_mlperf":
                        testing_w, "delta_percent": delta, "ok": ok}  # fmt: skip
    if not ok:
        problems.append(
            f"the testing pass's mean power {testing_w:.5f} W is {-delta:.2f} % below the "
            f"ranging pass's {ranging_w:.5f} W: MLPerf's power checker fails a drop of 5 % or more"
        )
    return entry
