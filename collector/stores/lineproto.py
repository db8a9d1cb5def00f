"""InfluxDB line protocol for readings, shared by the v1 and v2 writers (and VictoriaMetrics).

    measurement = quantity; tags site, sensor, gateway, quality, drill; fields value, id, unit; time ns.

A non-finite value (quality not ok) has no ``value`` field: InfluxDB cannot store NaN.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from collector.rows import Row
from yujing.model import Quality, Reading

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEAS = str.maketrans({",": r"\,", " ": r"\ "})


def ts_ns(ts: datetime) -> int:
    """Nanoseconds since the epoch, exactly (no float on the way)."""
    d = ts - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000


def _str_field(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# The series part of a line (measurement, tags) and the unit field repeat for every reading of a sensor:
# built once per series and kept (bounded) they make a line ~3x cheaper to write.
_SERIES: dict[tuple, tuple[str, str, str]] = {}
_SERIES_MAX = 100_000


def _series(key: tuple) -> tuple[str, str, str]:
    """(start of a line with a value, of one without, the unit field and the space before the time)."""
    quantity, site, sensor, gateway, quality, drill, unit = key
    tags = f"{quantity.translate(_MEAS)},site={site.translate(_TAG)},sensor={sensor.translate(_TAG)}"
    if gateway:
        tags += f",gateway={gateway.translate(_TAG)}"
    tags += f",quality={quality},drill={'true' if drill else 'false'}"  # a Quality or its string
    if len(_SERIES) >= _SERIES_MAX:
        _SERIES.clear()
    got = _SERIES[key] = (f"{tags} value=", f'{tags} id="', f",unit={_str_field(unit)} ")
    return got


def line(r: Reading | Row) -> str:
    return lines([r])


def lines(batch: list[Reading] | list[Row]) -> str:
    """One line per reading (rows or readings: the same attributes, see :mod:`collector.rows`), newline-separated."""
    out = []
    series, epoch, isfinite = _SERIES, _EPOCH, math.isfinite
    for r in batch:
        key = (r.quantity, r.site, r.sensor, r.gateway, r.quality, r.drill, r.unit)
        valued, bare, unit = series.get(key) or _series(key)
        rid, v, ts = r.id, r.value, r.ts
        if '"' in rid or "\\" in rid:
            rid = rid.replace("\\", "\\\\").replace('"', '\\"')
        d = ts - epoch  # ts_ns(ts), inline
        ns = (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000
        if isfinite(v):
            out.append(f'{valued}{v!r},id="{rid}"{unit}{ns}')
        else:
            out.append(f'{bare}{rid}"{unit}{ns}')
    return "\n".join(out)


def reading_from_row(measurement: str, row: dict) -> Reading:
    """A reading back from a query row (columns time/ts ns, the tags, value, id, unit)."""
    value = row.get("value")
    ns = int(row["time"])
    return Reading(
        id=row["id"], site=row["site"], sensor=row["sensor"], quantity=measurement,
        value=float("nan") if value is None else float(value), unit=row.get("unit") or "",
        ts=datetime.fromtimestamp(ns // 1_000_000_000, timezone.utc).replace(microsecond=(ns % 1_000_000_000) // 1000),
        quality=Quality(row.get("quality") or "ok"), gateway=row.get("gateway") or "",
        drill=row.get("drill") == "true",
    )
