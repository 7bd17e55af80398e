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


def test_a_generative_result_shows_energy_per_token_by_phase_with_uncertainties() -> None:
    from infergy.cli.console_llm import render_generative  # noqa: PLC0415

    console, buf = _console(width=80)
    gen = {"input_tokens": 51200, "output_tokens": 12800, "output_tokens_per_second": 1280.0,
           "ttft_ms": {"p50": 85.0, "p99": 240.0}, "tpot_ms": {"p50": 12.5, "p99": 20.0},
           "mean_decode_batch": 31.5,
           "sources": {"gpu0": {"joules_per_output_token": 0.25,
                                "joules_per_output_token_uncertainty": 0.01,
                                "joules_per_prefill_token": 0.02,
                                "joules_per_prefill_token_uncertainty": 0.002,
                                "joules_per_decode_token": 0.2,
                                "joules_per_decode_token_uncertainty": None,
                                "tokens_per_second_per_watt": 4.0,
                                "tokens_per_second_per_watt_uncertainty": 0.16,
                                "split_method": "resolved"}}}  # fmt: skip
    render_generative(console, gen, {"gpu0": {"simulated": True}})
    out = buf.getvalue()
    assert "tokens/s 1,280.0" in out and "TTFT p50/p99 85.0 / 240.0 ms" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("gpu0*"))
    assert row.split()[1:] == ["250±10", "20.0±2.0", "200", "4.00±0.16", "resolved"], row
    assert "SIMULATED, not measurements: gpu0" in out
