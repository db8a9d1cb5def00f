"""Warnings from above — the duty office's and upper-level platforms' (CAP) — issued, updated, lifted, expired.

Each is a :class:`~yujing.model.HazardWarning` with a ``source`` (``operator:<user>``, ``cap:<sender>``), kept
here durably (SQLite: every version, and whether the broker has it) and published on the very topics rules
publish theirs on (``{prefix}/warnings/{hazard}/{place}/{tag}``, QoS 1, retained), so alerts routes them down
the same chain with the same 叫应 and escalation, and needs no second path.

    issuer = Issuer(path, config, clock)
    w = issuer.issue(Issue(hazard=Hazard.RAINSTORM, level=Level.ORANGE, area="zhongzhou", source="operator:li"))
    issuer.update(w.key, level=Level.RED); issuer.lift(w.key); issuer.expire(now)
    await issuer.flush(publish)           # every version the broker has not taken yet, in order

A version is written before it is published and marked once the broker took it, so a crash in between
publishes it again on the next start (alerts de-duplicates on key#version), and never loses it.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from yujing.model import Hazard, HazardWarning, Level, WarningState
from yujing.sqlite import Sync, open_db

if TYPE_CHECKING:
    from yujing.compose import Config  # the composed deployment (top floor); a type only

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
  key TEXT NOT NULL, version INTEGER NOT NULL, payload TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0,
  seq INTEGER NOT NULL, PRIMARY KEY (key, version)
);
CREATE INDEX IF NOT EXISTS versions_unpublished ON versions(published, seq);
CREATE TABLE IF NOT EXISTS refs (ref TEXT PRIMARY KEY, key TEXT NOT NULL);  -- e.g. a CAP identifier → its key
CREATE TABLE IF NOT EXISTS requests (  -- the duty office's requests to alerts, kept until the broker has them
  seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL
);
"""


