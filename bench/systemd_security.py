"""The hardening score of systemd/infergy.service, for BENCHMARKS.md.

Runs the real ``systemd-analyze security --offline=yes`` on a copy of the unit whose
``ExecStart=`` binary is a stub (the tool wants it to exist), and prints the overall exposure
(0 = fully locked down, 10 = unprotected; target <= 3.0) and each check that is not met, with
its weight. ``--json`` prints the same as one JSON object. Exit status 1 above the target.

    python bench/systemd_security.py [--json] [UNIT]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 3.0
EXEC = "/usr/local/bin/infergy"


def analyze(unit: Path) -> dict[str, object]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        sys.exit("systemd-analyze is not installed (scripts/system-deps.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        stub = Path(tmp) / "infergy"
        stub.write_text("#!/bin/sh\n", encoding="utf-8")
        stub.chmod(0o755)
        copy = Path(tmp) / unit.name
        copy.write_text(unit.read_text(encoding="utf-8").replace(EXEC, str(stub)), encoding="utf-8")
        out = subprocess.run(
            [tool, "security", "--offline=yes", "--no-pager", str(copy)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        version = subprocess.run(
            [tool, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.splitlines()[0]
    text = out.stdout + out.stderr
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\S+)", text)
    if level is None:
        sys.exit(f"no exposure level in the output:\n{text}")
    unmet = [
        {"check": m.group(1), "weight": float(m.group(3)), "why": m.group(2).strip()}
        for m in re.finditer(r"(?m)^✗ (\S+)\s+(.*?)\s+(\d+\.\d+)\s*$", text)
    ]
    return {
        "unit": str(unit.relative_to(ROOT) if unit.is_relative_to(ROOT) else unit),
        "systemd": version,
        "exposure": float(level.group(1)),
        "rating": level.group(2),
        "target": TARGET,
        "unmet": sorted(unmet, key=lambda u: -float(u["weight"])),  # type: ignore[arg-type]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("unit", nargs="?", type=Path, default=ROOT / "systemd" / "infergy.service")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = analyze(args.unit.resolve())
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(
            f"{report['unit']}: exposure {report['exposure']} {report['rating']} "
            f"(target <= {TARGET}; {report['systemd']})"
        )
        for item in report["unmet"]:  # type: ignore[attr-defined]
            print(f"  {item['weight']:.1f}  {item['check']:<40} {item['why']}")
    sys.exit(0 if float(report["exposure"]) <= TARGET else 1)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
