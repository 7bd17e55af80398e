"""The restore journal: durable before the first change, verified restore, crash leftovers.

The simulated boards keep their state in the test's memory; they stand for hardware whose
settings outlive the process that changed them (as real GPUs' do until a driver reload).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infergy.core.gpu_model import H200, L4
from infergy.maxq.control import GpuSettings
from infergy.maxq.errors import ControlError, ControlPermissionError, JournalError, RestoreError
from infergy.maxq.journal import (
    JOURNAL_FILE,
    JournalOwner,
    current_owner,
    find_journal,
    owner_alive,
    read_journal,
    restore,
    restore_leftover,
    start_changes,
    write_journal,
)
from infergy.maxq.sim_control import SimulatedGpuControl

REPO = Path(__file__).resolve().parents[3]


def boards() -> list[SimulatedGpuControl]:
    return [SimulatedGpuControl(H200, index=0), SimulatedGpuControl(L4, index=1)]


def change(gpus: list[SimulatedGpuControl]) -> None:
    gpus[0].set_power_limit_w(300)
    gpus[0].lock_sm_clocks_mhz(1200, 1200)
    gpus[0].lock_mem_clocks_mhz(2201, 2201)
    gpus[1].set_power_limit_w(50)


def test_the_journal_holds_the_originals_and_reads_back_identically(tmp_path):
    gpus = boards()
    gpus[0].lock_sm_clocks_mhz(900, 1980)  # an operator's lock from before the sweep
    journal = start_changes(tmp_path, gpus, sweep_id="s1")
    assert journal.path == tmp_path / JOURNAL_FILE
    assert read_journal(journal.path) == journal
    assert [e.settings for e in journal.entries] == [
        GpuSettings(700.0, (900, 1980), None, simulated=True),
        GpuSettings(72.0, None, None, simulated=True),
    ]
    assert json.loads(journal.path.read_text())["gpus"][0]["simulated"] is True
    assert journal.path.stat().st_mode & 0o777 == 0o600


def test_restore_verifies_then_removes_the_journal_and_is_idempotent(tmp_path):
    gpus = boards()
    journal = start_changes(tmp_path, gpus, sweep_id="s1")
    change(gpus)
    report = restore(journal, gpus)
    assert report.removed and report.restored == (gpus[0].label, gpus[1].label)
    assert not journal.path.exists()
    assert gpus[0].settings() == GpuSettings(700.0, simulated=True)
    assert gpus[1].settings() == GpuSettings(72.0, simulated=True)
    again = restore(journal, gpus)
    assert not again.removed and again.restored == report.restored


def test_the_write_is_durable_fsync_then_rename_then_directory_fsync(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, Path.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if Path(f"/proc/self/fd/{fd}").is_dir() else "fsync-file")
        real_fsync(fd)

    def replace(self: Path, target: Path) -> Path:
        events.append("rename")
        return real_replace(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    write_journal(tmp_path, boards(), sweep_id="s1")
    assert events == ["fsync-file", "rename", "fsync-dir"]


def test_no_permission_fails_before_anything_is_written_or_changed(tmp_path):
    gpus = [SimulatedGpuControl(H200), SimulatedGpuControl(L4, index=1, permitted=False)]
    with pytest.raises(ControlPermissionError):
        start_changes(tmp_path, gpus, sweep_id="s1")
    assert find_journal(tmp_path) is None
    assert all(g.setter_calls == [] for g in gpus)


def test_a_second_sweep_is_refused_while_a_journal_is_left(tmp_path):
    start_changes(tmp_path, boards(), sweep_id="first")
    with pytest.raises(JournalError, match=r"sweep first .* restore it before a new sweep"):
        start_changes(tmp_path, boards(), sweep_id="second")


def test_a_failed_restore_names_the_gpu_keeps_the_journal_and_restores_the_others(tmp_path):
    gpus = boards()
    journal = start_changes(tmp_path, gpus, sweep_id="s1")
    change(gpus)
    # the same uuid as gpus[0], standing for that board when its first setter call fails
    broken = SimulatedGpuControl(H200, index=0, fail_on_setter_call=1)
    with pytest.raises(RestoreError) as info:
        restore(journal, [broken, gpus[1]])
    assert "GPU 0 (NVIDIA H200 (SIMULATED))" in str(info.value)
    assert "injected failure" in str(info.value)
    assert journal.path.exists(), "the journal must stay until every GPU verified"
    assert gpus[1].settings().power_limit_w == 72.0, "the other GPU is restored anyway"
    assert restore(journal, gpus).removed  # a later attempt finishes the job


class Stubborn(SimulatedGpuControl):
    """A board that accepts a power limit but keeps another (a BMC cap, a driver bug)."""

    def set_power_limit_w(self, power_limit_w: float) -> None:
        super().set_power_limit_w(min(power_limit_w, 450.0))


def test_a_mismatch_on_read_back_says_what_differs(tmp_path):
    gpu = Stubborn(H200)
    journal = start_changes(tmp_path, [gpu], sweep_id="s1")
    gpu.set_power_limit_w(300)
    with pytest.raises(RestoreError, match="reads back power limit 450 W, expected 700 W"):
        restore(journal, [gpu])
    assert journal.path.exists()


def test_a_gpu_missing_at_restore_is_an_error_not_silence(tmp_path):
    gpus = boards()
    journal = start_changes(tmp_path, gpus, sweep_id="s1")
    with pytest.raises(RestoreError, match=r"GPU-simulated-l4-0001\) is not present"):
        restore(journal, gpus[:1])


@pytest.mark.parametrize(
    "text", ["", "{not json", '{"kind": "other"}', json.dumps({"kind": "x", "gpus": []})]
)
def test_a_corrupt_journal_is_a_clear_error_with_a_manual_fallback(tmp_path, text):
    (tmp_path / JOURNAL_FILE).write_text(text)
    with pytest.raises(JournalError) as info:
        find_journal(tmp_path)
    assert JOURNAL_FILE in str(info.value)
    assert info.value.hint and "nvidia-smi" in info.value.hint


def test_a_temporary_file_from_an_interrupted_write_is_ignored_and_cleaned(tmp_path):
    stale = tmp_path / f".{JOURNAL_FILE}.12345.tmp"
    stale.write_text('{"half": ')
    assert find_journal(tmp_path) is None
    write_journal(tmp_path, boards(), sweep_id="s1")
    assert not stale.exists()


def test_owner_liveness_uses_pid_start_time_and_boot_id(tmp_path):
    me = current_owner()
    assert me.pid == os.getpid() and me.start_ticks is not None
    assert owner_alive(me)
    assert not owner_alive(JournalOwner(me.pid, me.start_ticks + 1, me.boot_id)), "pid reused"
    assert not owner_alive(JournalOwner(me.pid, me.start_ticks, "another-boot"))


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from infergy.maxq.journal import start_changes
    from infergy.maxq.sim_control import SimulatedGpuControl
    from infergy.core.gpu_model import H200, L4
    gpus = [SimulatedGpuControl(H200, index=0), SimulatedGpuControl(L4, index=1)]
    start_changes(Path(sys.argv[1]), gpus, sweep_id="killed-sweep")
    gpus[0].set_power_limit_w(300)  # the changes the parent's boards stand in for
    print("changed", flush=True)
    time.sleep(60)
    """
)


