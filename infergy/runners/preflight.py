"""What a session checks before it starts anything: settings that cannot work fail in a second.

A missing model file, a calibration folder that is not there or a LoadGen schedule too large to
hold are known from the job alone; found after the idle baseline and the warm-up, they cost a
minute and look like a measurement failure. :func:`preflight` runs first, before the meters
open, and raises the same errors the workload would (exit code 2).
"""

from __future__ import annotations

from infergy.errors import WorkloadError
from infergy.runners.lg_settings import check_schedule
from infergy.runners.models import check_model
from infergy.runners.types import WorkloadConfig


def preflight(cfg: WorkloadConfig) -> WorkloadConfig:
    """Check ``cfg`` without loading anything; returns it validated.

    Raises:
        WorkloadError: (ModelError, LoadgenSettingsError...) one clear line and a hint.
    """
    cfg = cfg.validate()
    check_model(cfg.backend, cfg.model)
    data = cfg.calibration_data
    if data is not None and not data.exists():
        msg = f"calibration data {str(data)!r} does not exist"
        raise WorkloadError(msg, hint="give a folder of .npy batches or one .npz file")
    check_schedule(cfg)
    return cfg
