"""The sweep request model: one validation for CLI, HTTP and MQTT; axes against the GPU."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infergy.daemon.maxq_spec import MaxqSpec, plan_axes, point_job
from infergy.maxq.control import PowerLimitConstraints, SupportedClocks
from infergy.maxq.errors import SweepSpecError
from infergy.maxq.plan import SweepPoint

H200_LIMITS = PowerLimitConstraints(200.0, 700.0, 700.0)
CLOCKS = SupportedClocks((3201, 2201), {3201: (1980, 1965, 1200), 2201: (1980, 1200)})


def errors(**fields: object) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as err:
        MaxqSpec.model_validate(fields)
    return [(tuple(e["loc"]), e["msg"]) for e in err.value.errors()]


def test_axis_syntax_is_checked_with_the_parsers_message_at_the_field() -> None:
    [(loc, msg)] = errors(power_limits="150:350:7")
    assert loc == ("power_limits",) and "does not reach its stop 350" in msg
    [(loc, msg)] = errors(batch_sizes="0,8")
    assert loc == ("batch_sizes",) and "must be >= 1" in msg
    [(loc, msg)] = errors(precisions="fp8")
    assert loc == ("precisions",) and "unknown 'fp8'" in msg


def test_a_sweep_needs_an_axis_and_sane_constraints() -> None:
    assert "at least one axis" in errors(backend="sim")[0][1]
    assert "offline" in errors(batch_sizes="8", max_latency_ms=10)[0][1]
    assert "token rate" in errors(batch_sizes="8", objective="tokens-per-joule")[0][1]
    assert "50, 90, 99" in errors(batch_sizes="8", latency_percentile=95)[0][1]
    [(loc, msg)] = errors(batch_sizes="8", batch_size=0)
    assert loc == ("batch_size",) and "or 'auto'" in msg
    assert "target_qps" in errors(batch_sizes="8", scenario="server")[0][1]  # as a run's


def test_the_baseline_is_the_workload_you_run_today() -> None:
    spec = MaxqSpec(power_limits="200:700:100", batch_sizes="8,256", precisions="fp16,fp32")
    assert (spec.base_batch_size(), spec.base_precision()) == (256, "fp16")
    assert spec.changes_settings
    explicit = MaxqSpec(batch_sizes="1,8,auto", batch_size=8, precision="fp32")
    assert (explicit.base_batch_size(), explicit.base_precision()) == (8, "fp32")
    assert not explicit.changes_settings
    assert MaxqSpec(batch_sizes="auto").base_batch_size() == "auto"
    job = point_job(spec, SweepPoint(power_limit_w=300.0, batch_size=8), spec.base_job(),
                    duration=2.0)  # fmt: skip
    assert (job.batch_size, job.precision, job.duration) == (8, "fp16", 2.0)


def test_axes_are_checked_against_the_gpu_naming_the_allowed_range() -> None:
    spec = MaxqSpec(power_limits="150:350:50")
    with pytest.raises(SweepSpecError, match="150 W outside this GPU's allowed range 200-700 W"):
        plan_axes(spec, H200_LIMITS, CLOCKS)
    with pytest.raises(SweepSpecError, match="1300 MHz is not a supported clock"):
        plan_axes(MaxqSpec(sm_clocks="1200,1300"), H200_LIMITS, CLOCKS)
    axes = plan_axes(MaxqSpec(power_limits="200:400:100", batch_sizes="8,auto,64"), H200_LIMITS,
                     CLOCKS, auto_batch=64)  # fmt: skip
    assert axes.power_limits_w == (200.0, 300.0, 400.0) and axes.batch_sizes == (8, 64)
    unresolved = plan_axes(MaxqSpec(batch_sizes="8,auto"), None, None)
    assert unresolved.batch_sizes == (8, "auto")


def test_tokens_per_joule_takes_a_generative_workload() -> None:
    from infergy.daemon.maxq_spec import MaxqSpec  # noqa: PLC0415

    s = MaxqSpec.model_validate({"backend": "sim", "workload": "llm", "batch_sizes": "8,32",
                                 "objective": "tokens-per-joule", "input_tokens": "128"})  # fmt: skip
    job = s.base_job(batch_size=8)
    assert job.resolved_workload == "llm" and job.input_tokens == "128"
    assert "use --workload llm" in errors(batch_sizes="8", objective="tokens-per-joule")[0][1]
