"""The floors (ARCHITECTURE.md): the ground floor imports no stage, production imports no simulator or rig.

Read from the source (every ``import`` statement, at any depth, type-only ones included), so an import
hidden in a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
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


def _kind_simulator(path: Path) -> bool:
    """A device kind's simulator (``edge/devices/<kind>/sim.py``): simulator code that lives beside its
    reader so that a kind is one folder (ARCHITECTURE.md). Only simulators/ and testing/ load it."""
    rel = path.relative_to(ROOT)
    return rel.parts[:2] == ("edge", "devices") and len(rel.parts) == 4 and rel.name == "sim.py"


@pytest.mark.parametrize("path", [p for p in _modules("edge", "collector", "rules", "alerts", "duty", "upstream")
                                  if not _kind_simulator(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_production_imports_no_simulator_and_no_test_rig(path: Path):
    if str(path.relative_to(ROOT)) in RIG_ALIASES:
        assert _imports(path) <= {"sys", "testing.alerts"}, "an alias, and nothing more"
        return
    bad = {m for m in _imports(path) if m.split(".")[0] in ("simulators", "testing", "tests")
           or (m.startswith("edge.devices.") and m.endswith(".sim"))}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: production never imports a simulator or a rig"


def test_a_gateway_running_every_kind_loads_no_simulator():
    """The kinds' registry loads a kind's ``sim`` module only when simulators/ ask for it: a gateway that
    validates every shipped example and builds every reader has loaded no simulator module at all."""
    probe = """
import asyncio, sys, yaml
from edge.config import GatewayConfig
from edge.devices import kinds, make_reader
from edge.devices.reader import ReaderContext
import edge.service
from yujing.clock import Clock

async def main():
    for kind in kinds().values():
        for path in kind.examples():
            gw = GatewayConfig.model_validate({"id": "g", "devices": yaml.safe_load(path.read_text())["devices"]})
            for d in gw.devices:
                make_reader(d, ReaderContext(Clock()))

asyncio.run(main())
print(sorted(m for m in sys.modules if m.split(".")[0] in ("simulators", "testing") or m.endswith(".sim")))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", f"a gateway loaded {run.stdout.strip()}"


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
