"""JobSpec: the runner-tuning fields, their bounds, and how a job becomes a WorkloadConfig."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

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


@pytest.mark.parametrize(
    ("backend", "scenario", "precision", "batch"),
    [
        ("torch", "offline", "fp16", 256),
        ("tensorrt", "server", "fp16", 256),
        ("torch", "single-stream", "fp16", 1),
        ("torch", "multi-stream", "fp16", 8),
        ("onnxruntime", "offline", "fp32", 1),
        (None, "offline", "fp32", 1),
        ("onnxruntime", "multi-stream", "fp32", 8),
    ],
)
def test_the_defaults_measure_what_the_hardware_can_do(
    backend: str | None, scenario: str, precision: str, batch: int
) -> None:
    """A GPU backend defaults to fp16 and a batch that fills the GPU (not fp32 batch 1)."""
    body: dict[str, object] = {"scenario": scenario}
    if scenario == "server":
        body["target_qps"] = 100.0
    if backend is not None:
        body["backend"] = backend
    cfg = JobSpec.model_validate(body).workload_config((0,) if backend != "onnxruntime" else ())
    assert (cfg.precision, cfg.batch_size) == (precision, batch)


def test_a_precision_or_batch_given_is_kept() -> None:
    spec = JobSpec.model_validate({"backend": "torch", "precision": "fp32", "batch_size": 1})
    cfg = spec.workload_config((0,))
    assert (cfg.precision, cfg.batch_size) == ("fp32", 1)


def test_run_help_says_the_defaults(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default: fp16 on torch/tensorrt, fp32 on onnxruntime" in text
    assert "Offline/Server 256 on torch/tensorrt" in text


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


# -- settings that would be silently ignored or cannot work are refused (issue 13, §6) ---------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"scenario": "offline", "target_qps": 100}, "target_qps is a server setting"),
        ({"scenario": "single-stream", "target_qps": 100}, "target_qps is a server setting"),
        ({"scenario": "single-stream", "batch_size": 4}, "1 sample per query"),
        ({"scenario": "multi-stream", "batch_size": 16}, "carries 8 samples"),
        ({"duration": float("nan")}, "finite number"),
        ({"duration": float("inf")}, "finite number"),
        ({"warmup": float("nan")}, "finite number"),
        ({"scenario": "server", "target_qps": float("nan")}, "finite number"),
        ({"meter": ["ptd://127.0.0.1:99999"]}, "port must be 1-65535"),
        ({"meter": ["ptd://127.0.0.1:0"]}, "port must be 1-65535"),
    ],
)
def test_settings_that_would_be_ignored_or_cannot_work_are_refused(
    body: dict[str, object], needle: str
) -> None:
    with pytest.raises(ValidationError, match=needle):
        JobSpec.model_validate(body)


def test_the_settings_each_scenario_uses_are_still_accepted() -> None:
    JobSpec.model_validate({"scenario": "server", "target_qps": 100, "batch_size": 64})
    JobSpec.model_validate({"scenario": "offline", "batch_size": 256})
    JobSpec.model_validate({"scenario": "multi-stream", "batch_size": 8})
    JobSpec.model_validate({"scenario": "single-stream", "batch_size": 1})
    JobSpec.model_validate({"meter": ["ptd://[::1]:65535", "ptd://lab-analyzer:8888"]})


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scenario", "offline", "--target-qps", "100"], "--target-qps is a server setting"),
        (["--scenario", "single-stream", "--batch-size", "4"], "--batch-size 4 cannot be formed"),
        (["--duration", "nan"], "--duration: Input should be a finite number"),
        (["--meter", "ptd://127.0.0.1:99999"], "--meter: bad meter 'ptd://127.0.0.1:99999'"),
    ],
)
def test_the_run_command_refuses_them_in_one_line_before_anything_starts(
    args: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # were a refusal missing, a short run goes to a store and folder of this test's own
    monkeypatch.delenv("INFERGY_CONFIG", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    # short phases first (the last value of a flag wins)
    assert main(["run", "--idle", "0", "--warmup", "0", "--duration", "1", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 2, err  # error + hint
    assert "Traceback" not in err and "internal error" not in err


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


def test_an_llm_job_without_a_gpu_runs_the_tiny_decoder_with_the_cpu_defaults() -> None:
    cfg = JobSpec(workload="llm").workload_config(())  # no GPU found: torch on the CPU
    assert (cfg.backend, cfg.workload, cfg.precision, cfg.batch_size) == ("torch", "llm",
                                                                           "fp32", 4)  # fmt: skip
    gpu = JobSpec(workload="llm").workload_config((0,))
    assert (gpu.precision, gpu.batch_size) == ("bf16", 64)
    named = JobSpec(model="llama-8b-shape", input_tokens="128", output_tokens="64:256")
    w = named.workload_config((0,))
    assert (w.workload, w.input_tokens, w.output_tokens) == ("llm", "128", "64:256")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "llama-8b-shape", "input_tokens": "8000", "output_tokens": "500"},
         "need 8500 tokens of context; llama-8b-shape holds 8192"),
        ({"workload": "llm", "scenario": "multi-stream"}, "no multi-stream language model"),
        ({"workload": "llm", "ttft_ms": 500}, "--ttft-ms is a server setting"),
        ({"input_tokens": "128"}, "input_tokens is an llm setting"),
    ],
)  # fmt: skip
def test_bad_llm_jobs_are_refused(body: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        JobSpec.model_validate(body)
