"""MQTT job requests: validation, replies, and never crashing on a bad payload."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infergy.daemon.jobs import JobSpec
from infergy.daemon.mqtt_commands import MAX_COMMAND_BYTES, CommandHandler
from infergy.errors import InputError
from infergy.exporters.mqtt_support import Reply


class Jobs:
    def __init__(self) -> None:
        self.submitted: list[JobSpec] = []
        self.cancelled: list[str] = []

    async def submit(self, spec: JobSpec) -> str:
        self.submitted.append(spec)
        return f"run-{len(self.submitted)}"

    async def cancel(self, run_id: str) -> bool:
        self.cancelled.append(run_id)
        return run_id == "run-1"


def handle(handler: CommandHandler, verb: str, payload: bytes | dict[str, Any]) -> Reply | None:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return asyncio.run(handler.handle(verb, raw))


@pytest.fixture
def jobs() -> Jobs:
    return Jobs()


@pytest.fixture
def handler(jobs: Jobs) -> CommandHandler:
    return CommandHandler(jobs.submit, jobs.cancel, timeout_s=1.0)


def test_a_valid_run_is_submitted_as_a_jobspec_and_acknowledged(
    handler: CommandHandler, jobs: Jobs
) -> None:
    body = {"request_id": "r-1_A", "backend": "onnxruntime", "scenario": "SingleStream"}
    reply = handle(handler, "run", body | {"duration": 10})
    assert reply == Reply("r-1_A", {"ok": True, "request_id": "r-1_A", "run_id": "run-1"})
    assert jobs.submitted == [
        JobSpec(backend="onnxruntime", scenario="single-stream", duration=10.0)
    ]
    assert json.loads(reply.payload()) == reply.body


def test_an_invalid_run_gets_every_field_error_and_submits_nothing(
    handler: CommandHandler, jobs: Jobs
) -> None:
    reply = handle(
        handler, "run", {"request_id": "r2", "duration": -1, "backend": "tpu", "colour": "red"}
    )
    assert reply is not None and reply.ok is False
    locs = {tuple(e["loc"]) for e in reply.body["errors"]}
    assert locs == {("duration",), ("backend",), ("colour",)}
    assert all(e["msg"] for e in reply.body["errors"])
    assert jobs.submitted == []
    assert (handler.requests_total, handler.errors_total) == (1, 1)


def test_model_level_errors_are_reported_too(handler: CommandHandler) -> None:
    reply = handle(handler, "run", {"request_id": "r3", "scenario": "server"})
    assert reply is not None and not reply.ok
    assert "target_qps" in reply.body["errors"][0]["msg"]


def test_cancel_known_unknown_and_malformed(handler: CommandHandler, jobs: Jobs) -> None:
    ok = handle(handler, "cancel", {"request_id": "c1", "run_id": "run-1"})
    assert ok is not None and ok.body == {"ok": True, "request_id": "c1", "run_id": "run-1"}
    unknown = handle(handler, "cancel", {"request_id": "c2", "run_id": "run-9"})
    assert unknown is not None and unknown.body["errors"][0]["loc"] == ["run_id"]
    bad = handle(handler, "cancel", {"request_id": "c3", "run_id": "../etc/passwd"})
    assert bad is not None and bad.body["errors"][0]["loc"] == ["run_id"]
    missing = handle(handler, "cancel", {"request_id": "c4"})
    assert missing is not None and missing.body["errors"][0]["loc"] == ["run_id"]
    assert jobs.cancelled == ["run-1", "run-9"]


@pytest.mark.parametrize("request_id", [None, "", "a/b", "#", "+", "../x", "x" * 65, 7, "é", "a b"])
def test_without_a_usable_request_id_there_is_no_reply(
    handler: CommandHandler, jobs: Jobs, request_id: object, caplog: pytest.LogCaptureFixture
) -> None:
    body: dict[str, Any] = {"backend": "onnxruntime"}
    if request_id is not None:
        body["request_id"] = request_id
    assert handle(handler, "run", body) is None
    assert jobs.submitted == []
    assert handler.errors_total == 1
    assert "dropped" in caplog.text


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b'{"request_id": "n1", "duration": ', "not JSON"),
        (b'{"request_id": "n1", "duration": NaN}', "NaN"),
        (b'{"request_id": "n1", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested"),
        (b'{"request_id": "n1", "label": "' + b"x" * MAX_COMMAND_BYTES + b'"}', "larger"),
        (b'\xff\xfe{"request_id": "n1"}', "not JSON"),
    ],
)
def test_broken_payloads_get_a_clear_error_reply_when_the_id_can_be_read(
    handler: CommandHandler, jobs: Jobs, payload: bytes, needle: str
) -> None:
    reply = handle(handler, "run", payload)
    assert reply is not None and reply.request_id == "n1" and not reply.ok
    assert needle in reply.body["errors"][0]["msg"]
    assert jobs.submitted == []


@pytest.mark.parametrize("payload", [b"", b"[]", b'"run"', b"null", b"\x00\x01"])
def test_non_objects_are_dropped(handler: CommandHandler, payload: bytes) -> None:
    assert handle(handler, "run", payload) is None


def test_unknown_verbs_and_missing_collaborators_are_refused() -> None:
    none = CommandHandler(None, None)
    for verb in ("run", "cancel", "reboot"):
        reply = handle(none, verb, {"request_id": "v1", "run_id": "x"})
        assert reply is not None and "not accepted" in reply.body["errors"][0]["msg"]


def test_a_refusing_slow_or_broken_service_is_an_error_reply_not_a_crash() -> None:
    async def refuse(spec: JobSpec) -> str:
        raise InputError("the job queue is full", hint="retry later")

    async def hang(spec: JobSpec) -> str:
        await asyncio.sleep(10)
        return "never"

    async def bug(spec: JobSpec) -> str:
        raise KeyError("oops")

    body = {"request_id": "s1"}
    reply = handle(CommandHandler(refuse, None), "run", body)
    assert reply is not None and reply.body["errors"][0]["msg"] == (
        "the job queue is full (retry later)"
    )
    reply = handle(CommandHandler(hang, None, timeout_s=0.05), "run", body)
    assert reply is not None and "did not answer" in reply.body["errors"][0]["msg"]
    reply = handle(CommandHandler(bug, None), "run", body)
    assert reply is not None and "internal error: KeyError" in reply.body["errors"][0]["msg"]


@given(st.binary(max_size=300), st.sampled_from(["run", "cancel", "x"]))
def test_arbitrary_bytes_never_raise(payload: bytes, verb: str) -> None:
    handler = CommandHandler(Jobs().submit, Jobs().cancel)
    reply = handle(handler, verb, payload)
    assert reply is None or isinstance(reply.payload(), bytes)


@given(
    st.dictionaries(
        st.sampled_from(["backend", "duration", "scenario", "gpus", "meter", "batch_size", "zz"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=5)
        | st.lists(st.integers(), max_size=3),
    )
)
def test_arbitrary_job_fields_get_a_reply_with_ok_or_errors(fields: dict[str, Any]) -> None:
    reply = handle(CommandHandler(Jobs().submit, None), "run", {"request_id": "h", **fields})
    assert reply is not None
    assert reply.ok or reply.body["errors"]
    json.loads(reply.payload())


def test_an_unknown_scenario_is_a_field_error(handler: CommandHandler) -> None:
    reply = handle(handler, "run", {"request_id": "s", "scenario": "nope"})
    assert reply is not None and reply.body["errors"][0]["loc"] == ["scenario"]


def test_a_setting_the_scenario_ignores_is_refused_as_on_the_command_line(
    handler: CommandHandler, jobs: Jobs
) -> None:
    reply = handle(handler, "run", {"request_id": "q", "scenario": "offline", "target_qps": 5})
    assert reply is not None and not reply.ok
    assert "target_qps is a server setting" in reply.body["errors"][0]["msg"]
    assert jobs.submitted == []


def test_cmd_maxq_validates_through_the_sweep_model_and_replies_the_sweep_id(jobs: Jobs) -> None:
    sweeps: list[Any] = []

    async def submit_sweep(spec: Any) -> str:
        sweeps.append(spec)
        return "mq-1"

    handler = CommandHandler(jobs.submit, jobs.cancel, timeout_s=1.0, submit_sweep=submit_sweep)
    body = {"request_id": "s1", "backend": "sim", "power_limits": "200:700:50"}
    reply = handle(handler, "maxq", body)
    assert reply == Reply("s1", {"ok": True, "request_id": "s1", "sweep_id": "mq-1"})
    assert sweeps[0].power_limits == "200:700:50" and jobs.submitted == []
    bad = handle(handler, "maxq", {"request_id": "s2", "power_limits": "700:200:50"})
    assert bad is not None and not bad.ok
    assert bad.body["errors"][0]["loc"] == ["power_limits"]
    assert "runs backwards" in bad.body["errors"][0]["msg"]
    without = CommandHandler(jobs.submit, jobs.cancel, timeout_s=1.0)  # a node taking no sweeps
    refused = handle(without, "maxq", body)
    assert (
        refused is not None
        and "not accepted here (run, cancel)" in refused.body["errors"][0]["msg"]
    )
    assert len(sweeps) == 1
