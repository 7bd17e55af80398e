"""JobSpec: the runner-tuning fields, their bounds, and how a job becomes a WorkloadConfig."""

from __future__ import annotations

from dataclasses import fields

import pytest
from pydantic import ValidationError

from infergy.cli.app import main
from infergy.core.trace import Scenario
from infergy.daemon.jobs import JobSpec
from infergy.runners import WorkloadConfig

TUNING = {
    "workers": "workers_per_device", "cuda_graphs": "cuda_graphs",
    "channels_last": "channels_last", "compile": "compile",
    "batching_timeout_ms": "batching_timeout_ms", "target_latency_ms": "target_latency_ms",
    "seed": "seed",
}  # fmt: skip


def test_job_defaults_are_the_runner_defaults() -> None:
    """A job that says nothing runs exactly as the runner would by default."""
    got = JobSpec().workload_config(())
    ref = WorkloadConfig(backend="onnxruntime")
    for f in fields(WorkloadConfig):
        assert getattr(got, f.name) == getattr(ref, f.name), f.name
    assert set(TUNING.values()) <= {f.name for f in fields(WorkloadConfig)}


def test_every_tuning_field_reaches_the_runner() -> None:
    spec = JobSpec.model_validate({
        "backend": "torch", "scenario": "server", "target_qps": 900, "batch_size": 64,
        "workers": 3, "cuda_graphs": False, "channels_last": False, "compile": True,
        "batching_timeout_ms": 0.5, "target_latency_ms": 20, "seed": 7,
    })  # fmt: skip
    cfg = spec.workload_config((0, 1))
    assert cfg.validate() == cfg
    for job_name, cfg_name in TUNING.items():
        assert getattr(cfg, cfg_name) == getattr(spec, job_name), job_name
    assert cfg.gpus == (0, 1) and cfg.scenario is Scenario.SERVER and cfg.target_qps == 900


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"workers": 0}, "workers"),
        ({"workers": 17}, "workers"),
        ({"batching_timeout_ms": -1}, "batching_timeout_ms"),
        ({"target_latency_ms": 0}, "target_latency_ms"),
        ({"seed": -1}, "seed"),
        ({"backend": "onnxruntime", "compile": True}, "compile is a torch option"),
    ],
)
def test_bad_tuning_values_are_refused(body: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        JobSpec.model_validate(body)


def test_run_help_shows_the_tuning_panel_and_config_sections(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Runner tuning" in out and "--compile" in out and "--no-cuda-graphs" in out
    assert "[analysis] idle_s" in out and "[output] dir" in out  # not eaten as rich markup


def test_a_network_job_reaches_the_runner_without_gpus() -> None:
    spec = JobSpec.model_validate({
        "backend": "openai", "endpoint": "http://10.0.0.5:8000/v1", "model": "llama",
        "concurrency": 64, "request_timeout": 120, "max_tokens": 256, "prompts": "/p.txt",
        "gpus": [0], "scenario": "server", "target_qps": 4,
    })  # fmt: skip
    cfg = spec.workload_config((0,))
    assert cfg.validate() == cfg and cfg.network and cfg.gpus == ()  # gpus: what is metered
    assert (cfg.endpoint, cfg.concurrency, cfg.request_timeout_s, cfg.max_tokens) == (
        "http://10.0.0.5:8000/v1",
        64,
        120.0,
        256,
    )
    assert str(cfg.prompts) == "/p.txt" and cfg.device_names == ["server"]
    assert WorkloadConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"backend": "kserve"}, "needs endpoint"),
        ({"endpoint": "http://h:1/v1"}, "endpoint is for the kserve and openai backends"),
        ({"backend": "kserve", "endpoint": "h:1/v2/models/x"}, "must be an http"),
        ({"backend": "kserve", "endpoint": "http://h:1/v2/x"}, "not a KServe v2 model URL"),
        ({"backend": "openai", "endpoint": "http://h:1/x"}, "not an OpenAI API URL"),
        ({"backend": "openai", "endpoint": "http://h:1/v1", "concurrency": 0}, "concurrency"),
        ({"backend": "openai", "endpoint": "http://h:1/v1", "request_timeout": 0}, "request_timeout"),
        ({"backend": "torch", "prompts": "p.txt"}, "prompts is an openai option"),
    ],
)  # fmt: skip
def test_bad_network_jobs_are_refused(body: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        JobSpec.model_validate(body)
