"""Shared test configuration.

Hypothesis runs derandomized by default so that CI is deterministic; set
``HYPOTHESIS_PROFILE=explore`` locally to search new examples with more of them.

Every test runs hermetic: the session starts with a home, XDG state/config/cache directories
and no systemd or ``INFERGY_*`` variables of its own, so nothing a test runs (in-process or as
an ``infergy`` subprocess, which inherits the environment) reads the user's configuration or
writes into the user's results store (``~/.local/state/infergy/infergy.db``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

settings.register_profile("default", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REAL_HOME = os.environ.get("HOME", "")
"""The user's home, as the test session found it (tests check they never write there)."""
_SYSTEMD_VARS = ("STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@pytest.fixture(scope="session", autouse=True)
def _hermetic_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A private HOME and XDG directories; no INFERGY_* nor systemd variables (whole session,
    so module-scoped fixtures that run ``infergy`` are covered too)."""
    root = tmp_path_factory.mktemp("hermetic")
    with pytest.MonkeyPatch.context() as mp:
        for name in [v for v in os.environ if v.startswith("INFERGY_")] + list(_SYSTEMD_VARS):
            mp.delenv(name, raising=False)
        mp.setenv("HOME", str(root / "home"))
        for var, sub in (("XDG_STATE_HOME", "state"), ("XDG_CONFIG_HOME", "config"),
                         ("XDG_CACHE_HOME", "cache")):  # fmt: skip
            mp.setenv(var, str(root / sub))
        (root / "home").mkdir()
        yield