def spawn_sweep(state_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "changed"
    return child


def test_a_journal_left_by_a_sigkilled_process_is_restored_at_the_next_start(tmp_path):
    child = spawn_sweep(tmp_path)
    try:
        with pytest.raises(JournalError, match=r"killed-sweep .* is still running"):
            restore_leftover(tmp_path, boards())  # its owner is alive: hands off
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert child.stdout is not None
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    gpus = boards()
    change(gpus)  # what the killed sweep left on the hardware
    report = restore_leftover(tmp_path, gpus)
    assert report is not None and report.journal.sweep_id == "killed-sweep"
    assert report.journal.owner.pid == child.pid
    assert gpus[0].settings() == GpuSettings(700.0, simulated=True)
    assert gpus[1].settings() == GpuSettings(72.0, simulated=True)
    assert find_journal(tmp_path) is None
    assert restore_leftover(tmp_path, gpus) is None  # nothing left the second time


def test_our_own_journal_is_restorable_by_restore_leftover(tmp_path):
    gpus = boards()
    start_changes(tmp_path, gpus, sweep_id="mine")
    change(gpus)
    report = restore_leftover(tmp_path, gpus)
    assert report is not None and report.removed


def test_a_setter_failing_mid_sweep_leaves_a_restorable_journal(tmp_path):
    gpu = SimulatedGpuControl(H200, fail_on_setter_call=3)
    journal = start_changes(tmp_path, [gpu], sweep_id="s1")
    gpu.set_power_limit_w(400)
    gpu.lock_sm_clocks_mhz(1300, 1300)
    with pytest.raises(ControlError):
        gpu.set_power_limit_w(350)
    restore(journal, [gpu])
    assert gpu.settings() == GpuSettings(700.0, simulated=True)
