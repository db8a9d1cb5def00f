"""A gateway's edge agent runs without msgspec: there is no wheel for 32-bit ARM (armhf gateways) and a gateway
has no compiler, so pyproject.toml leaves msgspec out there; only the collector (collector/rows.py) imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BLOCKED = """
import sys
class NoMsgspec:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "msgspec":
            raise ImportError("msgspec is not installed on this gateway")
sys.meta_path.insert(0, NoMsgspec())
import edge.service, edge.__main__, yujing.cli
print("edge imports without msgspec")
try:
    import collector.rows
except ImportError as e:
    print("collector needs it:", e)
"""


def test_the_edge_agent_imports_without_msgspec_and_the_collector_says_it_needs_it():
    out = subprocess.run([sys.executable, "-c", BLOCKED], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["edge imports without msgspec",
                                       "collector needs it: msgspec is not installed on this gateway"]
