"""The live display of ``infergy run``: what a progress bar says about simulated sources."""

from __future__ import annotations

import io

from rich.console import Console

from infergy.cli.progress import ConsoleObserver


def test_the_progress_bar_marks_simulated_sources() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    with ConsoleObserver(console) as observer:
        observer.phase("run", 10.0)
        observer.progress(120, 120, 2.0, {"ac": 176.2, "gpu0": 301.0}, {"ac"})
        detail = observer._progress.tasks[-1].fields["detail"]
    assert "ac 176 W (SIMULATED)" in detail, detail
    assert "gpu0 301 W" in detail and "gpu0 301 W (SIMULATED)" not in detail, detail
