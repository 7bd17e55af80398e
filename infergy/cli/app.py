"""The ``infergy`` command line: the typer app and :func:`main`, the only place that exits.

Each command lives in its own module of this package and adds itself with ``register(app)``.
:func:`main` turns errors into exit codes (ARCHITECTURE.md, "Command line"): 0 ok, 1 the
measurement failed, 2 usage or config error, 3 result degraded and ``--strict`` given.
Errors are one line on stderr plus a hint; ``--debug`` anywhere on the line shows tracebacks.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from infergy import __version__
from infergy.cli import (
    analyze,
    analyzer_sim,
    doctor,
    fleet,
    maxq,
    measure,
    plot,
    ptd_bridge,
    run,
    runs,
    serve,
    watch,
)
from infergy.cli.console import print_error
from infergy.errors import InfergyError

app = typer.Typer(
    name="infergy",
    help=(
        "Power-aware inference measurement: joules per query and samples/s per watt, "
        "with MLPerf's power rules reproduced beside time-weighted figures."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
for _command in (
    run, measure, watch, analyze, serve, runs, plot, doctor, maxq, ptd_bridge, analyzer_sim,
    fleet,
):  # fmt: skip
    _command.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"infergy {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (may also be given after the command).")
    ] = False,
) -> None:
    """infergy: measure what inference costs in joules."""
    del version, debug  # handled eagerly / in main()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``infergy`` console script; the only place that exits."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:  # accepted anywhere on the line: move it where the root callback expects it
        args = ["--debug", *[a for a in args if a != "--debug"]]
    err = Console(stderr=True, highlight=False, soft_wrap=True)  # one line, whatever its length
    try:
        rv: Any = app(args=args, prog_name="infergy", standalone_mode=False)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as e:  # usage errors: typer prints them with the usage line
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            print_error(err, e.format_message())
        return int(e.exit_code)
    except InfergyError as e:
        if debug:
            raise
        print_error(err, str(e), e.hint)
        return e.exit_code
    except Exception as e:
        if debug:
            raise
        hint = "rerun with --debug and report the traceback"
        print_error(err, f"{type(e).__name__}: {e}", hint, label="internal error")
        return 1
    return rv if isinstance(rv, int) else 0


def _say(console: Console, label: str, style: str, message: str) -> None:
    """Print one unwrapped line: a styled label, then the message as plain text.

    Never parsed as markup: a config value such as ``listen = "[/x]:8765"`` prints as written.
    """
    console.print(Text.assemble((label, style), " ", message), soft_wrap=True)
