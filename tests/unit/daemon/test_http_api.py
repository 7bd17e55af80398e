"""The HTTP control API through aiohttp's test server: every endpoint, errors, auth, ids."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from infergy.daemon.http_api import build_app
from infergy.daemon.http_models import ComponentHealth
from infergy.daemon.jobs import JobSpec
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.daemon.scheduler import JobScheduler, JobState
from infergy.errors import ConfigError
from tests.unit.daemon.fakes import FakeSessions, settle

TOKEN = "s3cret-token-0123456789abcdef"
SPEC = {"backend": "onnxruntime", "scenario": "single-stream", "duration": 10}
Body = Callable[
    [TestClient[web.Request, web.Application], JobScheduler, FakeSessions], Awaitable[None]
]


def api(
    body: Body, sessions: FakeSessions | None = None, max_queued: int = 8, **app_kw: Any
) -> None:
    """Run ``body`` against the app over a scheduler, in one TaskGroup like the service."""
    fake = sessions or FakeSessions()
    app_kw.setdefault("token", None)
    app_kw.setdefault("max_body_bytes", 4096)

    async def main() -> None:
        scheduler = JobScheduler(fake, max_queued=max_queued)
        app = build_app(scheduler, **app_kw)
        async with asyncio.timeout(10), asyncio.TaskGroup() as tg:
            tg.create_task(scheduler.run(), name="infergy-scheduler")
            async with TestClient(TestServer(app)) as client:
                await body(client, scheduler, fake)
            for run_id in list(fake.gates):
                fake.release(run_id)
            await scheduler.drain(timeout_s=1)

    asyncio.run(main())


def error_types(data: dict[str, Any]) -> list[str]:
    assert set(data) == {"errors"}
    for item in data["errors"]:
        assert set(item) == {"loc", "msg", "type"}
        assert "Traceback" not in item["msg"]
    return [item["type"] for item in data["errors"]]


# -- POST /v1/runs ---------------------------------------------------------------------------


def test_post_queues_a_job_and_get_follows_it_to_its_result() -> None:
    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        r = await client.post("/v1/runs", json=SPEC)
        assert r.status == 202
        data = await r.json()
        run_id = data["run_id"]
        assert data == {"run_id": run_id, "status_url": f"/v1/runs/{run_id}", "state": "queued"}
        assert r.headers["Location"] == data["status_url"]
        await fake.wait_started(1)
        r = await client.get(data["status_url"])
        assert r.status == 200
        view = await r.json()
        assert view["state"] == "running"
        assert view["spec"]["scenario"] == "single-stream"
        assert view["started_unix_ns"] >= view["submitted_unix_ns"] > 0
        assert view["result"] is None
        fake.release(run_id)
        await settle()
        view = await (await client.get(data["status_url"])).json()
        assert view["state"] == "ok"
        assert view["result"]["run_id"] == run_id
        assert view["summary"]["samples_per_second"] == 100.0

    api(body)


def test_a_network_backend_job_is_accepted_and_a_bad_endpoint_is_a_422() -> None:
    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        job = {"backend": "kserve", "endpoint": "http://127.0.0.1:8000/v2/models/resnet",
               "concurrency": 32, "duration": 10}  # fmt: skip
        r = await client.post("/v1/runs", json=job)
        assert r.status == 202, await r.text()
        (queued,) = s.list_jobs()
        assert queued.spec.endpoint == job["endpoint"] and queued.spec.concurrency == 32
        r = await client.post("/v1/runs", json={**job, "endpoint": "http://h/models/x"})
        assert r.status == 422
        assert "not a KServe v2 model URL" in (await r.json())["errors"][0]["msg"]

    api(body)


def test_field_errors_are_422_with_locations() -> None:
    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        bad = {"scenario": "server", "duration": -1, "batch_size": 0, "colour": "red"}
        r = await client.post("/v1/runs", json=bad)
        assert r.status == 422
        data = await r.json()
        error_types(data)
        by_loc = {tuple(e["loc"]): e for e in data["errors"]}
        assert set(by_loc) == {("body", "duration"), ("body", "batch_size"), ("body", "colour")}
        assert by_loc[("body", "colour")]["type"] == "extra_forbidden"
        assert by_loc[("body", "duration")]["type"] == "greater_than"
        r = await client.post("/v1/runs", json={"scenario": "server"})  # the model validator
        data = await r.json()
        assert r.status == 422
        assert "target_qps" in data["errors"][0]["msg"]
        r = await client.post("/v1/runs", json=[1, 2])
        assert r.status == 422
        # types as the schema states them: no coercion of "10" or 0 (found by schemathesis)
        r = await client.post("/v1/runs", json={"duration": "10", "strict": 0, "gpus": ["0"]})
        data = await r.json()
        assert r.status == 422
        assert sorted(tuple(e["loc"]) for e in data["errors"]) == [
            ("body", "duration"),
            ("body", "gpus", 0),
            ("body", "strict"),
        ]
        r = await client.post("/v1/runs", json={"scenario": "offline", "target_qps": 5})
        assert r.status == 422  # refused as the command line and MQTT refuse it (one JobSpec)
        assert "target_qps is a server setting" in (await r.json())["errors"][0]["msg"]
        r = await client.post("/v1/runs", json={"scenario": "bogus"})  # was a 500
        assert r.status == 422
        data = await r.json()
        assert data["errors"][0]["loc"][0] == "body"
        assert "scenario" in data["errors"][0]["msg"]
        assert s.list_jobs() == []

    api(body)


def test_malformed_json_is_400_and_a_web_pages_non_json_is_415() -> None:
    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        r = await client.post(
            "/v1/runs", data=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert r.status == 400
        assert error_types(await r.json()) == ["json_invalid"]
        r = await client.post("/v1/runs", data=b"scenario=offline")  # a form, not JSON
        assert r.status == 400, await r.text()
        assert error_types(await r.json()) == ["json_invalid"]
        page = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
        r = await client.post("/v1/runs", data=json.dumps(SPEC), headers=page)
        assert r.status == 415, await r.text()  # a web page must send JSON (preflighted)
        assert error_types(await r.json()) == ["unsupported_media_type"]
        assert s.list_jobs() == []
        r = await client.post(
            "/v1/runs",
            data=json.dumps(SPEC),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert r.status == 202

    api(body)


def test_the_documented_curl_line_is_accepted_without_a_content_type() -> None:
    """``curl -s -XPOST localhost:8765/v1/runs -d '{...}'``: curl labels it form data."""

    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        curl = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "curl/8.5.0"}
        r = await client.post("/v1/runs", data=json.dumps(SPEC), headers=curl)
        assert r.status == 202, await r.text()
        r = await client.post("/v1/runs", data=json.dumps(SPEC), skip_auto_headers=["Content-Type"])
        assert r.status == 202, await r.text()
        assert len(s.list_jobs()) == 2

    api(body)


def test_bodies_over_the_limit_are_413_whether_announced_or_chunked() -> None:
    async def chunks() -> Any:
        yield b'{"label": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        big = {**SPEC, "label": "x" * 150, "meter": ["sim"] * 400}
        r = await client.post("/v1/runs", json=big)
        assert r.status == 413
        assert error_types(await r.json()) == ["too_large"]
        r = await client.post(
            "/v1/runs", data=chunks(), headers={"Content-Type": "application/json"}
        )
        assert r.status == 413
        assert error_types(await r.json()) == ["too_large"]
        assert s.list_jobs() == []

    api(body, max_body_bytes=2048)


def test_a_full_queue_is_503_with_retry_after() -> None:
    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        assert (await client.post("/v1/runs", json=SPEC)).status == 202
        await fake.wait_started(1)
        assert (await client.post("/v1/runs", json=SPEC)).status == 202
        r = await client.post("/v1/runs", json=SPEC)
        assert r.status == 503
        assert r.headers["Retry-After"] == "30"
        data = await r.json()
        assert error_types(data) == ["queue_full"]
        assert "full" in data["errors"][0]["msg"]

    api(body, max_queued=1)


# -- GET /v1/runs ----------------------------------------------------------------------------


def test_list_filters_by_status_and_limits() -> None:
    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        ids = [
            (await (await client.post("/v1/runs", json=SPEC)).json())["run_id"] for _ in range(3)
        ]
        await fake.wait_started(1)
        r = await client.get("/v1/runs")
        assert r.status == 200
        assert [v["run_id"] for v in (await r.json())["runs"]] == ids[::-1]
        queued = await (await client.get("/v1/runs?status=queued")).json()
        assert [v["run_id"] for v in queued["runs"]] == ids[:0:-1]
        one = await (await client.get("/v1/runs?limit=1")).json()
        assert len(one["runs"]) == 1
        for query, kind in [
            ("status=done", "invalid_status"),
            ("limit=0", "invalid_limit"),
            ("limit=1001", "invalid_limit"),
            ("limit=-1", "invalid_limit"),
            ("limit=ten", "invalid_limit"),
            ("limit=%D9%A3", "invalid_limit"),  # an Arabic-Indic digit is not ASCII
        ]:
            r = await client.get(f"/v1/runs?{query}")
            assert r.status == 400, query
            data = await r.json()
            assert error_types(data) == [kind]
            assert data["errors"][0]["loc"] == ["query", query.split("=")[0]]

    api(body)


# -- GET /v1/runs/{id}: ids, the store, 404 ---------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/runs/..%2F..%2Fetc%2Fpasswd", 400),
        ("/v1/runs/..", 404),  # the client resolves it to /v1/: no route
        ("/v1/runs/.hidden", 400),
        ("/v1/runs/-rf", 400),
        ("/v1/runs/a%00b", 400),
        ("/v1/runs/a%20b", 400),
        ("/v1/runs/" + "a" * 129, 400),
        ("/v1/runs/%E2%9C%93", 400),
    ],
)
def test_malformed_run_ids_are_refused_before_any_lookup(path: str, status: int) -> None:
    looked_up: list[str] = []

    async def lookup(run_id: str) -> dict[str, Any] | None:
        looked_up.append(run_id)
        return None

    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        for method in ("GET", "DELETE"):
            r = await client.request(method, path)
            assert r.status == status, (method, path, r.status)
            expected = "invalid_run_id" if status == 400 else "not_found"
            assert error_types(await r.json()) == [expected]
        assert looked_up == []

    api(body, result_lookup=lookup)


def test_stored_runs_from_earlier_lifetimes_are_served_and_unknown_ids_are_404() -> None:
    stored = {"run_id": "20250101T000000Z-abcdef", "status": "degraded", "problems": ["gap"]}

    async def lookup(run_id: str) -> dict[str, Any] | None:
        return stored if run_id == stored["run_id"] else None

    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        r = await client.get(f"/v1/runs/{stored['run_id']}")
        assert r.status == 200
        view = await r.json()
        assert view["state"] == "degraded"
        assert view["result"] == stored
        assert view["spec"] is None
        assert view["summary"]["problems"] == ["gap"]
        r = await client.get("/v1/runs/20250101T000000Z-000000")
        assert r.status == 404
        assert error_types(await r.json()) == ["not_found"]

    api(body, result_lookup=lookup)


def test_a_finished_job_prefers_the_stored_result() -> None:
    async def lookup(run_id: str) -> dict[str, Any] | None:
        return {"run_id": run_id, "status": "ok", "from": "store"}

    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        run_id = (await (await client.post("/v1/runs", json=SPEC)).json())["run_id"]
        await fake.wait_started(1)
        await settle()
        view = await (await client.get(f"/v1/runs/{run_id}")).json()
        assert view["result"]["from"] == "store"

    api(body, FakeSessions(auto=True), result_lookup=lookup)


# -- DELETE /v1/runs/{id} --------------------------------------------------------------------


def test_delete_cancels_queued_and_aborts_running_then_409_and_404() -> None:
    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        first = (await (await client.post("/v1/runs", json=SPEC)).json())["run_id"]
        second = (await (await client.post("/v1/runs", json=SPEC)).json())["run_id"]
        await fake.wait_started(1)
        r = await client.delete(f"/v1/runs/{second}")
        assert r.status == 202
        assert (await r.json())["state"] == "cancelled"
        r = await client.delete(f"/v1/runs/{first}")
        assert r.status == 202
        assert (await r.json())["state"] == "running"  # being aborted
        await settle()
        view = await (await client.get(f"/v1/runs/{first}")).json()
        assert (view["state"], view["error"]) == ("aborted", "cancelled on request")
        assert fake.cancelled == [first]
        r = await client.delete(f"/v1/runs/{first}")
        assert r.status == 409
        assert error_types(await r.json()) == ["already_finished"]
        r = await client.delete("/v1/runs/20250101T000000Z-000000")
        assert r.status == 404

    api(body)


# -- auth ------------------------------------------------------------------------------------


def test_with_a_token_mutating_calls_need_the_bearer_and_reads_do_not() -> None:
    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
            {"Authorization": f"Bearer {TOKEN}x"},
        ):
            r = await client.post("/v1/runs", json=SPEC, headers=headers)
            assert r.status == 401, headers
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert error_types(await r.json()) == ["unauthorized"]
            r = await client.delete("/v1/runs/20250101T000000Z-000000", headers=headers)
            assert r.status == 401
        assert s.list_jobs() == []
        good = {"Authorization": f"Bearer {TOKEN}"}
        r = await client.post("/v1/runs", json=SPEC, headers=good)
        assert r.status == 202
        run_id = (await r.json())["run_id"]
        assert (await client.get(f"/v1/runs/{run_id}")).status == 200
        assert (await client.get("/v1/runs")).status == 200
        assert (await client.delete(f"/v1/runs/{run_id}", headers=good)).status == 202

    api(body, token=TOKEN)


def test_auth_is_checked_before_the_body_is_looked_at() -> None:
    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        r = await client.post(
            "/v1/runs", data=b"x" * 10_000, headers={"Content-Type": "text/plain"}
        )
        assert r.status == 401

    api(body, token=TOKEN)


def test_an_empty_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="empty"):
        build_app(JobScheduler(FakeSessions()), token="", max_body_bytes=1024)


# -- healthz, metrics, openapi, unknown routes -----------------------------------------------


@pytest.mark.parametrize(
    ("components", "status", "overall"),
    [
        ({}, 200, "up"),
        (
            {"nvml": "up", "mqtt": ComponentHealth(state="degraded", detail="broker down")},
            200,
            "degraded",
        ),
        ({"nvml": "down", "mqtt": "degraded"}, 503, "down"),
    ],
)
def test_healthz_reports_the_worst_component(
    components: dict[str, Any], status: int, overall: str
) -> None:
    async def health() -> dict[str, Any]:
        return components

    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        r = await client.get("/healthz")
        assert r.status == status
        data = await r.json()
        assert data["status"] == overall
        assert set(data["components"]) == set(components)
        assert data["jobs"]["queued"] == 0
        if "mqtt" in components and status == 200:
            assert data["components"]["mqtt"] == {"state": "degraded", "detail": "broker down"}

    api(body, health=health)


def test_a_component_that_is_not_up_always_has_a_detail() -> None:
    def health() -> dict[str, Any]:
        return {"store": "up", "meters": "degraded", "mqtt": ComponentHealth(state="down")}

    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        data = await (await client.get("/healthz")).json()
        components = data["components"]
        assert components["store"] == {"state": "up", "detail": None}
        for name in ("meters", "mqtt"):
            assert components[name]["detail"], f"{name}: {components[name]}"

    api(body, health=health)


def test_a_failing_health_check_is_503_not_a_traceback() -> None:
    def health() -> dict[str, Any]:
        raise RuntimeError("boom")

    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        r = await client.get("/healthz")
        assert r.status == 503
        data = await r.json()
        assert data["components"]["health"]["state"] == "down"
        assert "boom" not in json.dumps(data)

    api(body, health=health)


def test_metrics_mounts_any_renderer_sync_or_async() -> None:
    calls = []

    def render() -> tuple[bytes, str]:
        calls.append(1)
        return b"infergy_up 1\n", "text/plain; version=0.0.4; charset=utf-8"

    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        r = await client.get("/metrics")
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert await r.read() == b"infergy_up 1\n"

    api(body, metrics=render)
    assert calls == [1]

    async def no_metrics(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        r = await client.get("/metrics")
        assert r.status == 404
        assert error_types(await r.json()) == ["not_found"]

    api(no_metrics)


def test_unknown_routes_methods_and_internal_errors_are_json() -> None:
    async def lookup(run_id: str) -> dict[str, Any] | None:
        raise RuntimeError("database on fire")

    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        r = await client.get("/nope")
        assert (r.status, error_types(await r.json())) == (404, ["not_found"])
        r = await client.put("/v1/runs", json=SPEC)
        assert (r.status, error_types(await r.json())) == (405, ["method_not_allowed"])
        assert "POST" in r.headers["Allow"]
        r = await client.get("/v1/runs/20250101T000000Z-000000")
        data = await r.json()
        assert (r.status, error_types(data)) == (500, ["internal"])
        assert "fire" not in json.dumps(data)

    api(body, result_lookup=lookup)


def test_openapi_is_generated_from_the_models() -> None:
    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        doc = await (await client.get("/openapi.json")).json()
        assert doc["openapi"] == "3.1.0"
        assert set(doc["paths"]) == {
            "/v1/runs", "/v1/runs/{run_id}", "/v1/maxq", "/v1/maxq/{sweep_id}", "/healthz",
            "/openapi.json",
        }  # fmt: skip
        schemas = doc["components"]["schemas"]
        sweep = doc["paths"]["/v1/maxq"]["post"]["requestBody"]["content"]["application/json"]
        sweep_schema = schemas[sweep["schema"]["$ref"].rsplit("/", 1)[1]]
        assert set(sweep_schema["properties"]) == set(MaxqSpec.model_fields)
        request = doc["paths"]["/v1/runs"]["post"]["requestBody"]["content"]["application/json"]
        name = request["schema"]["$ref"].rsplit("/", 1)[1]
        spec_schema = schemas[name]
        assert spec_schema["additionalProperties"] is False
        assert set(spec_schema["properties"]) == set(JobSpec.model_fields)
        for ref in _refs(doc):  # every reference resolves
            assert ref.rsplit("/", 1)[1] in schemas, ref
        states = json.dumps(schemas)
        assert all(state.value in states for state in JobState)

    api(body)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


# -- /v1/maxq ----------------------------------------------------------------------------------

SWEEP = {"backend": "sim", "power_limits": "300:700:100", "batch_sizes": "256", "point_duration": 5}


def test_post_maxq_validates_through_the_sweep_model_and_queues_a_sweep() -> None:
    async def lookup(sweep_id: str) -> dict[str, Any] | None:
        return {"sweep_id": sweep_id, "status": "running", "points": [{"index": 1}]}

    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        r = await client.post("/v1/maxq", json=SWEEP | {"power_limits": "150:350:x"})
        assert r.status == 422
        data = await r.json()
        assert [tuple(e["loc"]) for e in data["errors"]] == [("body", "power_limits")]
        assert "'x'" in data["errors"][0]["msg"] and "is not a number" in data["errors"][0]["msg"]
        r = await client.post("/v1/maxq", json={"backend": "sim"})  # no axis at all
        assert r.status == 422 and "at least one axis" in (await r.json())["errors"][0]["msg"]
        r = await client.post("/v1/maxq", json=SWEEP)
        assert r.status == 202
        accepted = await r.json()
        sweep_id = accepted["run_id"]
        assert sweep_id.startswith("mq-") and accepted["status_url"] == f"/v1/maxq/{sweep_id}"
        await fake.wait_started(1)
        view = await (await client.get(accepted["status_url"])).json()
        assert view["state"] == "running" and view["spec"]["power_limits"] == "300:700:100"
        assert view["record"]["points"] == [{"index": 1}]  # the record grows in the store
        r = await client.delete(accepted["status_url"])
        assert r.status == 202
        await settle()
        assert fake.cancelled == [sweep_id]
        r = await client.get("/v1/maxq/mq-unknown")
        assert r.status == 200  # the lookup knows every id here
        run = (await (await client.post("/v1/runs", json=SPEC)).json())["run_id"]
        r = await client.delete(f"/v1/maxq/{run}")  # a run is not a sweep
        assert r.status == 404

    api(body, sweep_lookup=lookup)


def test_an_llm_job_is_accepted_and_lengths_beyond_the_context_are_a_422() -> None:
    async def body(client: Any, s: JobScheduler, fake: FakeSessions) -> None:
        job = {"workload": "llm", "backend": "torch", "model": "tiny", "duration": 10,
               "input_tokens": "16:64", "output_tokens": "8:32"}  # fmt: skip
        r = await client.post("/v1/runs", json=job)
        assert r.status == 202, await r.text()
        (queued,) = s.list_jobs()
        assert queued.spec.resolved_workload == "llm" and queued.spec.input_tokens == "16:64"
        r = await client.post("/v1/runs", json={**job, "input_tokens": "2040"})
        assert r.status == 422
        assert "tokens of context; tiny holds 2048" in (await r.json())["errors"][0]["msg"]

    api(body)
