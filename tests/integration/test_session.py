"""One measurement session end to end, against the emulated analyzer (pty + real PTD bridge).

The workload here is the fake runner (tests/fake_runner.py) so these tests pin the session's
own behaviour: the analyzer's energy against a scripted profile, a fault mid-run, cancellation.
``test_run_command.py`` runs the real LoadGen runner through ``infergy run``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from infergy.config.settings import Settings
from infergy.daemon.jobs import JobSpec
from infergy.daemon.session import Session
from infergy.daemon.session_types import QuietObserver
from infergy.store.db import Store
from tests.fake_runner import FakeRunner

pytestmark = pytest.mark.integration


def _settings(tmp_path: Path, profile: str | None = None) -> Settings:
    emulator = {"noise": 0.0}
    if profile is not None:
        (tmp_path / "profile.csv").write_text(profile, encoding="utf-8")
        emulator["profile"] = str(tmp_path / "profile.csv")  # type: ignore[assignment]
    return Settings.model_validate(
        {
            "output": {"dir": str(tmp_path / "out")},
            "store": {"path": str(tmp_path / "store.db")},
            "meters": {"rapl": False, "emulator": emulator},
            "session": {"tail_s": 1.0, "plots": True},
        }
    )


def _spec(**kw: object) -> JobSpec:
    base = {"backend": "onnxruntime", "meter": ["sim"], "duration": 3.0, "idle": 1.0, "warmup": 1.0}
    return JobSpec.model_validate(base | kw)


def _truth_j(session: Session, result: dict) -> float:
    """The scripted profile's integral over the result's window (emulator clock -> host)."""
    emu = session.meter_set.emulator
    assert emu is not None
    clock_mono0 = result["provenance"]["session_clock"]["mono0_ns"]
    clock_wall0 = result["provenance"]["session_clock"]["wall0_ns"]

    def emu_s(unix_ns: int) -> float:
        mono = unix_ns - clock_wall0 + clock_mono0
        return (mono - emu.t0_mono_ns) / 1e9

    w = result["window"]
    return emu.profile.energy_j(emu_s(w["start_unix_ns"]), emu_s(w["end_unix_ns"]))


def test_session_analyzer_energy_matches_the_scripted_profile(tmp_path: Path) -> None:
    profile = "t_s,watts\n0,120\n4,120\n5,260\n6,260\n6.5,180\n60,180\n"
    settings = _settings(tmp_path, profile)
    with Store.open(settings.store.path) as store:  # type: ignore[arg-type]
        session = Session("s1", _spec(), settings, store=store, runners=FakeRunner.open)
        outcome = asyncio.run(session.run())
        stored = store.get_result("s1")
    r = outcome.result
    assert r["status"] == "ok", r["problems"]
    sim = r["power"]["sim"]
    assert sim["simulated"] is True and sim["coverage"] == pytest.approx(1.0)
    assert sim["energy_joules"] == pytest.approx(_truth_j(session, r), rel=5e-3)
    assert sim["idle_watts"] == pytest.approx(120.0, rel=5e-3)
    assert any("SIMULATED" in p for p in r["problems"])
    assert stored["run_id"] == "s1" and stored["status"] == "ok"
    run_dir = tmp_path / "out" / "s1"
    for name in (
        "result.json",
        "queries.csv.gz",
        "traces/sim.csv",
        "power.png",
        "latency.png",
        "per_query_energy.png",
    ):
        assert (run_dir / name).is_file(), name
    assert r["provenance"]["meters"]["sim"]["simulated"] is True
    assert r["provenance"]["idle_window"] is not None


def test_session_unplug_mid_run_is_degraded_with_the_gap_listed(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    phases: list[str] = []

    class Phases(QuietObserver):
        def phase(self, name: str, duration_s: float | None) -> None:
            phases.append(name)

    async def scenario() -> tuple[Session, dict]:
        session = Session(
            "s2", _spec(duration=4.0), settings, runners=FakeRunner.open, observer=Phases()
        )
        task = asyncio.create_task(session.run())
        while "run" not in phases:
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)  # 1 s into the 4-s run: pull the plug for 1.2 s
        assert session.meter_set is not None and session.meter_set.emulator is not None
        session.meter_set.emulator.unplug(1.2)
        outcome = await task
        return session, outcome.result

    _, r = asyncio.run(scenario())
    assert r["status"] == "degraded"
    sim = r["power"]["sim"]
    assert 0.5 < sim["coverage"] < 0.95
    assert any("gap" in p for p in r["problems"]), r["problems"]
    assert sim["energy_joules"] is not None  # what was sampled is kept


def test_session_cancelled_mid_run_stores_an_aborted_result(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with Store.open(settings.store.path) as store:  # type: ignore[arg-type]
        phases: list[str] = []

        class Phases(QuietObserver):
            def phase(self, name: str, duration_s: float | None) -> None:
                phases.append(name)

        async def scenario() -> Session:
            session = Session(
                "s3", _spec(duration=30.0), settings, store=store, runners=FakeRunner.open,
                observer=Phases(),
            )  # fmt: skip
            task = asyncio.create_task(session.run())
            while "run" not in phases:
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return session

        session = asyncio.run(scenario())
        stored = store.get_result("s3")
        traces = store.get_traces("s3")
    assert session.aborted is not None
    assert stored["status"] == "aborted"
    assert any("aborted during the run phase" in p for p in stored["problems"])
    assert "sim" in traces and len(traces["sim"]) > 8
    assert session.runner.closed
    assert not session.meter_set.emulator.plugged  # stopped and released
