"""Console output keeps text literal: hints and notes are never eaten as rich markup."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from infergy.cli.app import main
from infergy.cli.console import print_error, print_note
from infergy.cli.progress import ConsoleObserver

MARKUP_LIKE = "pip install 'infergy[torch]'; set [store] path; [/x] [bold]not bold[/bold]"


def _console(width: int = 40) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=width, force_terminal=False, color_system=None), buf


def test_errors_hints_and_notes_print_bracketed_words_as_they_are() -> None:
    console, buf = _console()
    print_error(console, f"bad {MARKUP_LIKE}", MARKUP_LIKE)
    print_note(console, MARKUP_LIKE)
    lines = buf.getvalue().splitlines()
    # one line each, even past the console's width: never folded
    assert lines == [f"error: bad {MARKUP_LIKE}", f"hint: {MARKUP_LIKE}", f"note: {MARKUP_LIKE}"]


def test_the_live_display_prints_notes_literally() -> None:
    console, buf = _console(width=200)
    ConsoleObserver(console).note(MARKUP_LIKE)
    assert f"note: {MARKUP_LIKE}" in buf.getvalue()


def test_the_error_printer_keeps_the_hints_section_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``set [store] path`` printed as ``set  path`` before: the hint names the config key."""
    monkeypatch.delenv("INFERGY_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "60")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\npath = "{blocker / "sub" / "infergy.db"}"\n')
    assert main(["runs", "list", "--config", str(config)]) == 1  # a store error
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "hint: set [store] path to a writable location", err
    assert err.startswith("error: store ") and len(err.splitlines()) == 2, err
