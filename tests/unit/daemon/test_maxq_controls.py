"""Finding a left journal's GPUs again and restoring them (what every start does)."""

from __future__ import annotations

from pathlib import Path

from infergy.core.gpu_model import H200, ModelSettings
from infergy.daemon.maxq_controls import controls_for, describe_restore, restore_left_journal
from infergy.daemon.meters import SIMULATED_BOARDS_DIR
from infergy.maxq.journal import JOURNAL_FILE, start_changes
from infergy.maxq.sim_control import SimulatedGpuControl
from infergy.meters.gpu_sim import SimulatedGpu
from infergy.meters.sim_board import SimulatedBoard


def test_a_left_journal_is_restored_on_boards_made_again_from_their_uuid(tmp_path: Path) -> None:
    boards_dir = tmp_path / SIMULATED_BOARDS_DIR
    board = SimulatedBoard(H200, 1, state_dir=boards_dir)
    start_changes(tmp_path, [SimulatedGpuControl.for_board(board)], sweep_id="mq-x")
    board.set_settings(ModelSettings(350.0, (1200, 1200)))  # the sweep's change, then a crash
    assert restore_left_journal(tmp_path / "elsewhere") is None  # no journal there: nothing
    report = restore_left_journal(tmp_path)  # a new process: no board open, made from the UUID
    assert report is not None and report.restored == ("GPU 1 (NVIDIA H200 (SIMULATED))",)
    assert "mq-x" in describe_restore(report)
    assert SimulatedBoard(H200, 1, state_dir=boards_dir).settings == ModelSettings(700.0)
    assert not (tmp_path / JOURNAL_FILE).exists()


def test_each_device_gets_the_control_that_can_change_it() -> None:
    modelled = SimulatedGpu(0, board=SimulatedBoard(H200))
    controls = controls_for([modelled, SimulatedGpu(1)])
    assert isinstance(controls[0], SimulatedGpuControl) and controls[1] is None
    assert controls[0].uuid == modelled.identity.uuid
