"""The suite is hermetic: what a test runs never reads or writes the user's own infergy state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infergy.config.paths import default_store_path
from tests.conftest import REAL_HOME

ROOT = Path(__file__).resolve().parents[3]
EX = ROOT / "examples" / "single-stream"


def test_an_infergy_subprocess_stores_its_run_in_the_sessions_state_not_the_users() -> None:
    """``infergy analyze`` without ``--no-store`` (as test_prometheus_live runs it)."""
    done = subprocess.run(
        [sys.executable, "-m", "infergy", "analyze", "--json",
         "--power", f"ac={EX / 'ptd_log.txt'}", "--loadgen-log", str(EX)],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    store = default_store_path(os.environ)
    assert store.is_file(), f"the run was not stored at {store}"
    assert REAL_HOME and not store.is_relative_to(REAL_HOME), (
        f"a test wrote into the user's store {store} (HOME was {REAL_HOME})"
    )
    assert not {k for k in os.environ if k.startswith("INFERGY_") or k == "STATE_DIRECTORY"}
