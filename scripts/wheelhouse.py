"""A wheelhouse: infergy and every dependency as wheels in one folder, for machines offline.

    python3 scripts/wheelhouse.py OUT [--extras torch] [--python-version 3.11]
                                      [--platform manylinux_2_28_x86_64]
    python3 scripts/wheelhouse.py OUT --from-env      # this environment's installed wheels

Then, on the machine without network (docs/install.md)::

    python3 -m venv /opt/infergy
    /opt/infergy/bin/pip install --no-index --find-links OUT 'infergy[torch]'

The default builds infergy's wheel from this checkout and downloads the wheels of its
dependencies for the *target* Python and platform (``pip download --only-binary :all:``; a
manylinux platform is expanded to every older glibc it admits, as pip does for the machine it
runs on), so it needs the network, but not the target's Python. ``--from-env`` repacks the
distributions installed in the environment running this script (the ones infergy and the
extras asked for require; their installed files and their original wheel tags), for a
target identical to this machine; only infergy's build backend comes from the
index (or ``PIP_FIND_LINKS``). ``make wheelhouse`` runs the first.

Plain standard library (and ``packaging``, which pip vendors) so that it runs anywhere.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.metadata as md
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # pip vendors it
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
_SKIPPED = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def platforms(platform: str) -> list[str]:
    """``platform`` and every platform a machine of it also runs (older manylinux glibc)."""
    found = _MANYLINUX.match(platform)
    if found is None:
        return [platform]
    major, minor, arch = int(found[1]), int(found[2]), found[3]
    out = []
    for m in range(minor, 4, -1):
        out.append(f"manylinux_{major}_{m}_{arch}")
        if (major, m) in _LEGACY:
            out.append(f"{_LEGACY[(major, m)]}_{arch}")
    return out


def build_infergy(out: Path) -> Path:
    """The infergy wheel, built from this checkout into ``out``.

    pip builds it in isolation: it fetches the build backend (setuptools, wheel; a few MB)
    from the index, or from ``PIP_FIND_LINKS`` (a folder of their wheels) with
    ``PIP_NO_INDEX=1``.
    """
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out)]
    subprocess.run([*cmd, str(ROOT)], check=True)
    return max(out.glob("infergy-*.whl"), key=lambda p: p.stat().st_mtime)


def download(out: Path, wheel: Path, extras: list[str], python: str, platform: str) -> None:
    """The wheels of every dependency of ``wheel[extras]`` for the target (the network)."""
    target = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "-d", str(out), "--only-binary",
           ":all:", "--python-version", python, "--implementation", "cp"]  # fmt: skip
    for p in platforms(platform):
        cmd += ["--platform", p]
    subprocess.run([*cmd, target], check=True)


def required(wheel: Path, extras: list[str]) -> list[md.Distribution]:
    """The installed distributions infergy's ``wheel`` (with ``extras``) needs, transitively."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    todo = []
    for line in lines:
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            env = [{"extra": e} for e in ["", *extras]]
            if req.marker is None or any(req.marker.evaluate(e) for e in env):
                todo.append(req)
    found: dict[str, md.Distribution] = {}
    seen_extras: dict[str, set[str]] = {}
    while todo:
        req = todo.pop()
        key = req.name.lower().replace("_", "-")
        wanted = set(req.extras)
        if key in found and wanted <= seen_extras[key]:
            continue
        dist = md.distribution(req.name)
        found[key] = dist
        seen_extras[key] = seen_extras.get(key, set()) | wanted
        for line in dist.requires or []:
            sub = Requirement(line)
            env = {"extra": ""}
            if sub.marker is None or any(
                sub.marker.evaluate(env | {"extra": e}) for e in [*seen_extras[key], ""]
            ):
                todo.append(sub)
    found.pop("infergy", None)  # an extra that names infergy[torch]: built from the checkout
    return list(found.values())


def repack(dist: md.Distribution, out: Path) -> Path:
    """The wheel ``dist`` was installed from, rebuilt from its installed files and tags."""
    info = next(f for f in dist.files or [] if f.name == "WHEEL" and f.parent.name.endswith(
        ".dist-info"))  # fmt: skip
    tags = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
            if line.startswith("Tag:")]  # fmt: skip
    py, abi, plat = (sorted({t.split("-")[i] for t in tags}) for i in range(3))
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    wheel = out / f"{name}-{dist.version}-{'.'.join(py)}-{'.'.join(abi)}-{'.'.join(plat)}.whl"
    record = io.StringIO()
    rows = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:  # stored: fast, pip takes it
        for f in dist.files or []:
            arc = f.as_posix()
            if (
                arc.startswith("..")
                or "__pycache__" in f.parts
                or (f.parent == info.parent and f.name in _SKIPPED)
            ):
                continue  # scripts (pip makes them again), caches, what pip writes itself
            data = Path(str(dist.locate_file(f))).read_bytes()
            zf.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            rows.writerow([arc, f"sha256={digest.decode()}", len(data)])
        arc_record = f"{info.parent.as_posix()}/RECORD"
        rows.writerow([arc_record, "", ""])
        zf.writestr(arc_record, record.getvalue())
    return wheel


def main() -> int:
    """The command line (the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--extras", default="", help="comma-separated: torch, tensorrt")
    parser.add_argument("--python-version", default="3.11", help="the target's Python")
    parser.add_argument("--platform", default="manylinux_2_28_x86_64", help="the target's")
    parser.add_argument("--from-env", action="store_true",
                        help="repack this environment's installed wheels (no network)")  # fmt: skip
    args = parser.parse_args()
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    wheel = build_infergy(args.out)
    if args.from_env:
        for dist in required(wheel, extras):
            repack(dist, args.out)
    else:
        download(args.out, wheel, extras, args.python_version, args.platform)
    count = len(list(args.out.glob("*.whl")))
    extra = f"[{','.join(extras)}]" if extras else ""
    print(f"{args.out}: {count} wheels; install with\n"
          f"  pip install --no-index --find-links {args.out} 'infergy{extra}'")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
