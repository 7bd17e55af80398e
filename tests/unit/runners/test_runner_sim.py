"""The simulated backend: it sleeps the model's batch latency at the settings it is told."""

from __future__ import annotations

import time

import pytest

from infergy.core.gpu_model import H200, ModelSettings, steady_state
from infergy.errors import ModelError, PrecisionError
from infergy.runners.backends import create_backend
from infergy.runners.backends.sim import SimulatedBackend
from infergy.runners.engine import Engine
from infergy.runners.models import resolve_model
from infergy.runners.types import WorkloadConfig


def _backend(**kw: object) -> SimulatedBackend:
    cfg = WorkloadConfig(**({"backend": "sim", "batch_size": 64, "precision": "fp16"} | kw))  # type: ignore[arg-type]
    backend = create_backend(cfg, resolve_model("sim", cfg.model), 0)
    assert isinstance(backend, SimulatedBackend)
    backend.load()
    return backend


def test_the_model_is_a_simulated_part() -> None:
    assert resolve_model("sim", "auto").name == "h200"
    assert resolve_model("sim", "t4").kind == "simulated"
    with pytest.raises(ModelError, match="simulates a GPU part, not 'resnet50'"):
        resolve_model("sim", "resnet50")


def test_infer_takes_the_models_batch_latency_on_average() -> None:
    backend = _backend()
    want = steady_state(H200, ModelSettings(700.0), batch_size=64).batch_latency_s
    assert backend.batch_latency_s(64) == pytest.approx(want)
    calls = 200
    t0 = time.perf_counter()
    for _ in range(calls):
        backend.infer(64)
    took = (time.perf_counter() - t0) / calls
    # sleeps overshoot; the owed overshoot is taken off the next sleep
    assert took == pytest.approx(want, rel=0.05)


def test_settings_change_the_latency_and_the_description() -> None:
    backend = _backend()
    fast = backend.batch_latency_s(256)
    backend.simulate(ModelSettings(250.0, (1200, 1200), None).to_json())
    slow = backend.batch_latency_s(256)
    capped = steady_state(H200, ModelSettings(250.0, (1200, 1200)), batch_size=256)
    assert slow == pytest.approx(capped.batch_latency_s) and slow > fast
    d = backend.describe()
    assert d["simulated"] is True and d["settings"]["power_limit_w"] == 250.0
    assert any("SIMULATED" in p for p in d["problems"])


def test_an_unmodelled_precision_is_refused_at_load() -> None:
    with pytest.raises(PrecisionError, match="no model of"):
        _backend(precision="tf32x")


def test_the_engine_hands_settings_to_simulated_backends_by_device() -> None:
    engine = Engine(WorkloadConfig(backend="sim", batch_size=8, gpus=(0, 1)))
    engine.open()
    try:
        taken = engine.simulate({"gpu1": ModelSettings(300.0).to_json()})
        assert taken == 1
        d = engine.describe()["per_device"]
        assert [x["settings"]["power_limit_w"] for x in d] == [700.0, 300.0]
    finally:
        engine.close()
