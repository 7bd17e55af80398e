"""``infergy ptd-bridge``: the PTDaemon-compatible bridge on PTDaemon's command line.

``ptd-bridge`` accepts PTDaemon's command line (``-l LOG -p PORT [-c CH[,CH]] [-D]
[-g|-n|-y|-U] DEVICE_TYPE DEVICE_PORT``, options in any order) plus infergy's long options, so
it can stand where tools expect the ``ptd`` binary (``python -m infergy.ptd_bridge`` takes the
same arguments). Errors are one line and a hint, through :class:`~infergy.errors.InfergyError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from infergy.errors import InputError
from infergy.ptd_bridge.analyzers.specs import DEVICE_TYPES, device_type
from infergy.ptd_bridge.bridge import BridgeConfig
from infergy.ptd_bridge.emulator import EMULATED_MODELS, AnalyzerEmulator
from infergy.ptd_bridge.server import NOT_PTDAEMON, PtdBridge

_INTERFACES = {"-g": "GPIB", "-n": "TCP/IP", "-y": "Yokogawa TMCTL", "-U": "Windows USB"}


def parse_channels(text: str | None) -> tuple[int, ...] | None:
    """``-c 1,2`` -> (1, 2).

    Raises:
        InputError: not a comma-separated list of positive channel numbers.
    """
    if text is None:
        return None
    try:
        channels = tuple(int(x) for x in text.split(","))
        if not channels or min(channels) < 1 or len(set(channels)) != len(channels):
            raise ValueError(text)
    except ValueError:
        msg = f"invalid channel list -c {text!r}"
        raise InputError(msg, hint="give channel numbers from 1, e.g. -c 1 or -c 1,2") from None
    return channels


def parse_rate_s(text: str) -> float:
    """``100ms`` / ``250MS`` / ``1s`` / ``0.5`` -> seconds.

    Raises:
        InputError: not a duration.
    """
    t = text.strip().lower()
    try:
        seconds = float(t[:-2]) / 1000 if t.endswith("ms") else float(t.removesuffix("s"))
        if seconds <= 0:
            raise ValueError(t)
    except ValueError:
        msg = f"invalid update rate {text!r}"
        raise InputError(msg, hint="e.g. 100ms, 250ms, 500ms, 1s") from None
    return seconds


def ptd_bridge(
    *,
    device_type_number: Annotated[
        int,
        typer.Argument(
            metavar="DEVICE_TYPE",
            help="PTDaemon device type: 0 dummy, 8 WT210, "
            "49 WT310/WT310E, 52 WT330 single channel, 77 WT330 multichannel.",
        ),
    ],
    device_port: Annotated[
        str | None,
        typer.Argument(
            metavar="DEVICE_PORT",
            help="Serial device, pty or /dev/usbtmc* (optional with --emulate).",
        ),
    ] = None,
    logfile: Annotated[
        Path | None, typer.Option("-l", "--logfile", help="Data log: samples and status lines.")
    ] = None,
    port: Annotated[int, typer.Option("-p", "--port", help="TCP port to listen on.")] = 8888,
    channels: Annotated[
        str | None, typer.Option("-c", "--channel", metavar="CH[,CH]", help="Channels to read.")
    ] = None,
    dc: Annotated[bool, typer.Option("-D", "--dc", help="DC measurement mode.")] = False,
    gpib: Annotated[bool, typer.Option("-g", help="GPIB (not supported).")] = False,
    network: Annotated[bool, typer.Option("-n", help="TCP/IP analyzer (not supported).")] = False,
    tmctl: Annotated[bool, typer.Option("-y", help="Yokogawa TMCTL (not supported).")] = False,
    usb: Annotated[bool, typer.Option("-U", help="Windows USB (not supported).")] = False,
    listen: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    baud: Annotated[int, typer.Option(help="Serial line speed.")] = 9600,
    framing: Annotated[str, typer.Option(help="Serial data bits, parity, stop bits.")] = "8N1",
    interval_ms: Annotated[
        int, typer.Option(help="Sample interval until a Go sets one (R* between runs).")
    ] = 1000,
    max_update_ms: Annotated[
        int,
        typer.Option(
            help="Longest analyzer update; samples combine updates (250 suits "
            "9600 baud, 100 needs a faster line or USB)."
        ),
    ] = 250,
    emulate: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Serve an emulated analyzer "
            f"({', '.join(EMULATED_MODELS)}) instead of DEVICE_PORT.",
        ),
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option(help="Seconds start-up may spend reaching the analyzer.")
    ] = 20.0,
) -> int:
    """PTDaemon-compatible power server in front of a serial analyzer.

    Not SPEC's PTDaemon: it speaks PTDaemon's protocol and formats, but measurements taken
    through it cannot make an MLPerf-compliant submission.
    """
    flags = {"-g": gpib, "-n": network, "-y": tmctl, "-U": usb}
    for flag, given in flags.items():
        if given:
            msg = f"interface {flag} ({_INTERFACES[flag]}) is not supported by infergy's bridge"
            raise InputError(msg, hint="connect the analyzer over serial/USB-serial or USBTMC")
    dtype = device_type(device_type_number)
    if dc and not dtype.dc:
        if device_type_number + 500 not in DEVICE_TYPES:  # PTDaemon's DC personalities: 5xx
            msg = f"device type {device_type_number} has no DC mode (-D)"
            raise InputError(msg, hint="DC mode exists for 8, 49 and 52 (508, 549, 586)")
        dtype = device_type(device_type_number + 500)
    if device_port is None and emulate is None:
        msg = "DEVICE_PORT is missing"
        raise InputError(msg, hint="e.g. infergy ptd-bridge -p 8888 49 /dev/ttyUSB0")
    config = BridgeConfig(
        device=dtype, port=device_port or "", channels=parse_channels(channels), baud=baud,
        framing=framing, interval_ms=interval_ms, max_update_ms=max_update_ms,
        connect_timeout_s=connect_timeout,
    )  # fmt: skip
    asyncio.run(_serve(config, listen, port, logfile, emulate))
    return 0


async def _serve(
    config: BridgeConfig, host: str, port: int, logfile: Path | None, emulate: str | None
) -> None:
    with contextlib.ExitStack() as stack:
        if emulate is not None:
            emu = stack.enter_context(AnalyzerEmulator(emulate))
            config = dataclasses.replace(config, port=emu.path)
        async with PtdBridge(config, host=host, port=port, log_path=logfile) as bridge:
            await _until_signalled(bridge.serve_forever())


async def _until_signalled(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` until it ends or SIGINT/SIGTERM arrives (then leave cleanly)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def register(app: typer.Typer) -> None:
    """Add ``ptd-bridge`` to the ``infergy`` app."""
    app.command(
        "ptd-bridge",
        epilog=(
            "Examples:\n\n  infergy ptd-bridge -l ptd.log -p 8888 49 /dev/ttyUSB0\n\n"
            "  infergy ptd-bridge -p 8888 -c 1,2 77 /dev/usbtmc0\n\n"
            f"  infergy ptd-bridge --emulate wt310 49\n\n{NOT_PTDAEMON}"
        ),
    )(ptd_bridge)
