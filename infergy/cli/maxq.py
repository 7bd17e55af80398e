"""``infergy maxq``: a MaxQ tuning sweep on the console; ``restore``, ``show``, ``list``.

The composition root of a one-off sweep: settings, store and the console observer are built
here and handed to :class:`~infergy.daemon.maxq_session.MaxqSweep`. Ctrl-C and SIGTERM cancel
it; the GPUs' settings are restored (and verified) before the command exits 1.
``infergy maxq restore`` restores a journal a killed sweep left (also as ``ExecStopPost=``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from infergy.cli.common import ConfigOpt, open_store
from infergy.cli.maxq_console import MaxqConsole, render_plan, render_sweep, render_sweeps
from infergy.cli.run import choose_backend
from infergy.config.settings import Settings, load_settings
from infergy.daemon.maxq_controls import abort_dead_sweeps, describe_restore, restore_left_journal
from infergy.daemon.maxq_session import MaxqSweep, QuietSweepObserver, SweepObserver, load_resume
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.errors import InfergyError, InputError
from infergy.exporters.maxq_files import draw_sweep_plots, write_sweep_files
from infergy.store.names import new_run_id

maxq_app = typer.Typer(
    help="MaxQ tuning: sweep power limits, clocks, batch sizes and precisions.",
    invoke_without_command=True,
)
_EPILOG = (
    "Examples:\n\n"
    "  infergy maxq --power-limits 200:700:50 --batch-sizes 256 --precisions fp16 --dry-run\n\n"
    "  infergy maxq --backend torch --batch-sizes 1,8,32,128,auto --precisions fp32,fp16\n\n"
    "  infergy maxq --power-limits 150:350:25 --scenario server --target-qps 900 "
    "--max-latency-ms 15\n\n"
    "  infergy maxq restore     # put back what a killed sweep left changed\n\n"
    "Exit codes: 0 a recommendation was made, 1 the sweep stopped, was interrupted or found "
    "nothing feasible (settings restored), 2 bad usage, config or permission."
)
WORKLOAD = "Workload"
AXES = "Axes"


def maxq_spec(values: dict[str, Any]) -> MaxqSpec:
    """Validate the flags through the one sweep model; one clear error naming the flag."""
    try:
        return MaxqSpec.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        text = first["msg"].removeprefix("Value error, ")
        msg = f"--{str(first['loc'][0]).replace('_', '-')}: {text}" if first["loc"] else text
        raise InputError(msg, hint="see `infergy maxq --help`") from None


async def _sweep_main(sweep: MaxqSweep) -> None:
    """Run the sweep; SIGTERM cancels it (the record says aborted, settings restored)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await sweep.run()
    except asyncio.CancelledError:
        if sweep.record.status != "aborted":
            raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


def run_sweep_cli(
    spec: MaxqSpec | None,
    settings: Settings,
    *,
    resume: str | None,
    dry_run: bool,
    json_out: bool,
) -> int:
    """Run (or plan) one sweep with the console display; returns the exit code."""
    console = Console(stderr=json_out)
    with open_store(settings) as store:
        for gone in abort_dead_sweeps(store, "its process stopped (killed or crashed)"):
            console.print(f"[yellow]note:[/yellow] sweep {gone} was interrupted: marked aborted")
        record = load_resume(store, resume) if resume else None
        if spec is None and record is None:
            msg = "give at least one axis (--power-limits, --batch-sizes...) or --resume ID"
            raise InputError(msg, hint="see `infergy maxq --help`")
        assert spec is not None or record is not None
        display = MaxqConsole(console) if not json_out else None
        observer: SweepObserver = _StderrNotes(console) if display is None else display
        sweep = MaxqSweep(
            f"mq-{new_run_id()}", spec or MaxqSpec.model_validate(record["spec"]),  # type: ignore[index]
            settings, store=store, observer=observer, resume=record, dry_run=dry_run,
        )  # fmt: skip
        with display or contextlib.nullcontext():
            try:
                asyncio.run(_sweep_main(sweep))
            except KeyboardInterrupt:
                if sweep.record.status != "aborted":
                    raise
        body = sweep.record.body_json()
    if dry_run:
        if json_out:
            typer.echo(json.dumps(body, indent=2))
        else:
            render_plan(console, body)
        return 0
    files: list[Path] = []
    try:
        out = settings.output.dir / sweep.sweep_id
        files = write_sweep_files(out, body)
        if settings.session.plots:
            files += draw_sweep_plots(out, body)
    except InfergyError as err:
        console.print(f"[yellow]note:[/yellow] could not write every file: {err}")
    if json_out:
        typer.echo(json.dumps(body, indent=2))
    else:
        render_sweep(console, body)
        if files:
            console.print(f"[dim]files: {files[0].parent}[/dim]")
    return _exit_code(console, body)


