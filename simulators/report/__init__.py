"""The drill report: ``report.json`` (machine-readable timeline), ``report.html`` and ``charts/*.png``.

    paths = write_report(timeline, expect, "reports/rainstorm")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simulators.report.charts import plot_all
from simulators.report.html import render
from simulators.report.timeline import Event, Kind, Recipient, Timeline, check_expectations, figures

__all__ = ["Event", "Kind", "Recipient", "Timeline", "check_expectations", "figures", "write_report"]


def write_report(tl: Timeline, expect: Any, out_dir: str | Path) -> dict[str, Any]:
    """Write the report files; returns the JSON document (with ``expectations`` and ``passed``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    expectations = check_expectations(tl, expect)
    doc = tl.to_json()
    doc["expectations"] = expectations
    doc["passed"] = all(e["met"] for e in expectations)
    charts = plot_all(tl, out)
    doc["charts"] = charts
    (out / "report.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    (out / "report.html").write_text(render(tl, doc["figures"], expectations, charts), encoding="utf-8")
    return doc
