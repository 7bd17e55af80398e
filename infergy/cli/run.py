"""``infergy run``: one measurement session, on the console.

The composition root of a one-off session: settings, store, meters, runner and the console
observer are built here and handed to :class:`~infergy.daemon.session.Session`. Ctrl-C and
SIGTERM cancel the session, which stores an ``aborted`` result before the command exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from infergy.cli.common import ConfigOpt, open_store
from infergy.cli.console import print_note, render_result
from infergy.cli.progress import ConsoleObserver
from infergy.config.settings import Settings, load_settings
from infergy.daemon.auto_batch import resolve_auto_batch
from infergy.daemon.jobs import HintedValueError, JobSpec
from infergy.daemon.maxq_session import MaxqSweep, QuietSweepObserver
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.daemon.session import Session
from infergy.daemon.session_types import QuietObserver, SessionObserver, SessionOutcome
from infergy.errors import InfergyError, InputError
from infergy.meters.nvml_device import NvmlLibrary
from infergy.store.names import new_run_id

_EPILOG = (
    "Examples:\n\n"
    "  infergy run        # GPU + NVML, or CPU + the emulated analyzer (SIMULATED)\n\n"
    "  infergy run --scenario single-stream --duration 60 --json > result.json\n\n"
    "  infergy run --backend torch --batch-size 256 --gpus 0 --meter nvml --meter ptd://lab:8888\n\n"
    "  infergy run --scenario server --target-qps 500 --strict\n\n"
    "  infergy run --backend torch --batch-size 256 --compile   # ~3x eager on an H100, cached\n\n"
    "  infergy run --backend kserve --endpoint http://127.0.0.1:8000/v2/models/resnet50 "
    "--batch-size 8 --concurrency 16   # a running Triton / KServe server\n\n"
    "  infergy run --backend openai --endpoint http://127.0.0.1:8000/v1 --scenario server "
    "--target-qps 4 --max-tokens 128   # vLLM, TensorRT-LLM, llama.cpp (TTFT, TPOT)\n\n"
    "  infergy run --workload llm --model llama-8b-shape --batch-size 32 --input-tokens "
    "normal:512:128 --output-tokens 128   # J/token, prefill vs decode (torch, bf16)\n\n"
    "  infergy run --backend sim --workload llm --scenario server --target-qps 20 "
    "--ttft-ms 2000 --tpot-ms 200   # a SIMULATED H200\n\n"
    "Exit codes: 0 ok, 1 the measurement failed or was interrupted, 2 bad usage or config, "
    "3 degraded result with --strict."
)


def _gpu_present() -> bool:
    """Whether NVML sees a visible GPU (cheap, read-only)."""
    try:
        with NvmlLibrary() as nvml:
            return bool(nvml.visible_gpus()[0])
    except InfergyError:
        return False


def _torch_present() -> bool:
    try:
        import torch  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def job_spec(values: dict[str, Any]) -> JobSpec:
    """Validate the flags through the one job model; one clear error naming the flag."""
    try:
        return JobSpec.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        text = first["msg"].removeprefix("Value error, ")
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, HintedValueError) and cause.hint:  # its own hint, on its own line
            raise InputError(cause.message, hint=cause.hint) from None
        if first["loc"]:
            msg = f"{_flag(str(first['loc'][0]))}: {text}"
        else:  # a rule across fields: name them as flags (target_qps -> --target-qps)
            msg = re.sub(r"\b[a-z]+(?:_[a-z]+)+\b", lambda m: _flag(m.group()), text)
        raise InputError(msg, hint="see `infergy run --help`") from None


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-") if field in JobSpec.model_fields else field


def choose_backend(spec: JobSpec) -> JobSpec:
    """Fill in the backend: torch on a GPU machine with CUDA PyTorch, else ONNX Runtime."""
    if spec.backend is not None:
        return spec
    if spec.resolved_workload == "llm":  # the generative backend (CPU or GPU)
        return spec.model_copy(update={"backend": "torch"})
    backend = (
        "torch" if (spec.gpus != () and _gpu_present() and _torch_present()) else "onnxruntime"
    )
    return spec.model_copy(update={"backend": backend})


async def _session_main(session: Session) -> SessionOutcome:
    """Run the session; Ctrl-C/SIGTERM cancel it and the aborted outcome is returned."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await session.run()
    except asyncio.CancelledError:
        if session.aborted is None:
            raise
        return session.aborted
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


def resolve_batch_cli(spec: JobSpec, settings: Settings, store: Any, console: Console) -> JobSpec:
    """``--batch-size auto``: the cached knee, or a read-only batch sweep measured now."""
    if spec.batch_size != "auto":
        return spec

    async def run_sweep(sweep_id: str, sweep_spec: MaxqSpec) -> Any:
        observer = _SweepNotes(console)
        sweep = MaxqSweep(sweep_id, sweep_spec, settings, store=store, observer=observer)
        return await sweep.run()

    found = asyncio.run(
        resolve_auto_batch(
            spec, settings, env=os.environ, sweep_id=f"mq-{new_run_id()}-auto", run_sweep=run_sweep
        )
    )
    console.print(f"[dim]{found.describe()}[/dim]", highlight=False)
    return spec.model_copy(update={"batch_size": found.batch_size})


