"""The shipped systemd files, checked by the real systemd tools (no systemd PID 1 needed).

``systemd-analyze verify`` exits 0 on warnings (unknown keys, unparsable values), so any output
at all fails the test. It also insists that ``ExecStart=``'s binary exists: the test copies
the unit into a temporary folder with ``ExecStart`` pointed at a stub executable there,
changing nothing else. ``systemd-analyze security --offline=yes`` scores the file's
hardening; the exposure must stay <= 3.0 (``bench/systemd_security.py`` records the figure).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from infergy.config.sections import ServeSettings
from infergy.daemon.service import stop_bound_s

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "infergy.service"
SYSUSERS = ROOT / "systemd" / "infergy-sysusers.conf"
EXEC = "/usr/local/bin/infergy"
MAX_EXPOSURE = 3.0


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/system-deps.sh installs it)")
    return path


def runnable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit in ``tmp_path`` with ExecStart's binary replaced by an existing stub."""
    stub = tmp_path / "bin" / "infergy"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8") if text is None else text
    assert text.count(f"ExecStart={EXEC} ") == 1
    unit = tmp_path / "infergy.service"
    unit.write_text(text.replace(f"ExecStart={EXEC} ", f"ExecStart={stub} "), encoding="utf-8")
    return unit


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("systemd-analyze"), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def exposure(unit: Path) -> tuple[float, str]:
    out = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = out.stdout + out.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", text)
    assert match is not None, text
    return float(match.group(1)), text


def test_verify_passes_with_no_output_at_all(tmp_path: Path) -> None:
    out = verify(runnable_copy(tmp_path))
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_verify_would_catch_a_typo_that_systemd_only_warns_about(tmp_path: Path) -> None:
    # the reason for the no-output rule: systemd-analyze verify exits 0 on this
    broken = UNIT.read_text(encoding="utf-8").replace("Type=notify", "Type=notifyy")
    out = verify(runnable_copy(tmp_path, broken))
    assert out.returncode == 0
    assert "notifyy" in out.stderr


def test_the_shipped_exec_start_is_what_the_docs_say() -> None:
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={EXEC} serve --config /etc/infergy/infergy.toml\n" in text
    install = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    assert EXEC in install
    assert "/etc/infergy/infergy.toml" in install


def test_the_unit_keeps_its_essential_settings() -> None:
    settings = dict(
        line.split("=", 1)
        for line in UNIT.read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.startswith("#")
    )
    for key, value in {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "WatchdogSec": "30s",
        "StateDirectory": "infergy",
        "RuntimeDirectory": "infergy",
        "ConfigurationDirectory": "infergy",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "DevicePolicy": "closed",
        "CapabilityBoundingSet": "",
        "KillMode": "mixed",
    }.items():
        assert settings.get(key) == value, key
    # the longest graceful stop with the default stop_timeout_s must fit in the stop timeout
    bound = stop_bound_s(ServeSettings().stop_timeout_s)
    assert int(settings["TimeoutStopSec"].rstrip("s")) > bound, bound


def test_security_exposure_is_at_most_3(tmp_path: Path) -> None:
    level, text = exposure(runnable_copy(tmp_path))
    assert level <= MAX_EXPOSURE, text
    assert "✓ NoNewPrivileges=" in text
    assert "✓ CapabilityBoundingSet=~CAP_SYS_ADMIN" in text


def test_the_exposure_score_is_sensitive_to_hardening(tmp_path: Path) -> None:
    # the figure above is not a constant: dropping hardening raises it
    weak = re.sub(
        r"(?m)^(ProtectSystem|ProtectHome|PrivateTmp|NoNewPrivileges|CapabilityBoundingSet"
        r"|SystemCallFilter|RestrictAddressFamilies|DevicePolicy)=.*$",
        "",
        UNIT.read_text(encoding="utf-8"),
    )
    hardened, _ = exposure(runnable_copy(tmp_path))
    weakened, _ = exposure(runnable_copy(tmp_path, weak))
    assert weakened > hardened + 2.0


def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    out = subprocess.run(
        [
            tool("systemd-sysusers"),
            f"--root={root}",
            "--replace=/usr/lib/sysusers.d/infergy.conf",
            "-",
        ],
        input=SYSUSERS.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    passwd = (root / "etc" / "passwd").read_text(encoding="utf-8")
    (entry,) = [line for line in passwd.splitlines() if line.startswith("infergy:")]
    fields = entry.split(":")
    assert fields[5:] == ["/var/lib/infergy", "/usr/sbin/nologin"]
    assert int(fields[2]) < 1000  # a system user
    assert "infergy:" in (root / "etc" / "group").read_text(encoding="utf-8")
