"""The generative workload's settings, checked before anything loads (``--workload llm``).

What :meth:`~infergy.runners.types.WorkloadConfig.validate` asks of a generative job: a backend
that generates (``torch``, or ``sim`` on a simulated GPU; a running server is ``--backend
openai``), a scenario with token latencies (Offline, Server, SingleStream: MLPerf defines no
MultiStream for language models), fp32/fp16/bf16, length distributions that parse and fit the
model's context, and TTFT/TPOT targets only where LoadGen uses them (Server). Each refusal is
one :class:`~infergy.errors.WorkloadError` line with a hint, exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass

from infergy.core.lengths import MIN_OUTPUT_TOKENS, LengthDist
from infergy.core.llm import DEFAULT_SHAPE, SHAPES, LlmShape, check_context, shape_named
from infergy.core.trace import Scenario
from infergy.errors import WorkloadError

WORKLOADS = ("vision", "llm")
"""``vision``: the image models (ResNet-50, tiny, an ONNX or TensorRT file); ``llm``: a
generative decoder under LoadGen's token latencies."""
GENERATIVE_BACKENDS = ("torch", "sim")
DEFAULT_INPUT_TOKENS = "normal:512:128"
DEFAULT_OUTPUT_TOKENS = "normal:128:32"
DEFAULT_TTFT_MS = 2000.0
DEFAULT_TPOT_MS = 200.0
"""Server token limits when none are given: llama2-70b's in MLPerf's ``mlperf.conf`` (LoadGen's
own defaults, 100 ms each, bound no language model)."""
CPU_SHAPE = "tiny"
"""What ``--model auto`` runs on the CPU (torch without GPUs)."""


@dataclass(frozen=True)
class GenerativeChoice:
    """A generative workload's resolved model and lengths."""

    shape: LlmShape
    inputs: LengthDist
    outputs: LengthDist


def is_shape_name(model: str) -> bool:
    """Whether ``model`` names a built-in decoder (``--model llama-8b-shape`` implies llm)."""
    return model in SHAPES


def auto_model(backend: str, gpus: tuple[int, ...]) -> str:
    """``--model auto`` of a generative job: the 8B shape on GPUs, ``tiny`` on the CPU."""
    if backend == "sim":
        return "auto"  # the simulated part, chosen by the session
    return DEFAULT_SHAPE if gpus else CPU_SHAPE


def shape_of(backend: str, model: str) -> LlmShape:
    """The decoder a generative job runs: the model's (torch), the default (sim: a part)."""
    if backend == "sim":
        return SHAPES[DEFAULT_SHAPE]
    return shape_named(model)


def check_generative(
    *,
    backend: str,
    model: str,
    scenario: Scenario,
    precision: str,
    input_tokens: str,
    output_tokens: str,
    ttft_ms: float | None,
    tpot_ms: float | None,
) -> GenerativeChoice:
    """Check a generative job's settings; see the module docstring.

    Raises:
        WorkloadError: (InputError for a length that does not parse) one line and a hint.
    """
    hint = "see `infergy run --help`"
    if backend not in GENERATIVE_BACKENDS:
        msg = f"the llm workload runs on --backend torch or sim, not {backend}"
        raise WorkloadError(msg, hint="a running server is --backend openai --endpoint URL")
    if scenario is Scenario.MULTI_STREAM:
        msg = "the llm workload runs offline, server or single-stream (MLPerf has no "
        raise WorkloadError(msg + "multi-stream language model)", hint=hint)
    if precision not in ("fp32", "fp16", "bf16"):
        msg = f"the llm workload runs fp32, fp16 or bf16, not {precision}"
        raise WorkloadError(msg, hint="use --precision bf16")
    for name, value in (("ttft", ttft_ms), ("tpot", tpot_ms)):
        if value is not None and not value > 0:
            msg = f"the {name.upper()} target must be > 0 ms, got {value}"
            raise WorkloadError(msg, hint=hint)
        if value is not None and scenario is not Scenario.SERVER:
            msg = f"--{name}-ms is a server setting; {scenario.value} has no token latency bound"
            raise WorkloadError(msg, hint="drop it, or use --scenario server")
    inputs = LengthDist.parse(input_tokens, name="input tokens", minimum=1)
    outputs = LengthDist.parse(output_tokens, name="output tokens", minimum=MIN_OUTPUT_TOKENS)
    shape = shape_of(backend, model)
    check_context(shape, longest_input=inputs.high, longest_output=outputs.high)
    return GenerativeChoice(shape, inputs, outputs)