def run_session_cli(spec: JobSpec, settings: Settings, *, json_out: bool) -> int:
    """Run one session with the console display; returns the exit code."""
    console = Console(stderr=json_out)
    run_id = new_run_id()
    with open_store(settings) as store:
        spec = resolve_batch_cli(spec, settings, store, console)
        observer: SessionObserver
        display = ConsoleObserver(console) if not json_out else None
        observer = display if display is not None else _StderrNotes(console)
        session = Session(run_id, spec, settings, store=store, observer=observer)
        with display or contextlib.nullcontext():
            try:
                outcome = asyncio.run(_session_main(session))
            except KeyboardInterrupt:
                if session.aborted is None:
                    raise
                outcome = session.aborted
    if json_out:
        typer.echo(json.dumps(outcome.result, indent=2))
    else:
        render_result(console, outcome.result)
        if outcome.files:
            print_note(console, str(outcome.files[0].parent), label="files", style="dim")
    if outcome.status == "aborted":
        console.print("[bold red]interrupted:[/bold red] the partial run was stored as aborted")
    return outcome.exit_code(strict=spec.strict)


class _SweepNotes(QuietSweepObserver):
    """The batch sweep of ``auto``: a line per point, and its notes."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def point_started(self, index: int, role: str, what: str) -> None:
        self.console.print(f"[dim]batch size auto: measuring {what}[/dim]", highlight=False)

    def note(self, text: str) -> None:
        self.console.print(f"note: {text}", highlight=False)


class _StderrNotes(QuietObserver):
    """With --json: notes go to stderr, nothing else is printed."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def note(self, text: str) -> None:
        print_note(self.console, text)


def register(app: typer.Typer) -> None:
    """Add ``run`` to the command line."""
    app.command(name="run", epilog=_EPILOG)(run)


TUNING = "Runner tuning"
"""The help panel of the options that change how fast the workload runs, not what is measured."""
NETWORK = "A running server (--backend kserve | openai)"
"""The help panel of the network backends' options."""
GENERATIVE = "A language model (--workload llm)"
"""The help panel of the generative workload's options."""


