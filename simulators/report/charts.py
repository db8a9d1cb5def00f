"""One PNG per monitored site of a drill: its series against its thresholds, warning levels shaded.

Labels are ASCII (site ids, English) so the charts render without CJK fonts on a bare server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from simulators.report.timeline import Kind, Timeline  # noqa: E402
from yujing.rainfall import increments, rolling  # noqa: E402

SHADE = {"blue": "#3b82f6", "yellow": "#facc15", "orange": "#f97316", "red": "#dc2626"}
CMA_RAIN = [(12, 50.0, "blue"), (6, 50.0, "yellow"), (3, 50.0, "orange"), (3, 100.0, "red")]


def level_spans(tl: Timeline, site: str) -> list[tuple[float, float, str]]:
    """(start, end, level) while a warning at ``site`` stood; the highest level where several overlap."""
    by_key: dict[str, list[tuple[float, str | None]]] = {}
    for e in tl.warnings():
        if e.data.get("site") == site:
            lvl = None if e.data.get("state") == "lifted" else e.data.get("level")
            by_key.setdefault(e.data.get("key", ""), []).append((e.t, lvl))
    spans = []
    end = max(tl.ended_t, max((e.t for e in tl.events), default=0.0))
    for changes in by_key.values():
        for (t, lvl), nxt in zip(changes, changes[1:] + [(end, None)]):
            if lvl:
                spans.append((t, nxt[0], lvl))
    return spans


def _hours(pts: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    return [t / 3600 for t, _ in pts], [v for _, v in pts]


def _thresholds(site: dict[str, Any]) -> dict[str, float]:
    """Every number under the site's thresholds whose name says metres: reservoir and river levels."""
    out: dict[str, float] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        elif isinstance(node, (int, float)) and prefix.rstrip(".").endswith("_m"):
            out[prefix.rstrip(".").rsplit(".", 1)[-1]] = float(node)

    walk("", site.get("thresholds") or {})
    return out


def plot_site(tl: Timeline, site_id: str, path: Path) -> bool:
    site = tl.sites.get(site_id, {})
    sensors = [s for s, sid in tl.sensor_site.items() if sid == site_id]
    if not sensors:
        return False
    kind = site.get("kind", "")
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    for t0, t1, lvl in level_spans(tl, site_id):
        ax.axvspan(t0 / 3600, t1 / 3600, color=SHADE.get(lvl, "#999"), alpha=0.18, lw=0)
    drew = False
    for sensor in sensors:
        for q, pts in tl.series[sensor].items():
            if kind == "rain" and q in ("rain_count_mm", "rain_mm"):
                incs = increments(pts, q)
                if not incs:
                    continue
                for hours, style in ((3, ":"), (6, "--"), (12, "-")):
                    xs, ys = _hours(rolling(incs, hours * 3600))
                    ax.plot(xs, ys, style, color="#1f2937", lw=1.4, label=f"{sensor} {hours} h rain (mm)")
                for hours, mm, lvl in CMA_RAIN:
                    ax.axhline(mm, color=SHADE[lvl], lw=1, ls="-" if lvl in ("blue", "red") else "--")
                ax.set_ylabel("rolling rain (mm)")
                drew = True
                continue
            xs, ys = _hours([(t, v) for t, v in pts if v == v])
            if not xs:
                continue
            ax.plot(xs, ys, lw=1.5, label=f"{sensor} {q}", marker="." if len(xs) < 60 else None)
            drew = True
    if kind in ("reservoir", "river"):
        for name, v in sorted(_thresholds(site).items(), key=lambda kv: kv[1]):
            ax.axhline(v, color="#6b7280", lw=0.8, ls="--")
            ax.annotate(name, (0, v), xycoords=("axes fraction", "data"), fontsize=7, color="#374151",
                        va="bottom")
        ax.set_ylabel("water level (m)")
    elif kind == "landslide":
        ax.set_ylabel("displacement (mm)")
    elif kind == "forest":
        ax.set_ylabel("detection confidence")
        ax.set_ylim(0, 1.05)
    ax.set_xlabel("hours since drill start")
    ax.set_title(f"{site_id} ({kind})", fontsize=10)
    ax.grid(alpha=0.3)
    if drew:
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return drew


def plot_all(tl: Timeline, out_dir: Path) -> dict[str, str]:
    """Charts for every site with a series and either a warning or a scripted role; site id → relative path."""
    warned = {e.data.get("site") for e in tl.events if e.kind in (Kind.WARNING,)}
    wanted = [s for s in tl.sites if s in warned or tl.sites[s].get("scripted")]
    out = {}
    for site_id in sorted(wanted):
        rel = f"charts/{site_id}.png"
        if plot_site(tl, site_id, out_dir / rel):
            out[site_id] = rel
    return out
