"""Where infergy keeps things when the config does not say: the path policy, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def default_store_path(env: Mapping[str, str]) -> Path:
    """Where the store lives when the config names no path.

    ``$STATE_DIRECTORY/infergy.db`` under systemd's ``StateDirectory=`` (its first entry), else
    ``$XDG_STATE_HOME/infergy/infergy.db``, else ``~/.local/state/infergy/infergy.db``.
    """
    if state_dir := env.get("STATE_DIRECTORY", "").split(":")[0]:
        return Path(state_dir) / "infergy.db"
    if (xdg := env.get("XDG_STATE_HOME", "")) and Path(xdg).is_absolute():  # XDG: else ignored
        return Path(xdg) / "infergy" / "infergy.db"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "state" / "infergy" / "infergy.db"