def run(
    *,
    backend: Annotated[
        str | None,
        typer.Option(
            help="onnxruntime | torch | tensorrt | sim | kserve | openai (default: torch on a GPU, "
            "else onnxruntime)."
        ),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            help="auto, a built-in model (tiny, resnet50) or a path to .onnx / .plan; "
            "llm: tiny, llama-1b-shape, llama-8b-shape (random weights); "
            "openai: the served model's name (auto: the server's first)."
        ),
    ] = "auto",
    scenario: Annotated[
        str, typer.Option(help="offline | server | single-stream | multi-stream.")
    ] = "offline",
    precision: Annotated[
        str | None,
        typer.Option(
            help="fp32 | fp16 | bf16 | int8 (default: fp16 on torch/tensorrt, fp32 on onnxruntime)."
        ),
    ] = None,
    batch_size: Annotated[
        str | None,
        typer.Option(
            metavar="N|auto",
            help="Samples per inference call (default: Offline/Server 256 on torch/tensorrt, "
            "1 on onnxruntime; MultiStream 8; SingleStream 1); auto: the knee of a batch sweep "
            "(measured once per model, precision, GPU and backend, then cached).",
        ),
    ] = None,
    duration: Annotated[float, typer.Option(metavar="SECONDS", help="Measured run length.")] = 60.0,
    target_qps: Annotated[
        float | None,
        typer.Option(metavar="QPS", help="Server: queries/s to offer (required there)."),
    ] = None,
    gpus: Annotated[
        str | None, typer.Option(metavar="0,1", help="GPU indices to use (default: all visible).")
    ] = None,
    idle: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="Idle baseline before the run (default: \\[analysis] idle_s)."
        ),
    ] = None,
    warmup: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Unmeasured warm-up (and the analyzer's ranging pass)."
        ),
    ] = 5.0,
    meter: Annotated[
        list[str] | None,
        typer.Option(
            metavar="METER",
            help="nvml | rapl | sim | ptd://HOST:PORT; repeatable (default: automatic).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default: \\[output] dir).")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the result JSON on stdout.")
    ] = False,
    strict: Annotated[bool, typer.Option(help="Exit 3 when the result is degraded.")] = False,
    calibration_data: Annotated[
        Path | None,
        typer.Option(
            help="int8 (TensorRT): calibration inputs, a folder of .npy batches or a .npz."
        ),
    ] = None,
    label: Annotated[str | None, typer.Option(help="Free text kept with the result.")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            rich_help_panel=TUNING,
            help="Executors per device for Offline/Server (CUDA streams, TensorRT contexts).",
        ),
    ] = 1,
    cuda_graphs: Annotated[
        bool, typer.Option(rich_help_panel=TUNING, help="torch/TensorRT: replay CUDA graphs.")
    ] = True,
    channels_last: Annotated[
        bool, typer.Option(rich_help_panel=TUNING, help="torch: NHWC layout for convolutions.")
    ] = True,
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile",
            rich_help_panel=TUNING,
            help='torch: torch.compile(mode="max-autotune"); minutes the first time, then cached.',
        ),
    ] = False,
    batching_timeout_ms: Annotated[
        float,
        typer.Option(
            min=0,
            max=1000,
            metavar="MS",
            rich_help_panel=TUNING,
            help="Server: wait this long to fill a batch after the oldest pending sample.",
        ),
    ] = 2.0,
    target_latency_ms: Annotated[
        float | None,
        typer.Option(
            metavar="MS",
            rich_help_panel=TUNING,
            help="Server latency bound (default: max(15 ms, 3 full batches + the timeout)).",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            min=0, rich_help_panel=TUNING, help="LoadGen and input RNG seed (0: LoadGen's)"
        ),
    ] = 0,
    endpoint: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            rich_help_panel=NETWORK,
            help="kserve: http://HOST:PORT/v2/models/NAME; openai: http://HOST:PORT/v1.",
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(min=1, max=1024, rich_help_panel=NETWORK, help="Requests in flight at most."),
    ] = 16,
    request_timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            rich_help_panel=NETWORK,
            help="One request's time limit (a whole stream for openai).",
        ),
    ] = 60.0,
    max_tokens: Annotated[
        int, typer.Option(min=1, rich_help_panel=NETWORK, help="openai: tokens per sample.")
    ] = 128,
    prompts: Annotated[
        Path | None,
        typer.Option(rich_help_panel=NETWORK, help="openai: a text file, one prompt per line."),
    ] = None,
    workload: Annotated[
        str | None,
        typer.Option(
            metavar="vision|llm",
            rich_help_panel=GENERATIVE,
            help="vision (image models) or llm (a decoder under LoadGen's token latencies, "
            "torch or sim; default: llm when --model names a decoder).",
        ),
    ] = None,
    input_tokens: Annotated[
        str | None,
        typer.Option(
            metavar="DIST",
            rich_help_panel=GENERATIVE,
            help="llm: prompt lengths: N, LO:HI or normal:MEAN:STD (default normal:512:128).",
        ),
    ] = None,
    output_tokens: Annotated[
        str | None,
        typer.Option(
            metavar="DIST",
            rich_help_panel=GENERATIVE,
            help="llm: output lengths, >= 2 tokens (default normal:128:32).",
        ),
    ] = None,
    ttft_ms: Annotated[
        float | None,
        typer.Option(
            metavar="MS",
            rich_help_panel=GENERATIVE,
            help="llm Server: LoadGen's time-to-first-token bound (default 2000).",
        ),
    ] = None,
    tpot_ms: Annotated[
        float | None,
        typer.Option(
            metavar="MS",
            rich_help_panel=GENERATIVE,
            help="llm Server: LoadGen's time-per-output-token bound (default 200).",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> int:
    """Measure one inference run: idle baseline, warm-up, a LoadGen test, energy per query.

    Meters are chosen automatically — NVML per GPU, a configured PTD analyzer, RAPL — and
    without any, the emulated analyzer runs in-process and every figure it gives is labelled
    SIMULATED. Results go to the store, to files under --out, and to the screen.
    """
    overrides = {"output": {"dir": str(out)}} if out is not None else None
    settings = load_settings(config, overrides=overrides)
    gpu_list: tuple[int, ...] | None = None
    if gpus is not None:
        try:
            gpu_list = tuple(int(g) for g in gpus.split(",") if g.strip())
        except ValueError:
            msg = f"--gpus takes comma-separated indices, got {gpus!r}"
            raise InputError(msg, hint="e.g. --gpus 0,1") from None
    spec = job_spec(
        {
            "backend": backend, "model": model, "scenario": scenario, "precision": precision,
            "batch_size": _batch_size(batch_size), "duration": duration, "target_qps": target_qps,
            "gpus": gpu_list, "idle": idle, "warmup": warmup, "meter": tuple(meter or ()),
            "strict": strict, "label": label,
            "calibration_data": None if calibration_data is None else str(calibration_data),
            "workers": workers, "cuda_graphs": cuda_graphs, "channels_last": channels_last,
            "compile": compile_model, "batching_timeout_ms": batching_timeout_ms,
            "target_latency_ms": target_latency_ms, "seed": seed, "endpoint": endpoint,
            "concurrency": concurrency, "request_timeout": request_timeout,
            "max_tokens": max_tokens, "prompts": None if prompts is None else str(prompts),
            "workload": workload, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "ttft_ms": ttft_ms, "tpot_ms": tpot_ms,
        }
    )  # fmt: skip
    return run_session_cli(choose_backend(spec), settings, json_out=json_out)


def _batch_size(text: str | None) -> int | str | None:
    if text is None:
        return None
    value = text.strip().lower()
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        msg = f"--batch-size takes a number or auto, got {text!r}"
        raise InputError(msg, hint="e.g. --batch-size 64 or --batch-size auto") from None


__all__ = ["job_spec", "register", "run_session_cli"]
