"""``infergy run --workload llm`` on the simulated H200: the screen, the files, and bad input.

The sim backend needs no torch: its steps sleep the modelled prefill and decode times, through
the real LoadGen child. A refused run (lengths beyond the context, a batch whose KV cache does
not fit, a token bound below what the warm-up measured) is one error line with a hint, exit
code 2, no run folder, nothing stored and no process left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _infergy(tmp_path: Path, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    config = tmp_path / "infergy.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "store.db"}"\n[output]\ndir = "{tmp_path / "out"}"\n'
        "[meters]\nrapl = false\n",
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", COLUMNS="100")
    cmd = [sys.executable, "-m", "infergy", "run", "--config", str(config), "--backend", "sim",
           "--workload", "llm", "--meter", "sim", "--idle", "1", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=timeout_s, check=False)  # fmt: skip


def _left_running(tmp_path: Path) -> list[str]:
    """Processes whose command line names this test's folder (the LoadGen child's does)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(tmp_path) in cmdline:
                found.append(cmdline)
    return found


def _refused(tmp_path: Path, out: subprocess.CompletedProcess, needle: str, hint: str) -> None:
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], text
    assert any(line.startswith("hint:") and hint in line for line in text.splitlines()), text
    assert "Traceback" not in text
    runs = list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else []
    assert runs == [], f"a refused run left {runs}"
    assert _left_running(tmp_path) == [], "a refused run left a process running"


def test_lengths_beyond_the_context_are_refused_before_anything_starts(tmp_path: Path) -> None:
    out = _infergy(tmp_path, "--input-tokens", "8000", "--output-tokens", "500")
    _refused(tmp_path, out, "need 8500 tokens of context; llama-8b-shape holds 8192",
             "shorten --input-tokens")  # fmt: skip


def test_a_batch_that_does_not_fit_names_the_largest_that_does(tmp_path: Path) -> None:
    out = _infergy(tmp_path, "--batch-size", "4096", "--input-tokens", "4000")
    _refused(tmp_path, out, "llama-8b-shape at batch 4096 needs", "--batch-size 209 (the largest")


def test_a_ttft_bound_below_one_prefill_is_refused_after_warm_up(tmp_path: Path) -> None:
    out = _infergy(tmp_path, "--scenario", "server", "--target-qps", "0.5", "--ttft-ms", "1",
                   "--warmup", "2", "--duration", "3")  # fmt: skip
    _refused(tmp_path, out, "a TTFT bound of 1 ms cannot be met", "use --ttft-ms above")


def test_an_offline_run_shows_and_keeps_energy_per_token_by_phase(tmp_path: Path) -> None:
    out = _infergy(tmp_path, "--warmup", "3", "--duration", "5", "--batch-size", "16",
                   "--input-tokens", "normal:256:64", "--output-tokens", "32:96")  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode in (0, 3), text
    assert "Energy per token" in text and "mJ/token" in text and "TTFT p50/p99" in text
    (run_dir,) = (tmp_path / "out").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    gen = result["generative"]
    sim = gen["sources"]["sim"]
    assert sim["joules_per_output_token"] > 0 and sim["joules_per_output_token_uncertainty"]
    parts = sim["prefill_joules"] + sim["decode_joules"] + sim["other_joules"]
    assert parts == pytest.approx(sim["energy_joules"], rel=1e-9)  # the split conserves energy
    assert gen["output_tokens"] > 0 and gen["ttft_ms"]["p50"] > 0
    assert (run_dir / "llm_phases.png").stat().st_size > 10_000
    assert result["power"]["sim"]["simulated"] is True


def test_a_refused_service_session_leaves_no_checkpoint_in_the_store(tmp_path: Path) -> None:
    """As under `infergy serve`: checkpoints every 0.5 s, then the token bound is refused."""
    import asyncio  # noqa: PLC0415

    from infergy.config.settings import Settings  # noqa: PLC0415
    from infergy.daemon.jobs import JobSpec  # noqa: PLC0415
    from infergy.daemon.session import Session  # noqa: PLC0415
    from infergy.errors import LoadgenSettingsError  # noqa: PLC0415
    from infergy.store.db import Store  # noqa: PLC0415

    settings = Settings.model_validate({
        "output": {"dir": str(tmp_path / "out")}, "store": {"path": str(tmp_path / "store.db")},
        "meters": {"rapl": False}, "session": {"tail_s": 0.5},
    })  # fmt: skip
    spec = JobSpec.model_validate({
        "backend": "sim", "workload": "llm", "meter": ["sim"], "scenario": "server",
        "target_qps": 0.5, "ttft_ms": 1, "duration": 3, "idle": 1, "warmup": 2,
    })  # fmt: skip
    with Store.open(tmp_path / "store.db") as store:
        session = Session("refused", spec, settings, store=store, checkpoint_s=0.5)
        with pytest.raises(LoadgenSettingsError, match="TTFT bound of 1 ms"):
            asyncio.run(session.run())
        assert store.find_result("refused") is None, "a refused run left its checkpoint"
    assert not (tmp_path / "out" / "refused").exists()
