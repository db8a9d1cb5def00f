"""The floors (ARCHITECTURE.md): the ground floor imports no stage, production imports no simulator or rig.

Read from the source (every ``import`` statement, at any depth, type-only ones included), so an import
hidden in a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("edge", "collector", "rules", "alerts", "duty", "upstream", "console", "simulators", "testing")
# The top floor: it composes the parts, so it may import them all.
TOP = {"yujing/cli.py", "yujing/__main__.py", "yujing/compose.py", "yujing/stack.py"}
# The alerts rig's old name, an alias of testing.alerts while other branches still import it: not production
# code (nothing in production imports it), and to be removed with its last user.
RIG_ALIASES = {"alerts/harness.py"}


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _modules(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def _ground() -> list[Path]:
    return [p for p in _modules("yujing") if str(p.relative_to(ROOT)) not in TOP]


@pytest.mark.parametrize("path", _ground(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_ground_floor_imports_no_stage(path: Path):
    rel = str(path.relative_to(ROOT))
    upward = {m for m in _imports(path) if m.split(".")[0] in STAGES or m == "yujing.compose"}
    assert not upward, f"{rel} imports {sorted(upward)}: the ground floor must not import a stage"


@pytest.mark.parametrize("path", _modules("edge", "collector", "rules", "alerts", "duty", "upstream"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_production_imports_no_simulator_and_no_test_rig(path: Path):
    if str(path.relative_to(ROOT)) in RIG_ALIASES:
        assert _imports(path) <= {"sys", "testing.alerts"}, "an alias, and nothing more"
        return
    bad = {m for m in _imports(path) if m.split(".")[0] in ("simulators", "testing", "tests")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: production never imports a simulator or a rig"


@pytest.mark.parametrize("path", sorted((ROOT / "tests").glob("test_*.py")), ids=lambda p: p.name)
def test_a_test_module_imports_no_other_test_module(path: Path):
    """Shared helpers live in testing/ (or conftest.py): importing a test module runs its module code and
    couples two specifications that should change independently."""
    bad = {m for m in _imports(path) if m.split(".")[0].startswith("test_")}
    assert not bad, f"{path.name} imports {sorted(bad)}: move what it needs to testing/"


def test_the_floor_check_sees_an_import_hidden_in_a_function(tmp_path: Path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from rules.config import RulesConfig\n")
    assert "rules.config" in _imports(probe)