def _exit_code(console: Console, body: dict[str, Any]) -> int:
    status = body.get("status")
    kept = sum(1 for p in body.get("points") or [] if p.get("usable"))
    restore = body.get("restore") or {}
    restored = "settings restored and verified" if restore.get("verified") else "no setting changed"
    if restore and not restore.get("verified"):
        restored = "RESTORE FAILED: run `infergy maxq restore`"
    if status == "aborted":
        console.print(
            f"[bold red]interrupted:[/bold red] {kept} usable measurements kept; {restored}"
        )
        return 1
    if status != "ok":
        why = next((p for p in body.get("problems") or [] if p.startswith("stopped")), status)
        console.print(f"[bold red]{why}[/bold red]; {kept} usable measurements kept; {restored}")
        return 1
    return 0 if body.get("recommendation") else 1


class _StderrNotes(QuietSweepObserver):
    """With --json: notes go to stderr, nothing else is printed."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._noted: set[str] = set()

    def note(self, text: str) -> None:
        if text not in self._noted:  # every point's session repeats the meters' notes
            self._noted.add(text)
            self.console.print(f"note: {text}", highlight=False)


@maxq_app.callback(epilog=_EPILOG)
def maxq(
    ctx: typer.Context,
    *,
    power_limits: Annotated[
        str | None,
        typer.Option(
            metavar="W",
            rich_help_panel=AXES,
            help="Power limits: 150:350:25 or 200,250,300 (within the GPU's range).",
        ),
    ] = None,
    sm_clocks: Annotated[
        str | None,
        typer.Option(
            metavar="MHZ",
            rich_help_panel=AXES,
            help="SM clocks to lock: 1200:1980:60 (supported clocks).",
        ),
    ] = None,
    mem_clocks: Annotated[
        str | None,
        typer.Option(
            metavar="MHZ", rich_help_panel=AXES, help="Memory clocks to lock (Ampere and newer)."
        ),
    ] = None,
    batch_sizes: Annotated[
        str | None,
        typer.Option(
            metavar="LIST",
            rich_help_panel=AXES,
            help="Batch sizes: 1,8,32,128,auto (auto: the batch knee).",
        ),
    ] = None,
    precisions: Annotated[
        str | None,
        typer.Option(metavar="LIST", rich_help_panel=AXES, help="Precisions: fp32,fp16."),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=WORKLOAD,
            help="onnxruntime | torch | tensorrt | sim (default: as infergy run).",
        ),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            rich_help_panel=WORKLOAD,
            help="auto, a built-in model, a file; for sim a part (h200, t4, l4, a2).",
        ),
    ] = "auto",
    scenario: Annotated[
        str,
        typer.Option(
            rich_help_panel=WORKLOAD, help="offline | server | single-stream | multi-stream."
        ),
    ] = "offline",
    batch_size: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=WORKLOAD,
            help="The default settings' batch (default: the largest swept, else 1); auto.",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=WORKLOAD,
            help="The default settings' precision (default: the first swept, else fp32).",
        ),
    ] = None,
    target_qps: Annotated[
        float | None,
        typer.Option(metavar="QPS", rich_help_panel=WORKLOAD, help="Server: queries/s to offer."),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            metavar="0,1", rich_help_panel=WORKLOAD, help="GPU indices (default: all visible)."
        ),
    ] = None,
    meter: Annotated[
        list[str] | None,
        typer.Option(
            metavar="METER",
            rich_help_panel=WORKLOAD,
            help="nvml | rapl | sim | ptd://HOST:PORT; repeatable.",
        ),
    ] = None,
    objective: Annotated[
        str, typer.Option(help="samples-per-joule | joules-per-query | tokens-per-joule.")
    ] = "samples-per-joule",
    max_latency_ms: Annotated[
        float | None,
        typer.Option(
            metavar="MS",
            help="Latency bound at --latency-percentile (server, single-/multi-stream).",
        ),
    ] = None,
    latency_percentile: Annotated[float, typer.Option(metavar="P", help="50, 90 or 99.")] = 99.0,
    min_samples_per_second: Annotated[
        float | None, typer.Option(metavar="N", help="Slower points are never recommended.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="The power source optimised (default: \\[maxq] source: GPUs, else the analyzer)."
        ),
    ] = None,
    point_duration: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Measured seconds per point (default: \\[maxq] point_duration_s).",
        ),
    ] = None,
    warmup: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Warm-up per point (default: \\[maxq] warmup_s)."),
    ] = None,
    settle: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Wait after each change of settings (default: \\[maxq] settle_s).",
        ),
    ] = None,
    idle: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="The sweep's one idle baseline (default: \\[maxq] idle_s)."
        ),
    ] = None,
    search: Annotated[
        str, typer.Option(help="grid (every point) | smart (coordinate + golden-section search).")
    ] = "smart",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and its time; change nothing.")
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            metavar="ID", help="Continue a stored sweep that stopped (its flags are kept)."
        ),
    ] = None,
    label: Annotated[str | None, typer.Option(help="Free text kept with the sweep.")] = None,
    workload: Annotated[
        str | None,
        typer.Option(metavar="vision|llm", help="As infergy run's (llm: tokens-per-joule)."),
    ] = None,
    input_tokens: Annotated[
        str | None, typer.Option(metavar="DIST", help="llm: prompt lengths, as infergy run's.")
    ] = None,
    output_tokens: Annotated[
        str | None, typer.Option(metavar="DIST", help="llm: output lengths, as infergy run's.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default: \\[output] dir).")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the sweep record JSON on stdout.")
    ] = False,
    config: ConfigOpt = None,
) -> int:
    """Find the efficient settings of a workload in few points, with the gain's interval.

    Every point is a real measured session stored as a run; the default settings are measured
    at the start and the end. Power-limit and clock sweeps write a restore journal before the
    first change and always put the GPU back; batch and precision sweeps change nothing.
    """
    if ctx.invoked_subcommand is not None:
        return 0
    overrides = {"output": {"dir": str(out)}} if out is not None else None
    settings = load_settings(config, overrides=overrides)
    spec = None
    if resume is None:
        gpu_list = None
        if gpus is not None:
            try:
                gpu_list = tuple(int(g) for g in gpus.split(",") if g.strip())
            except ValueError:
                msg = f"--gpus takes comma-separated indices, got {gpus!r}"
                raise InputError(msg, hint="e.g. --gpus 0,1") from None
        batch: int | str | None = batch_size
        if batch_size is not None and batch_size.strip().lower() != "auto":
            try:
                batch = int(batch_size)
            except ValueError:
                msg = f"--batch-size takes a number or auto, got {batch_size!r}"
                raise InputError(msg) from None
        values = {
            "power_limits": power_limits, "sm_clocks": sm_clocks, "mem_clocks": mem_clocks,
            "batch_sizes": batch_sizes, "precisions": precisions, "backend": backend,
            "model": model, "scenario": scenario, "batch_size": batch, "precision": precision,
            "target_qps": target_qps, "gpus": gpu_list, "meter": tuple(meter or ()),
            "objective": objective, "max_latency_ms": max_latency_ms,
            "latency_percentile": latency_percentile,
            "min_samples_per_second": min_samples_per_second, "source": source,
            "point_duration": point_duration, "warmup": warmup, "settle": settle, "idle": idle,
            "search": search, "label": label, "workload": workload,
            "input_tokens": input_tokens, "output_tokens": output_tokens,
        }  # fmt: skip
        spec = maxq_spec(values)
        if spec.backend is None:
            modelled = (
                settings.meters.simulated_gpus and settings.meters.simulated_part != "generic"
            )
            picked = "sim" if modelled else choose_backend(spec.base_job()).backend
            spec = spec.model_copy(update={"backend": picked})
    code = run_sweep_cli(spec, settings, resume=resume, dry_run=dry_run, json_out=json_out)
    raise typer.Exit(code)


@maxq_app.command("restore")
def maxq_restore(*, config: ConfigOpt = None) -> int:
    """Restore the GPU settings a killed sweep left changed (its journal); verify; exit 0.

    Safe to run at any time (a systemd ExecStopPost=, a boot script): without a journal it
    does nothing; a journal whose sweep still runs is left to it.
    """
    settings = load_settings(config)
    state_dir = settings.maxq_state_dir(os.environ)
    report = restore_left_journal(state_dir)
    if report is None:
        typer.echo(f"no restore journal in {state_dir}: nothing to restore")
    else:
        typer.echo(describe_restore(report) + " (verified)")
    return 0


@maxq_app.command("show")
def maxq_show(
    *,
    sweep_id: Annotated[str, typer.Argument(help="A sweep id or a unique prefix of one.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the sweep record JSON.")] = False,
    plots: Annotated[bool, typer.Option(help="Redraw the sweep's files and plots.")] = False,
    config: ConfigOpt = None,
) -> int:
    """Show one stored sweep."""
    settings = load_settings(config)
    with open_store(settings) as st:
        record = st.get_sweep(sweep_id)
    if plots:
        out = settings.output.dir / str(record["sweep_id"])
        for path in write_sweep_files(out, record) + draw_sweep_plots(out, record):
            typer.echo(str(path))
    if json_out:
        typer.echo(json.dumps(record, indent=2))
    elif not plots:
        render_sweep(Console(), record)
    return 0


@maxq_app.command("list")
def maxq_list(
    *,
    limit: Annotated[int, typer.Option(help="How many sweeps, newest first.")] = 20,
    config: ConfigOpt = None,
) -> int:
    """List stored sweeps, newest first."""
    settings = load_settings(config)
    with open_store(settings) as st:
        render_sweeps(Console(), st.list_sweeps(limit))
    return 0


def register(app: typer.Typer) -> None:
    """Add ``maxq`` (and ``maxq restore|show|list``) to the command line."""
    app.add_typer(maxq_app, name="maxq")
