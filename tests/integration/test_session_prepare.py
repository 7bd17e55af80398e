"""A session that fails before it measures says what failed and leaves nothing misleading.

No ``aborted`` run in the store (nobody aborted it), no run folder with a runner traceback;
and an output folder that cannot be created is one clean exit-2 line, before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from infergy.cli.app import main
from infergy.daemon.meters import MeterSet
from infergy.daemon.session import Session
from infergy.errors import AnalyzerError, MeterError, ModelError
from infergy.runners.scratch import remove_scratch
from infergy.store.db import Store
from tests.fake_runner import FakeRunner
from tests.integration.test_session import _settings, _spec

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def not_a_ptd_server() -> AsyncIterator[int]:
    """A TCP port that answers like a web server, not like PTDaemon."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def _stored(tmp_path: Path) -> list[str]:
    with Store.open(tmp_path / "store.db") as store:
        return [r.run_id for r in store.list_runs()]


def test_a_meter_failing_in_preparation_is_its_error_not_an_aborted_run(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    async def scenario() -> None:
        async with not_a_ptd_server() as port:
            spec = _spec(meter=[f"ptd://127.0.0.1:{port}"])
            with Store.open(tmp_path / "store.db") as store:
                session = Session("p1", spec, settings, store=store, runners=FakeRunner.open)
                await session.run()

    with pytest.raises(AnalyzerError) as info:
        asyncio.run(scenario())
    assert "127.0.0.1" in str(info.value), info.value  # names the meter that failed
    assert _stored(tmp_path) == []  # was: an "aborted" run, "could not stop the analyzer: "
    assert not (tmp_path / "out" / "p1").exists()


def test_a_meter_failing_later_keeps_the_run_as_failed_saying_why(tmp_path: Path) -> None:
    """After preparation the data so far is kept, but as ``failed``: nobody aborted it."""
    settings = _settings(tmp_path)

    async def breaking(*args: Any, **kw: Any) -> MeterSet:
        meter_set = await MeterSet.open(*args, **kw)
        meter = meter_set.meters[0]
        sampling = meter.run

        async def run() -> None:
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(sampling())
                await asyncio.sleep(2.5)  # in the idle baseline or the warm-up
                task.cancel()
            raise MeterError("the analyzer's line went dead")

        meter.run = run  # type: ignore[method-assign]
        return meter_set

    async def scenario() -> None:
        with Store.open(tmp_path / "store.db") as store:
            spec = _spec(idle=2.0, warmup=2.0)
            await Session("p3", spec, settings, store=store, runners=FakeRunner.open,
                          meters=breaking).run()  # fmt: skip

    with pytest.raises(MeterError, match="went dead"):
        asyncio.run(scenario())
    with Store.open(tmp_path / "store.db") as store:
        result = store.get_result("p3")
    assert result["status"] == "failed", result["problems"]
    assert any("failed during the" in p and "went dead" in p for p in result["problems"])
    assert not any("aborted" in p for p in result["problems"])


def test_a_model_that_is_not_there_leaves_no_run_folder(tmp_path: Path) -> None:
    """The real runner: its child reported ModelError; runner/ with a traceback stayed."""
    settings = _settings(tmp_path)
    spec = _spec(model=str(tmp_path / "missing.onnx"))

    async def scenario() -> None:
        with Store.open(tmp_path / "store.db") as store:
            await Session("p2", spec, settings, store=store).run()

    with pytest.raises(ModelError, match=r"missing\.onnx"):
        asyncio.run(scenario())
    assert _stored(tmp_path) == []
    left = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "out").rglob("*"))
    assert left == [], left


@pytest.mark.parametrize("kind", ["in /proc", "a file"])
def test_an_output_folder_that_cannot_be_made_is_one_exit_2_line(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INFERGY_CONFIG", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    out = Path("/proc/infergy-nope") if kind == "in /proc" else tmp_path / "a-file"
    if kind == "a file":
        out.write_text("")
    args = ["run", "--meter", "sim", "--idle", "0", "--warmup", "0", "--duration", "1"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot create the run's folder {out}/"), err
    assert err.splitlines()[-1] == "hint: --out (or [output] dir) must be a writable directory"
    assert "internal error" not in err and "Traceback" not in err


def test_scratch_goes_and_what_tells_something_stays(tmp_path: Path) -> None:
    run = tmp_path / "r"
    (run / "runner" / "loadgen-warmup").mkdir(parents=True)
    (run / "loadgen").mkdir()
    for name in ("queries-run.bin", "queries-warmup.bin", "status.bin"):
        (run / "runner" / name).write_bytes(b"\0" * 64)
    (run / "runner" / "loadgen-warmup" / "mlperf_log_detail.txt").write_text("x")
    (run / "runner" / "child.log").write_text("")
    (run / "loadgen" / "mlperf_log_trace.json").write_text("")
    (run / "loadgen" / "mlperf_log_detail.txt").write_text(":::MLLOG {}")
    remove_scratch(run)
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == [
        "loadgen",
        "loadgen/mlperf_log_detail.txt",
    ]
    (run / "runner").mkdir()
    (run / "runner" / "child.log").write_text("Traceback (most recent call last): ...")
    remove_scratch(run, keep_dir=False)
    assert (run / "runner" / "child.log").is_file()  # an unexpected error's traceback stays
    empty = tmp_path / "empty"
    (empty / "runner").mkdir(parents=True)
    remove_scratch(empty, keep_dir=False)
    assert not empty.exists()