class IssueError(ValueError):
    """A request the issuer refuses: ``code`` (``unknown-site``, ``unknown-area``, ``not-found``, ``lifted``,
    ``bad-request``) and words for the person who asked."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Issue:
    hazard: Hazard
    level: Level
    source: str  # operator:<user> | cap:<sender>
    site: str = ""
    area: str = ""
    title: str = ""
    instruction: str = ""
    headline: str = ""
    sender_name: str = ""
    expires: datetime | None = None
    drill: bool = False
    ref: str = ""  # the issuer's own name for it (a CAP identifier): issuing the same ref twice changes nothing


Publish = Callable[[HazardWarning], Awaitable[None]]


class Issuer:
    def __init__(self, path: Path | str, config: Config, clock_now: Callable[[], datetime]) -> None:
        self.config = config
        self.now = clock_now
        # FULL: an issued warning is a promise, it survives a power cut
        self.db = open_db(Path(path), SCHEMA, sync=Sync.FULL, what="duty issuer", threads=True)
        self._lock = threading.RLock()
        self._depth = 0

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One transaction; nested ones join the outer (see :meth:`batch`)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            self.db.execute("COMMIT")

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Several issues/updates/lifts as one: all of them, or (an exception) none. A CAP document that
        addresses three villages is never half-applied."""
        return self._tx()

    def keys_by_ref_prefix(self, prefix: str) -> list[str]:
        """Warning keys whose refs start with ``prefix`` (every warning one CAP document made)."""
        rows = self.db.execute("SELECT DISTINCT key FROM refs WHERE substr(ref, 1, ?) = ?", (len(prefix), prefix))
        return [r[0] for r in rows]

    def has_ref(self, ref: str) -> bool:
        return self.db.execute("SELECT 1 FROM refs WHERE ref=?", (ref,)).fetchone() is not None

    def add_ref(self, ref: str, key: str) -> None:
        with self._tx():
            self.db.execute("INSERT OR IGNORE INTO refs(ref, key) VALUES (?,?)", (ref, key))

    # ---- reads ------------------------------------------------------------------------------------
    def get(self, key: str) -> HazardWarning | None:
        row = self.db.execute("SELECT payload FROM versions WHERE key=? ORDER BY version DESC LIMIT 1",
                              (key,)).fetchone()
        return HazardWarning.model_validate_json(row[0]) if row else None

    def history(self, key: str) -> list[HazardWarning]:
        rows = self.db.execute("SELECT payload FROM versions WHERE key=? ORDER BY version", (key,)).fetchall()
        return [HazardWarning.model_validate_json(r[0]) for r in rows]

    def by_ref(self, ref: str) -> HazardWarning | None:
        row = self.db.execute("SELECT key FROM refs WHERE ref=?", (ref,)).fetchone()
        return self.get(row[0]) if row else None

    def in_force(self) -> list[HazardWarning]:
        rows = self.db.execute(
            "SELECT v.payload FROM versions v JOIN (SELECT key, MAX(version) AS m FROM versions GROUP BY key) l "
            "ON v.key = l.key AND v.version = l.m ORDER BY v.seq").fetchall()
        out = [HazardWarning.model_validate_json(r[0]) for r in rows]
        return [w for w in out if w.state is not WarningState.LIFTED]

    # ---- writes -----------------------------------------------------------------------------------
    def check_place(self, site: str, area: str) -> tuple[str, str]:
        if site:
            try:
                return site, self.config.site(site).area
            except KeyError:
                raise IssueError("unknown-site", f"no site with id {site!r}") from None
        if not area:
            raise IssueError("bad-request", "give a site or an area")
        try:
            self.config.area(area)
        except KeyError:
            raise IssueError("unknown-area", f"no area with id {area!r}") from None
        return "", area

    def issue(self, req: Issue) -> tuple[HazardWarning, bool]:
        """Issue a new warning (version 1). Returns it and whether it is new (a known ``ref`` returns the
        warning it made, unchanged)."""
        site, area = self.check_place(req.site, req.area)
        with self._tx():
            if req.ref:
                row = self.db.execute("SELECT key FROM refs WHERE ref=?", (req.ref,)).fetchone()
                if row:
                    w = self.get(row[0])
                    assert w is not None
                    return w, False
            now = self.now()
            place = site or f"@{area}"
            tag = ("op-" if req.source.startswith("operator:") else "cap-") + secrets.token_hex(4)
            w = HazardWarning(key=f"{req.hazard.value}:{place}:{tag}", version=1, hazard=req.hazard,
                              level=req.level, state=WarningState.ISSUED, site=site, area=area, title=req.title,
                              issued_at=now, updated_at=now, drill=req.drill, source=req.source,
                              headline=req.headline, instruction=req.instruction, sender_name=req.sender_name,
                              expires=req.expires)
            self._write(w)
            if req.ref:
                self.db.execute("INSERT INTO refs(ref, key) VALUES (?,?)", (req.ref, w.key))
        return w, True

    def update(self, key: str, *, level: Level | None = None, instruction: str | None = None,
               headline: str | None = None, title: str | None = None, expires: datetime | None = None,
               ref: str = "") -> tuple[HazardWarning, bool]:
        """A new version: upgraded or downgraded if the level changes. A known ``ref`` changes nothing."""
        with self._tx():
            if ref and self.db.execute("SELECT 1 FROM refs WHERE ref=?", (ref,)).fetchone():
                w = self.get(key)
                assert w is not None
                return w, False
            prev = self._current(key)
            level = level or prev.level
            state = (WarningState.UPGRADED if level > prev.level else
                     WarningState.DOWNGRADED if level < prev.level else
                     (prev.state if prev.state is not WarningState.LIFTED else WarningState.ISSUED))
            change: dict[str, object] = {"version": prev.version + 1, "level": level, "state": state,
                                         "updated_at": self.now()}
            for name, value in (("instruction", instruction), ("headline", headline), ("title", title),
                                ("expires", expires)):
                if value is not None:
                    change[name] = value
            w = HazardWarning.model_validate({**prev.model_dump(), **change})
            self._write(w)
            if ref:
                self.db.execute("INSERT INTO refs(ref, key) VALUES (?,?)", (ref, key))
        return w, True

    def lift(self, key: str, *, ref: str = "", why: str = "") -> tuple[HazardWarning, bool]:
        """The lift (解除): to everyone the warning reached. Lifting a lifted warning changes nothing."""
        with self._tx():
            if ref and self.db.execute("SELECT 1 FROM refs WHERE ref=?", (ref,)).fetchone():
                w = self.get(key)
                assert w is not None
                return w, False
            prev = self._current(key, lifted_ok=True)
            if prev.state is WarningState.LIFTED:
                return prev, False
            evidence = [why] if why else []
            w = HazardWarning.model_validate({**prev.model_dump(), "version": prev.version + 1,
                                              "state": WarningState.LIFTED, "updated_at": self.now(),
                                              "evidence": evidence})
            self._write(w)
            if ref:
                self.db.execute("INSERT INTO refs(ref, key) VALUES (?,?)", (ref, key))
        return w, True

    def expire(self, now: datetime | None = None) -> list[HazardWarning]:
        """Lift every warning whose ``expires`` has passed."""
        now = now or self.now()
        out = []
        for w in self.in_force():
            if w.expires is not None and w.expires <= now:
                lifted, changed = self.lift(w.key, why="到期自动解除")
                if changed:
                    out.append(lifted)
        return out

    def next_expiry(self) -> datetime | None:
        times = [w.expires for w in self.in_force() if w.expires is not None]
        return min(times) if times else None

    def _current(self, key: str, lifted_ok: bool = False) -> HazardWarning:
        prev = self.get(key)
        if prev is None:
            raise IssueError("not-found", f"no warning {key!r} was issued here")
        if prev.state is WarningState.LIFTED and not lifted_ok:
            raise IssueError("lifted", f"warning {key!r} is lifted already")
        return prev

    def _write(self, w: HazardWarning) -> None:
        seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM versions").fetchone()[0]
        self.db.execute("INSERT INTO versions(key, version, payload, seq) VALUES (?,?,?,?)",
                        (w.key, w.version, w.model_dump_json(), seq))

    # ---- requests to alerts (confirm on behalf, resend): durable until the broker took them ---------
    def request(self, topic: str, payload: bytes) -> None:
        with self._tx():
            self.db.execute("INSERT INTO requests(topic, payload) VALUES (?,?)", (topic, payload))

    def requests(self) -> list[tuple[int, str, bytes]]:
        return [(r[0], r[1], bytes(r[2])) for r in
                self.db.execute("SELECT seq, topic, payload FROM requests ORDER BY seq").fetchall()]

    def request_sent(self, seq: int) -> None:
        with self._tx():
            self.db.execute("DELETE FROM requests WHERE seq=?", (seq,))

    # ---- out --------------------------------------------------------------------------------------
    def unpublished(self) -> list[HazardWarning]:
        rows = self.db.execute("SELECT payload FROM versions WHERE published=0 ORDER BY seq").fetchall()
        return [HazardWarning.model_validate_json(r[0]) for r in rows]

    async def flush(self, publish: Publish) -> int:
        """Publish every version the broker has not taken, oldest first; each marked once it has."""
        n = 0
        for w in self.unpublished():
            await publish(w)
            with self._lock:
                self.db.execute("UPDATE versions SET published=1 WHERE key=? AND version=?", (w.key, w.version))
            n += 1
        return n
