"""``make test`` as root installs Debian packages: it must say what, why, and how to opt out."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "system-deps.sh"


def _fake_root(tmp_path: Path) -> tuple[Path, Path]:
    """A PATH with a root ``id``, a recording ``apt-get`` and no mosquitto/prometheus/systemd."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "mktemp", "tail", "sed", "rm", "cat"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    calls = tmp_path / "apt-calls.txt"
    stubs = {
        "id": "echo 0",
        "apt-get": f'echo "$*" >> {calls}',
        "dpkg-query": "echo 9.9-test",
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!{shutil.which('bash')}\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir, calls


def _run(bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "bash"), str(SCRIPT)], capture_output=True, text=True, check=False,
        env={"PATH": str(bin_dir), "HOME": os.environ["HOME"], **env}, timeout=30,
    )  # fmt: skip


def test_as_root_it_names_each_package_its_reason_and_the_opt_out(tmp_path: Path) -> None:
    bin_dir, calls = _fake_root(tmp_path)
    done = _run(bin_dir)
    assert done.returncode == 0, done.stderr
    installs = [c for c in calls.read_text().splitlines() if c.startswith("install")]
    assert installs, f"nothing was installed: {done.stderr}"
    packages = installs[0].split()[4:]  # install -y -qq --no-install-recommends <packages>
    assert "prometheus" in packages and "systemd" in packages, installs
    for p in packages:
        assert f"system-deps: missing {p}: " in done.stderr, done.stderr  # what it is for
        assert f"system-deps: installed {p} 9.9-test" in done.stderr, done.stderr
    assert "SYSTEM_DEPS=no" in done.stderr, done.stderr  # how not to


def test_system_deps_no_installs_nothing(tmp_path: Path) -> None:
    bin_dir, calls = _fake_root(tmp_path)
    done = _run(bin_dir, SYSTEM_DEPS="no")
    assert done.returncode == 0, done.stderr
    assert not calls.exists(), calls.read_text()
    assert "installing nothing" in done.stderr, done.stderr
