"""Polling a CAP feed: an Atom or RSS index whose entries link to CAP documents, as public warning feeds publish.

Conditional GET (``If-None-Match`` / ``If-Modified-Since`` from the last answer): an unchanged feed costs a
304. Each entry's document is fetched once (its URL and ``<updated>`` remembered); the intake refuses a replay
anyway. What was fetched, and the index's validators, are kept in :class:`FeedMemory` (SQLite), so a restart
fetches only what is new instead of every document of the feed again; an entry gone from the index is
forgotten, so the memory is as large as the feeds, no larger. The validators are remembered only once every
entry of that index was fetched: a document that failed is asked for again, not hidden behind a 304.
The interval is the source's ``interval_s``; on errors (each counted, ``yujing_upstream_feed_failures_total
{source}``, and logged once a minute) it doubles up to ``max_interval_s`` and is reset by the next success. The index is parsed with defusedxml like the documents.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path

import aiohttp
import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from prometheus_client import Counter

from duty.publisher import IssuerLink
from upstream.cap import Refusal
from upstream.config import Source
from upstream.intake import Intake
from yujing.log import Limiter
from yujing.runtime import Runtime
from yujing.sqlite import Sync, open_db

log = logging.getLogger("yujing.upstream")
_limiter = Limiter(60.0)
FAILED = Counter("yujing_upstream_feed_failures_total", "CAP feed polls that failed: the index or a document "
                 "unreachable or answered with an error, an index that does not parse", ["source"])
ATOM = "{http://www.w3.org/2005/Atom}"
MAX_INDEX_BYTES = 4 * 1024 * 1024


class FeedMemory:
    """Per source: the documents fetched (URL → the entry's ``<updated>``) and the index's validators.

    ``Sync.NORMAL``: a commit lost to a power cut only fetches a document again, which the intake takes as
    the duplicate it is; it never loses a warning.
    """

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS fetched (source TEXT NOT NULL, url TEXT NOT NULL, updated TEXT NOT NULL,
                                        PRIMARY KEY (source, url));
    CREATE TABLE IF NOT EXISTS validators (source TEXT PRIMARY KEY, feed_url TEXT NOT NULL,
                                           etag TEXT NOT NULL, last_modified TEXT NOT NULL);
    """

    def __init__(self, path: Path) -> None:
        self.db = open_db(path, self.SCHEMA, sync=Sync.NORMAL, what="upstream feeds")

    def fetched(self, source: str) -> dict[str, str]:
        return dict(self.db.execute("SELECT url, updated FROM fetched WHERE source = ?", (source,)).fetchall())

    def remember(self, source: str, url: str, updated: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO fetched (source, url, updated) VALUES (?, ?, ?)",
                        (source, url, updated))

    def keep_only(self, source: str, urls: set[str]) -> None:
        """Forget the documents of ``source`` whose entries left its index (the bound on this store)."""
        gone = [(source, u) for u in self.fetched(source) if u not in urls]
        self.db.executemany("DELETE FROM fetched WHERE source = ? AND url = ?", gone)

    def validators(self, source: str, feed_url: str) -> dict[str, str]:
        """The conditional-GET headers of the last index fully taken (none if the source's URL changed)."""
        row = self.db.execute("SELECT etag, last_modified FROM validators WHERE source = ? AND feed_url = ?",
                              (source, feed_url)).fetchone()
        if row is None:
            return {}
        return {k: v for k, v in (("If-None-Match", row[0]), ("If-Modified-Since", row[1])) if v}

    def set_validators(self, source: str, feed_url: str, headers: dict[str, str]) -> None:
        self.db.execute("INSERT OR REPLACE INTO validators (source, feed_url, etag, last_modified)"
                        " VALUES (?, ?, ?, ?)", (source, feed_url, headers.get("If-None-Match", ""),
                                                 headers.get("If-Modified-Since", "")))

    def close(self) -> None:
        self.db.close()


def entries(index: bytes) -> list[tuple[str, str]]:
    """(document URL, updated) of each entry of an Atom feed or RSS channel; the CAP link preferred."""
    root = SafeET.fromstring(index, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    out = []
    if root.tag == f"{ATOM}feed":
        for e in root.findall(f"{ATOM}entry"):
            links = e.findall(f"{ATOM}link")
            cap = [lk for lk in links if "cap" in (lk.get("type") or "")]
            href = (cap or links or [None])[0]
            if href is not None and href.get("href"):
                out.append((href.get("href") or "", (e.findtext(f"{ATOM}updated") or "").strip()))
    else:
        for item in root.iter("item"):
            link = (item.findtext("link") or "").strip()
            if link:
                out.append((link, (item.findtext("pubDate") or "").strip()))
    return out


async def poll(rt: Runtime, intake: Intake, link: IssuerLink, source: Source, memory: FeedMemory) -> None:
    feed = source.feed
    assert feed is not None
    ctx = ssl.create_default_context(cafile=str(feed.ca_file)) if feed.ca_file else None
    seen = memory.fetched(source.id)
    validators = memory.validators(source.id, feed.url)
    wait_s = feed.interval_s
    timeout = aiohttp.ClientTimeout(total=feed.timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not rt.stop.is_set():
            try:
                async with http.get(feed.url, headers=validators, ssl=ctx if ctx else True) as r:
                    if r.status == 304:
                        index = None
                    elif r.status == 200:
                        index = await r.content.read(MAX_INDEX_BYTES)
                        answered = {k: v for k, v in (("If-None-Match", r.headers.get("ETag")),
                                                      ("If-Modified-Since", r.headers.get("Last-Modified"))) if v}
                    else:
                        raise aiohttp.ClientResponseError(r.request_info, r.history, status=r.status)
                if index is not None:
                    listed = entries(index)
                    for url, updated in listed:
                        if seen.get(url) == updated:
                            continue
                        async with http.get(url, ssl=ctx if ctx else True) as d:
                            d.raise_for_status()
                            raw = await d.content.read(intake.config.upstream.max_bytes + 1)
                        with contextlib.suppress(Refusal):  # counted, logged, kept by the intake
                            intake.receive(raw, source, "feed")
                            link.poke()
                        seen[url] = updated
                        memory.remember(source.id, url, updated)
                    urls = {u for u, _ in listed}
                    seen = {u: t for u, t in seen.items() if u in urls}
                    memory.keep_only(source.id, urls)
                    validators = answered
                    memory.set_validators(source.id, feed.url, validators)
                wait_s = feed.interval_s
            except (aiohttp.ClientError, TimeoutError, SafeET.ParseError, DefusedXmlException) as exc:
                FAILED.labels(source.id).inc()  # a feed failing for hours must show, not only in a log line a minute
                wait_s = min(wait_s * 2, feed.max_interval_s)
                if _limiter.allow(("feed", source.id)):
                    log.warning("CAP feed failed; backing off", extra={"kv": {"source": source.id, "url": feed.url,
                                                                             "error": repr(exc)[:200],
                                                                             "retry_s": wait_s}})
            with contextlib.suppress(TimeoutError):  # real seconds: a feed's interval is the publisher's, not ours
                async with asyncio.timeout(wait_s):
                    await rt.stop.wait()
