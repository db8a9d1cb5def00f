"""Polling a CAP feed: an Atom or RSS index whose entries link to CAP documents, as public warning feeds publish.

Conditional GET (``If-None-Match`` / ``If-Modified-Since`` from the last answer): an unchanged feed costs a
304. Each entry's document is fetched once (its URL and ``<updated>`` remembered); the intake refuses a replay
anyway. The interval is the source's ``interval_s``; on errors it doubles up to ``max_interval_s`` and is reset
by the next success. The index is parsed with defusedxml like the documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

import aiohttp
import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from duty.publisher import IssuerLink
from upstream.cap import Refusal
from upstream.config import Source
from upstream.intake import Intake
from yujing.log import Limiter
from yujing.runtime import Runtime

log = logging.getLogger("yujing.upstream")
_limiter = Limiter(60.0)
ATOM = "{http://www.w3.org/2005/Atom}"
MAX_INDEX_BYTES = 4 * 1024 * 1024


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


async def poll(rt: Runtime, intake: Intake, link: IssuerLink, source: Source) -> None:
    feed = source.feed
    assert feed is not None
    ctx = ssl.create_default_context(cafile=str(feed.ca_file)) if feed.ca_file else None
    seen: dict[str, str] = {}
    validators: dict[str, str] = {}
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
                        validators = {k: v for k, v in (("If-None-Match", r.headers.get("ETag")),
                                                        ("If-Modified-Since", r.headers.get("Last-Modified"))) if v}
                    else:
                        raise aiohttp.ClientResponseError(r.request_info, r.history, status=r.status)
                if index is not None:
                    for url, updated in entries(index):
                        if seen.get(url) == updated:
                            continue
                        async with http.get(url, ssl=ctx if ctx else True) as d:
                            d.raise_for_status()
                            raw = await d.content.read(intake.config.upstream.max_bytes + 1)
                        seen[url] = updated
                        with contextlib.suppress(Refusal):  # counted, logged, kept by the intake
                            intake.receive(raw, source, "feed")
                            link.poke()
                wait_s = feed.interval_s
            except (aiohttp.ClientError, TimeoutError, SafeET.ParseError, DefusedXmlException) as exc:
                wait_s = min(wait_s * 2, feed.max_interval_s)
                if _limiter.allow(("feed", source.id)):
                    log.warning("CAP feed failed; backing off", extra={"kv": {"source": source.id, "url": feed.url,
                                                                             "error": repr(exc)[:200],
                                                                             "retry_s": wait_s}})
            with contextlib.suppress(TimeoutError):  # real seconds: a feed's interval is the publisher's, not ours
                async with asyncio.timeout(wait_s):
                    await rt.stop.wait()
