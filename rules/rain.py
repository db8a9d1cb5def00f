"""Rainstorm (暴雨) and mountain-torrent (山洪) warnings from rolling rainfall accumulations.

Rain arrives as a tipping-bucket counter (``rain_count_mm``: cumulative, rolls over, resets when a
logger restarts) or as period rainfall (``rain_mm``). Either becomes per-minute bins, from which the
1, 3, 6, 12 and 24 h totals ending at the gauge's latest reading are summed.

- a break in the count (a drop, or a jump faster than ``max_rate_mm_per_h``) is held until the next
  reading: if that one continues the old count, the break was one bad reading (dropped, never the
  baseline); if it continues the new count, a drop is a rollover (``counter_max_mm``, default 6553.6)
  when the wrap is rain the interval could hold, else a logger reset (the new value is the rain since
  the reset, if the interval could hold that much); a jump up is a new count (a swapped logger) and
  adds nothing. No case adds rain the counter did not measure;
- after a silence longer than ``gap_s`` the counter's increase is real rain of unknown timing: it is
  spread evenly over the gap, and the evidence says so;
- an older or duplicate counter reading adds nothing; period readings are kept by timestamp for a
  day, so a duplicate replaces itself and a late one lands in its own minute (one older than every
  window is counted as too old and dropped).

Every reading costs the same however many the day holds: a gauge may report every few seconds (a
tipping bucket in a storm, a backlog replayed after an outage), and this runs in the service's loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

from rules.config import RainThresholds, Resolver, TorrentThresholds
from rules.pack import Assessment, Context, ignored, register
# the sums and their grading (re-exported: tests and tools read them from here)
from rules.rainsums import (ALL, KEEP_MIN, WINDOWS_H, GaugeState, Grader, _minute, add, advance,  # noqa: F401
                            grade_windows, reached_at, recount, totals)
from rules.state import States
from yujing.model import Hazard, Level, Q, Reading


_HOUR = "\x1fbins"  # in a pack_state entity: an hour of a gauge's bins (no sensor id holds a control character)


def _fmt(mm: float) -> str:
    return f"{mm:.1f}"


@register
class RainPack:
    name: ClassVar[str] = "rain"
    quantities: ClassVar[frozenset[str]] = frozenset({Q.RAIN_COUNT_MM.value, Q.RAIN_MM.value})

    def __init__(self, config: Any) -> None:
        self.config = config
        self.gauges: States[GaugeState] = States(GaugeState)
        self.sites = {s.id: s for s in config.sites}
        self.resolver = Resolver(config.rules, self.sites)
        self.rejected: dict[str, int] = {}
        self.by_site: dict[str, list[str]] = {}  # site -> its gauges, sorted (assess picks among them in order)
        self._stored: dict[str, set[int]] = {}  # sensor -> the hours of bins the state file holds a row for
        self._hours: dict[str, dict[int, float]] = {}  # while restoring: bins read from hours' rows
        # site -> (rain, torrent, rain table, torrent table): thresholds are frozen, so their grading tables are
        # built once per site, not once per reading (they were a fifth of the rain pack's time)
        self._grading: dict[str, tuple[RainThresholds, TorrentThresholds, Grader, Grader]] = {}
        # site -> its conditions' keys (rainstorm, torrent or None if the site has none), made once
        self._keys: dict[str, tuple[str, str | None]] = {}

    # --- configuration -------------------------------------------------------------------------
    def thresholds(self, site: str) -> tuple[RainThresholds, TorrentThresholds]:
        g = self.grading(site)
        return g[0], g[1]

    def grading(self, site: str) -> tuple[RainThresholds, TorrentThresholds, Grader, Grader]:
        g = self._grading.get(site)
        if g is None:
            rain, torrent = self.resolver.get("rain", site), self.resolver.get("torrent", site)
            table: dict[Level, dict[int, float]] = {}
            if torrent.prepare:
                table[torrent.prepare_level] = dict(torrent.prepare)
            if torrent.evacuate:
                table[torrent.evacuate_level] = {**table.get(torrent.evacuate_level, {}), **torrent.evacuate}
            g = self._grading[site] = (rain, torrent, Grader(rain.table(), rain.hysteresis_mm),
                                       Grader(table, torrent.hysteresis_mm))
            self._keys[site] = (f"{Hazard.RAINSTORM}:{site}", f"{Hazard.TORRENT}:{site}" if torrent.defined else None)
        return g

    def _gauge_of(self, site: str, sensor: str) -> None:
        gauges = self.by_site.setdefault(site, [])
        if sensor not in gauges:
            gauges.append(sensor)
            gauges.sort()

    def problems(self, config: Any) -> Iterable[str]:
        return ()

    # --- evaluation ----------------------------------------------------------------------------
    def feed(self, r: Reading, ctx: Context) -> list[Assessment]:
        site = r.site
        grading = self._grading.get(site) or self.grading(site)
        st = self.gauges[r.sensor]
        if st.site != site:
            st.site = site
            self._gauge_of(site, r.sensor)
        t = getattr(ctx, "reading_t", None) or r.ts.timestamp()
        if r.quantity == Q.RAIN_COUNT_MM:
            rain = grading[0]
            self._count(st, r.value, t, rain)
        else:
            self._period(st, r.value, t)
        if st.last_t is None or t > st.last_t:
            st.last_t = t
        end = _minute(st.last_t)
        if st.end is not None and end > st.end:  # (usually the count's own minute has moved it already)
            advance(st, end)
        if st.period or st.gaps or st.events:
            self._trim(st)
        return self.assess(r.site, ctx, drill=r.drill)

    def tick(self, now: datetime, ctx: Context) -> list[Assessment]:
        return []  # rain is judged on data only: a silent gauge is an equipment warning, not all clear

    def _reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        ignored(self.name, reason)

    def _count(self, st: GaugeState, value: float, t: float, thr: RainThresholds) -> None:
        """A counter reading. A break in the count (a drop, or a rise no rain can make) is held, not judged:
        the reading after it tells a single bad value (it continues the old count: the break is dropped) from
        a rollover or a logger reset (it continues the new count). Only a continued count ever becomes the
        baseline, and only rain the counter measured is ever added."""
        if st.count_t is None:
            st.count_t = st.last_t  # state saved before count_t was kept
        if st.last_count is None or st.count_t is None:
            st.last_count, st.count_t = value, t
            return
        if t <= max(st.count_t, st.pending[0] if st.pending else st.count_t):
            self._reject("old-or-duplicate")
            return
        last, last_t = st.last_count, st.count_t
        inc = value - last  # (_continues, inline: the usual reading)
        if 0 <= inc <= thr.max_rate_mm_per_h * max((t - last_t) / 3600.0, 1 / 60):
            if st.pending:  # the held break was one bad reading: the count went on as before
                self._reject("glitch")
                st.events.append([st.pending[0], f"计数器单个异常读数 {_fmt(st.pending[1])} mm "
                                                  f"(前后为 {_fmt(last)} → {_fmt(value)} mm), 已剔除"])
                st.pending = []
            self._count_rain(st, value - last, last_t, t, thr)
            st.last_count, st.count_t = value, t
            return
        if st.pending and self._continues(st.pending[1], st.pending[0], value, t, thr):
            p_t, p_value = st.pending
            st.pending = []
            self._confirmed_break(st, last, last_t, p_value, p_t, thr)
            self._count_rain(st, value - p_value, p_t, t, thr)
            st.last_count, st.count_t = value, t
            return
        if st.pending:  # neither count goes on: the held reading was bad; hold this one instead
            self._reject("glitch")
            st.events.append([st.pending[0], f"计数器异常读数 {_fmt(st.pending[1])} mm 未得到后续读数印证, 已剔除"])
        st.pending = [t, value]

    @staticmethod
    def _continues(last: float, last_t: float, value: float, t: float, thr: RainThresholds) -> bool:
        """``value`` at ``t`` goes on from ``last`` at ``last_t`` as rain could make a counter go on."""
        inc = value - last
        return 0 <= inc <= thr.max_rate_mm_per_h * max((t - last_t) / 3600.0, 1 / 60)

    def _confirmed_break(self, st: GaugeState, last: float, last_t: float, value: float, t: float,
                         thr: RainThresholds) -> None:
        """The count broke between ``last`` and ``value`` and the next reading went on from ``value``."""
        limit = thr.max_rate_mm_per_h * max((t - last_t) / 3600.0, 1 / 60)
        wrapped = None if thr.counter_max_mm is None else thr.counter_max_mm - last + value
        if value < last and wrapped is not None and 0 <= wrapped <= limit:
            st.events.append([t, f"计数器回绕 ({_fmt(last)} → {_fmt(value)} mm), 后续读数已印证"])
            self._count_rain(st, wrapped, last_t, t, thr)
        elif value < last and value <= limit:  # the logger restarted from zero: it has counted this since
            st.events.append([t, f"计数器复位 ({_fmt(last)} → {_fmt(value)} mm), 复位后雨量计入"])
            self._count_rain(st, value, last_t, t, thr)
        else:  # a new count no rain explains (a swapped logger, a reset to a preset): counting resumes from it
            self._reject("implausible-jump")
            st.events.append([t, f"计数器由 {_fmt(last)} 变为 {_fmt(value)} mm, 无法由降雨解释, 不计入; 此后按新读数计"])

    def _count_rain(self, st: GaugeState, inc: float, t0: float, t1: float, thr: RainThresholds) -> None:
        if inc <= 0:
            return
        if t1 - t0 > thr.gap_s:
            self._spread(st, inc, t0, t1)
        else:
            self._add(st, _minute(t1), inc)

    def _period(self, st: GaugeState, mm: float, t: float) -> None:
        if st.end is not None and _minute(t) <= st.end - KEEP_MIN:
            self._reject("too-old")  # older than every window: adds nothing, and is not remembered either
            return
        k = repr(t)
        old = st.period.get(k)
        if old is not None:
            self._reject("duplicate")
            self._add(st, _minute(t), mm - old)
        else:
            self._add(st, _minute(t), mm)
        st.period[k] = mm

    def _add(self, st: GaugeState, minute: int, mm: float) -> None:
        if st.end is not None and minute <= st.end - KEEP_MIN:
            return  # older than every window
        add(st, minute, mm)

    def _spread(self, st: GaugeState, mm: float, t0: float, t1: float) -> None:
        m0, m1 = _minute(t0) + 1, _minute(t1)
        m0 = max(m0, m1 - KEEP_MIN)
        n = m1 - m0 + 1
        for m in range(m0, m1 + 1):
            self._add(st, m, mm / n)
        st.gaps.append([t0, t1])

    def _trim(self, st: GaugeState) -> None:
        if st.last_t is None:
            return
        cut = st.last_t - 86400.0
        # period readings are remembered for a day (re-sends). Rebuilt only once the first one kept is an
        # hour past that, so at most once per hour of data: filtering on every reading made a gauge read
        # every 6 s quadratic (10,000 readings: 22 s, in the event loop)
        if st.period and float(next(iter(st.period))) < cut - 3600.0:
            st.period = {k: v for k, v in st.period.items() if float(k) >= cut}
        if st.gaps and st.gaps[0][1] < cut:
            st.gaps = [g for g in st.gaps if g[1] >= cut]
        if st.events and (st.events[0][0] < cut or len(st.events) > 10):
            st.events = [e for e in st.events if e[0] >= cut][-10:]

    def assess(self, site: str, ctx: Context, drill: bool = False) -> list[Assessment]:
        """What the site's rain calls for now, per condition (rainstorm, torrent if the site has one).

        Judged on every reading, so only what grading needs is computed here: the site's gauge (the wettest),
        the windows its tables name, rounded as :func:`totals` rounds them, and a level. A condition that
        calls for nothing and has no lifecycle is not even assessed (the engine would drop it); the values,
        notes and wording of the rest are made when the engine makes a message of them (in this same
        :meth:`Engine.feed`, before the gauge changes again)."""
        rain, torrent, rain_table, torrent_table = self._grading.get(site) or self.grading(site)
        rain_key, torrent_key = self._keys[site]
        gauges = self.by_site.get(site, ())
        if len(gauges) == 1:  # the usual site: one gauge, no need to compare day totals
            sensor = gauges[0]
            st = self.gauges.items[sensor]
            if st.last_t is None:
                return []
        else:
            best: tuple[str, GaugeState, dict[int, float]] | None = None
            for g in gauges:
                gst = self.gauges.items[g]
                if gst.last_t is None:
                    continue
                tot = totals(gst)
                if best is None or tot[24] > best[2][24] or (tot[24] == best[2][24] and tot[1] > best[2][1]):
                    best = (g, gst, tot)
            if best is None:
                return []
            sensor, st, _ = best
        out = []
        key = rain_key
        current = ctx.active(key)
        level = rain_table.level(st, current)
        if level is not None or ctx.tracks(key):
            out.append(self._assessment(key, Hazard.RAINSTORM, site, level, current, rain_table, st, rain, drill,
                                        sensor))
        if torrent_key is not None:
            key = torrent_key
            current = ctx.active(key)
            level = torrent_table.level(st, current)
            if level is not None or ctx.tracks(key):
                out.append(self._assessment(key, Hazard.TORRENT, site, level, current, torrent_table, st, torrent,
                                            drill, sensor))
        return out

    def _assessment(self, key: str, hazard: Hazard, site: str, level: Level | None, current: Level | None,
                    grader: Grader, st: GaugeState, thr: Any, drill: bool,
                    sensor: str) -> Assessment:
        def values() -> dict[str, float]:
            return {f"rain_{h}h_mm": v for h, v in totals(st).items()}

        def explain() -> tuple[str, list[str]]:  # worded only if the engine makes a message of it
            evidence = []
            tot = totals(st)
            if level is not None:
                _, met = grade_windows(tot, grader.table, current, grader.hysteresis)
                for lv, hours, total, mm in sorted(met, key=lambda m: (-m[0].severity, m[1])):
                    if lv == level:
                        evidence.append(f"{hours}小时累计雨量 {_fmt(total)} mm ≥ {self._label(hazard, lv, thr)}阈值 {_fmt(mm)} mm")
            else:
                evidence.append("各时段累计雨量均低于预警阈值: " + ", ".join(f"{h}小时 {_fmt(tot[h])} mm" for h in WINDOWS_H))
            evidence.append(f"雨量计 {sensor}")
            evidence.extend(self._notes(st))
            title = ""
            if level is not None:
                name = self._site_name(site)
                title = (f"{name}{self._label(hazard, level, thr)}预警" if hazard is Hazard.TORRENT
                         else f"{name}暴雨{level.chinese}预警")
            return title, evidence
        return Assessment(key=key, hazard=hazard, site=site, level=level, mechanics=thr.mechanics,
                          rule=hazard.value, t=st.last_t, drill=drill, explain=explain, measure=values)

    @staticmethod
    def _label(hazard: Hazard, level: Level, thr: Any) -> str:
        if hazard is Hazard.TORRENT:
            if level == thr.evacuate_level and thr.evacuate:
                return f"山洪立即转移({level.chinese})"
            return f"山洪准备转移({level.chinese})"
        return level.chinese

    def _notes(self, st: GaugeState) -> list[str]:
        notes = []
        if st.gaps and st.last_t is not None:
            mins = sum(g[1] - g[0] for g in st.gaps) / 60
            notes.append(f"24小时内有约 {mins:.0f} 分钟缺测, 缺测期间雨量按时均摊")
        notes.extend(str(e[1]) for e in st.events[-2:])
        return notes

    def _site_name(self, site: str) -> str:
        return self.sites[site].name if site in self.sites else site

    # --- persistence ---------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        """The changed gauges, each in rows: its scalar state (``<sensor>``), and its bins an hour a row
        (``<sensor>\x1fbins<hour>``), only the hours changed since the last dump; None deletes an hour emptied.

        A gauge's whole day of per-minute bins rewritten at every save had been the save's cost (a day of
        300 gauges read every minute: 432,000 numbers serialised on the loop and written per save)."""
        out: dict[str, Any] = {}
        items = self.gauges.items
        for sensor in self.gauges.dirty:
            st = items.get(sensor)
            if st is None:
                continue
            row = dict(vars(st))
            del row["touched"]
            row["bins"], row["sums"] = {}, {}  # the bins are in their hours' rows; sums are recounted from them
            out[sensor] = row
            stored = self._stored.setdefault(sensor, set())
            hours = stored | {m // 60 for m in st.bins} if ALL in st.touched else st.touched
            bins = st.bins
            for h in hours:
                chunk = {m: bins[m] for m in range(h * 60, h * 60 + 60) if m in bins}
                if chunk:
                    out[f"{sensor}{_HOUR}{h}"] = chunk
                    stored.add(h)
                elif h in stored:
                    out[f"{sensor}{_HOUR}{h}"] = None
                    stored.discard(h)
            st.touched = set()
        self.gauges.dirty.clear()
        return out

    def load(self, entity: str, data: dict[str, Any]) -> None:
        if _HOUR in entity:  # an hour of a gauge's bins: merged once every row is read (restored)
            sensor, _, hour = entity.partition(_HOUR)
            self._stored.setdefault(sensor, set()).add(int(hour))
            self._hours.setdefault(sensor, {}).update({int(m): float(mm) for m, mm in data.items()})
            return
        self.gauges.load(entity, data)
        st = self.gauges.items[entity]
        if st.bins:  # saved before the bins had rows of their own: they move there at the next save
            st.touched.add(ALL)
        recount(st)
        self._gauge_of(st.site, entity)

    def restored(self) -> None:
        """Every saved row is loaded: each gauge's bins from its hours' rows, and its sums from them."""
        for sensor, bins in self._hours.items():
            st = self.gauges.items.get(sensor)
            if st is not None:
                st.bins.update(bins)
                recount(st)
        self._hours = {}
