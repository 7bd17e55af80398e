"""The house rules on infergy's own import graph, and the rules' checker on small fixture trees.

If the first test fails, it lists each offending import as ``path:line: what``: move the
shared piece down a layer (core/, formats/), inject the collaborator, or make the name public.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.architecture.imports import (
    LAYERS,
    all_violations,
    import_loops,
    layer_violations,
    private_violations,
    read_graph,
    write_tree,
)

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "infergy"


def test_infergy_keeps_the_layer_private_name_and_loop_rules():
    graph = read_graph(PACKAGE)
    assert len(graph.modules) > 100 and len(graph.edges) > 500  # the checker saw the tree
    problems = all_violations(graph)
    assert problems == [], "house rules broken:\n" + "\n".join(problems)


def test_every_layer_is_a_folder_whose_docstring_says_its_purpose():
    for layer in sorted(set(LAYERS) - {"", "errors"}):
        init = PACKAGE / layer / "__init__.py"
        assert init.is_file(), f"infergy/{layer}/ is missing (ARCHITECTURE.md names it)"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and doc.split("\n")[0].strip(), f"infergy/{layer}/__init__.py: no purpose line"


def test_no_module_is_left_at_the_package_root_beside_the_layers():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "errors.py"], loose


# -- the checker itself, on fixture trees that break each rule -------------------------------


def tree(tmp_path: Path, *files: tuple[str, str]) -> Path:
    return write_tree(tmp_path / "infergy", files)


def test_a_lower_layer_importing_a_higher_one_is_reported(tmp_path):
    root = tree(
        tmp_path,
        ("core/trace.py", "X = 1\n"),
        ("daemon/session.py", "from infergy.core.trace import X\n"),  # allowed: down
        ("core/energy.py", "from infergy.daemon.session import X\n"),  # forbidden: up
    )
    problems = layer_violations(read_graph(root))
    assert len(problems) == 1, problems
    assert "infergy.core.energy imports infergy.daemon.session" in problems[0]
    assert "a higher layer: core -> daemon" in problems[0]
    assert problems[0].endswith("(a higher layer: core -> daemon)")
    assert "energy.py:1:" in problems[0]


def test_a_sibling_layer_import_is_reported_even_inside_a_function(tmp_path):
    root = tree(
        tmp_path,
        ("meters/base.py", "class SessionClock: ...\n"),
        ("runners/workload.py", "def f():\n    from infergy.meters.base import SessionClock\n"),
    )
    problems = layer_violations(read_graph(root))
    assert problems and "a sibling layer: runners -> meters" in problems[0], problems


def test_entry_points_may_import_the_command_line(tmp_path):
    root = tree(
        tmp_path,
        ("cli/app.py", "def main(): ...\n"),
        ("ptd_bridge/__main__.py", "from infergy.cli.app import main\n"),
        ("__main__.py", "from infergy.cli.app import main\n"),
    )
    assert all_violations(read_graph(root)) == []


_LAZY_ROOT = (
    "from typing import TYPE_CHECKING\n"
    "if TYPE_CHECKING:\n"
    "    from infergy.daemon.measurement import Measurement\n"
    "def __getattr__(name):\n"
    "    from infergy.daemon import measurement\n"
    "    return getattr(measurement, name)\n"
)


def test_the_package_roots_lazy_public_re_exports_are_an_entry_point(tmp_path):
    root = tree(
        tmp_path,
        ("__init__.py", "__version__ = '1'\n" + _LAZY_ROOT),
        ("errors.py", "X = 1\n"),
        # the re-exported module imports the root back: not a loop (the root imports it lazily)
        ("daemon/measurement.py", "from infergy import __version__\nclass Measurement: ...\n"),
    )
    assert all_violations(read_graph(root)) == []


def test_an_eager_import_of_a_higher_layer_at_the_root_is_still_reported(tmp_path):
    root = tree(
        tmp_path,
        ("__init__.py", "from infergy.daemon.measurement import Measurement\n"),
        ("daemon/measurement.py", "from infergy import errors\nclass Measurement: ...\n"),
        ("errors.py", "X = 1\n"),
    )
    problems = layer_violations(read_graph(root))
    assert len(problems) == 1 and "infergy imports infergy.daemon.measurement" in problems[0]


def test_lazy_re_exports_must_be_public_and_only_the_root_may_have_them(tmp_path):
    root = tree(
        tmp_path,
        ("__init__.py", "def __getattr__(name):\n    from infergy.daemon.m import _secret\n"),
        ("daemon/m.py", "_secret = 1\nclass Public: ...\n"),
        # the same pattern in a layer package is an ordinary (upward) import
        ("core/__init__.py", "def __getattr__(name):\n    from infergy.daemon.m import Public\n"),
    )
    graph = read_graph(root)
    private = private_violations(graph)
    assert private == [f"{root}/__init__.py:2: infergy uses _secret of infergy.daemon.m"], private
    layers = layer_violations(graph)
    assert len(layers) == 1 and "infergy.core imports infergy.daemon.m" in layers[0], layers


def test_a_top_level_part_without_a_layer_is_reported(tmp_path):
    root = tree(tmp_path, ("helpers.py", "X = 1\n"))
    problems = layer_violations(read_graph(root))
    assert problems == ["infergy.helpers has no layer: add it to LAYERS and docs/architecture.md"]


def test_private_names_and_modules_across_layers_are_reported(tmp_path):
    root = tree(
        tmp_path,
        ("formats/_common.py", "def read(): ...\n"),
        ("formats/ptd_protocol.py", "def _go(): ...\nfrom infergy.formats._common import read\n"),
        ("meters/ptd.py", "from infergy.formats.ptd_protocol import _go\n"),
        ("meters/ptd_passes.py", "from infergy.formats import ptd_protocol as p\np._go()\n"),
        ("ptd_bridge/profile.py", "from infergy.formats._common import read\n"),
    )
    problems = private_violations(read_graph(root))
    assert len(problems) == 3, problems  # formats' own use of _common is fine
    joined = "\n".join(problems)
    assert "infergy.meters.ptd uses _go of infergy.formats.ptd_protocol" in joined
    assert "infergy.meters.ptd_passes uses _go of infergy.formats.ptd_protocol" in joined
    assert "infergy.ptd_bridge.profile uses a private module of infergy.formats._common" in joined


def test_import_loops_are_reported_also_through_type_checking_imports(tmp_path):
    root = tree(
        tmp_path,
        ("core/analysis.py", "from infergy.core import figures\n"),
        (
            "core/figures.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from infergy.core.analysis import Workload\n",
        ),
        ("core/trace.py", "from infergy.core import energy\n"),
        ("core/energy.py", "X = 1\n"),
    )
    graph = read_graph(root)
    assert import_loops(graph) == [["infergy.core.analysis", "infergy.core.figures"]]
    assert all_violations(graph) == ["import loop: infergy.core.analysis -> infergy.core.figures"]


@pytest.mark.parametrize("argv", [["--version"], ["analyze", "--help"]])
def test_python_dash_m_infergy_is_the_console_script(argv):
    done = subprocess.run(
        [sys.executable, "-m", "infergy", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert ("infergy 0." in done.stdout) if argv == ["--version"] else ("--power" in done.stdout)


def _layout_block(readme: str) -> str:
    section = readme.split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_the_readme_layout_and_docs_architecture_name_every_layer_and_only_real_files():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = _layout_block(readme)
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for layer in sorted(set(LAYERS) - {"", "errors"}):
        assert f"infergy/{layer}/" in layout, f"README's layout does not show infergy/{layer}/"
        assert f"`{layer}/`" in doc, f"docs/architecture.md does not describe {layer}/"
    listed = {line.split()[0] for line in layout.splitlines() if line.startswith("infergy/")}
    for folder in sorted(listed):
        assert (ROOT / folder).exists(), f"README's layout names {folder}, which does not exist"
    names = {p.name for p in PACKAGE.rglob("*.py")}
    for ref in sorted(set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", doc))):
        nested = (PACKAGE / ref).exists() or (ROOT / ref).exists()
        ok = nested if "/" in ref else ref in names
        assert ok, f"docs/architecture.md names {ref}, which is not in the tree"
