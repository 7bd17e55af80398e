"""``infergy analyzer-sim``: an emulated Yokogawa analyzer on a pseudo-terminal."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from infergy.cli.ptd_bridge import parse_rate_s
from infergy.errors import InputError
from infergy.ptd_bridge.emulator import EMULATED_MODELS, AnalyzerEmulator
from infergy.ptd_bridge.emulator_control import ControlServer
from infergy.ptd_bridge.watts_profile import WattsProfile


def analyzer_sim(
    *,
    model: Annotated[str, typer.Option(help=f"Model: {', '.join(EMULATED_MODELS)}.")] = "wt310",
    watts: Annotated[float | None, typer.Option(help="Constant power (W).")] = None,
    profile: Annotated[
        Path | None, typer.Option(help="Power profile CSV: t_s,watts (linear between points).")
    ] = None,
    volts: Annotated[float, typer.Option(help="RMS voltage (V).")] = 230.0,
    pf: Annotated[float, typer.Option(help="Power factor.")] = 0.95,
    noise: Annotated[
        float, typer.Option(metavar="FRACTION", help="Relative noise of each update's power.")
    ] = 0.0,
    control: Annotated[
        Path | None,
        typer.Option(
            metavar="SOCKET",
            help="UNIX socket for live control "
            "(watts 250, fault unplug 3, fault garbage, fault stall 2, "
            "fault slow 0.5, status).",
        ),
    ] = None,
    rate: Annotated[
        str, typer.Option(help="Update interval at power-on: 100ms, 250ms, 1s...")
    ] = "250ms",
    link: Annotated[
        Path | None, typer.Option(help="Stable path (symlink) to the pty, kept across replugs.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
) -> int:
    """An emulated Yokogawa analyzer on a pseudo-terminal, for tests and demos.

    Prints the pty's path (or --link) as the first line of stdout, then serves until
    interrupted. Point `infergy ptd-bridge` (or any serial client) at that path.
    """
    if watts is not None and profile is not None:
        msg = "give --watts or --profile, not both"
        raise InputError(msg)
    prof = WattsProfile.from_csv(profile) if profile is not None else None
    with AnalyzerEmulator(
        model, profile=prof, watts=100.0 if watts is None else watts, volts=volts, pf=pf,
        noise=noise, rate_s=parse_rate_s(rate), link=link, seed=seed,
    ) as emu:  # fmt: skip
        sys.stdout.write(emu.path + "\n")
        sys.stdout.flush()
        server = ControlServer(emu, control) if control is not None else None
        if server is not None:
            server.start()
            sys.stderr.write(f"control socket: {control}\n")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            stop.wait()
        finally:
            if server is not None:
                server.stop()
    return 0


def register(app: typer.Typer) -> None:
    """Add ``analyzer-sim`` to the ``infergy`` app."""
    app.command("analyzer-sim")(analyzer_sim)
