"""The feed and MQTT routes of CAP intake: an Atom index polled with conditional GET (an unchanged feed is a
304, each document fetched once, a new entry taken on the next poll, errors back off), and documents published
on a topic of the deployment's broker."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timezone

import aiomqtt
from aiohttp import ClientSession, web
from cap_docs import SENDER, document
from conftest import wait_for
from prometheus_client import REGISTRY

from duty.issuer import Issuer
from duty.publisher import IssuerLink
from upstream.config import FeedConfig, Source
from upstream.deadletter import DeadLetters
from upstream.feeds import FeedMemory, entries, poll
from upstream.intake import Intake
from upstream.service import INTAKE, LINK, SOURCES, _mqtt, post
from yujing.clock import Clock
from yujing.compose import load_config
from yujing.runtime import Runtime


def atom(items: list[tuple[str, str]]) -> str:
    body = "".join(f'<entry><id>{u}</id><updated>{t}</updated><title>暴雨预警</title>'
                   f'<link rel="alternate" type="application/cap+xml" href="{u}"/></entry>' for u, t in items)
    return (f'<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<id>urn:test</id><title>CAP</title><updated>2026-01-01T00:00:00Z</updated>{body}</feed>")


def test_a_public_cap_index_feed_gives_each_entrys_document_link():
    from pathlib import Path

    index = (Path(__file__).parent / "data" / "cap" / "nws-atom-index-head.xml").read_bytes()
    got = entries(index)
    assert [u.split("x=")[1].split(".")[1] for u, _ in got] == ["HighWindWarning", "FloodAdvisory"]
    assert got[0][1] == "2018-08-15T14:52:00-08:00"


def test_rss_and_atom_indexes_give_each_entrys_document_link():
    assert entries(atom([("http://x/1.xml", "t1")]).encode()) == [("http://x/1.xml", "t1")]
    rss = b"<rss version='2.0'><channel><item><link>http://x/2.xml</link><pubDate>d</pubDate></item></channel></rss>"
    assert entries(rss) == [("http://x/2.xml", "d")]


@contextlib.asynccontextmanager
async def intake_rig(tmp_path, mosquitto, prefix):
    config = load_config("alerts/example")
    config = config.model_copy(update={"mqtt": config.mqtt.model_copy(update={"port": mosquitto.port,
                                                                              "topic_prefix": prefix})})
    rt = Runtime(config, Clock())
    issuer = Issuer(tmp_path / "issued.sqlite", config, rt.clock.now)
    dead = DeadLetters(tmp_path / "dead.sqlite")
    intake = Intake(config, issuer, dead, rt.clock.now, certificates={})
    link = IssuerLink(rt, issuer, client_id=f"link-{prefix}")
    try:
        yield rt, intake, link
    finally:
        rt.stop.set()
        issuer.close()
        dead.close()


async def test_feed_is_polled_conditionally_each_document_taken_once_and_new_entries_on_the_next_poll(
        tmp_path, mosquitto, prefix):
    t0 = datetime.now(timezone.utc)
    docs = {"/cap/1.xml": document("f-1", sent=t0),
            "/cap/2.xml": document("f-2", sent=t0, msg_type="Update", references=[("f-1", t0)], severity="Extreme",
                                   headline="忠县气象台升级暴雨红色预警")}
    state = {"items": [("/cap/1.xml", "2026-01-01T00:00:00Z")], "etag": '"v1"', "fail": 0}
    log: list[tuple[str, int]] = []

    async def feed(request: web.Request) -> web.Response:
        if state["fail"]:
            state["fail"] -= 1
            log.append(("feed", 500))
            return web.Response(status=500)
        if request.headers.get("If-None-Match") == state["etag"]:
            log.append(("feed", 304))
            return web.Response(status=304)
        log.append(("feed", 200))
        base = f"http://127.0.0.1:{request.url.port}"
        return web.Response(text=atom([(base + u, t) for u, t in state["items"]]), headers={"ETag": state["etag"]},
                            content_type="application/atom+xml")

    async def doc(request: web.Request) -> web.Response:
        log.append((request.path, 200))
        return web.Response(text=docs[request.path], content_type="application/cap+xml")

    app = web.Application()
    app.router.add_get("/feed.xml", feed)
    app.router.add_get("/cap/{n}", doc)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    source = Source(id="zx-met", sender=SENDER, feed=FeedConfig(url=f"http://127.0.0.1:{port}/feed.xml",
                                                                 interval_s=5, max_interval_s=20))
    try:
        async with intake_rig(tmp_path, mosquitto, prefix) as (rt, intake, link):
            memory = FeedMemory(tmp_path / "feeds.sqlite")
            task = asyncio.create_task(poll(rt, intake, link, source, memory))
            await wait_for(lambda: len(intake.issuer.in_force()) == 1, 15, "the first document")
            await wait_for(lambda: ("feed", 304) in log, 15, "a conditional poll of the unchanged feed")
            assert log.count(("/cap/1.xml", 200)) == 1
            state["items"].append(("/cap/2.xml", "2026-01-01T01:00:00Z"))
            state["etag"] = '"v2"'
            state["fail"] = 1  # one error first: the poll backs off (10 s), then takes the new entry
            await wait_for(lambda: ("/cap/2.xml", 200) in log, 40, "the new entry")
            await wait_for(lambda: intake.issuer.in_force()[0].level.value == "red", 5, "the update applied")
            assert log.count(("/cap/1.xml", 200)) == 1 and ("feed", 500) in log
            rt.stop.set()
            await asyncio.wait_for(task, 10)
            memory.close()
    finally:
        await runner.cleanup()


async def test_a_restarted_feed_poller_fetches_only_what_is_new_and_forgets_entries_gone_from_the_index(
        tmp_path, mosquitto, prefix):
    # was: the fetched entries lived in memory only, so every restart fetched every document of the feed again;
    # and the index's ETag was kept before its documents were fetched, so one that failed hid behind 304s
    t0 = datetime.now(timezone.utc)
    docs = {f"/cap/{n}.xml": document(f"r-{n}", sent=t0) for n in (1, 2, 3)}
    state = {"items": ["/cap/1.xml", "/cap/2.xml"], "etag": '"v1"', "fail": {"/cap/2.xml": 1}}
    fetches: list[str] = []  # every request the feed's server answered, in order

    async def feed(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == state["etag"]:
            fetches.append("index 304")
            return web.Response(status=304)
        fetches.append("index")
        base = f"http://127.0.0.1:{request.url.port}"
        return web.Response(text=atom([(base + u, "2026-01-01T00:00:00Z") for u in state["items"]]),
                            headers={"ETag": state["etag"]}, content_type="application/atom+xml")

    async def doc(request: web.Request) -> web.Response:
        if state["fail"].get(request.path):
            state["fail"][request.path] -= 1
            fetches.append(f"{request.path} 500")
            return web.Response(status=500)
        fetches.append(request.path)
        return web.Response(text=docs[request.path], content_type="application/cap+xml")

    app = web.Application()
    app.router.add_get("/feed.xml", feed)
    app.router.add_get("/cap/{n}", doc)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/feed.xml"
    source = Source(id="zx-met", sender=SENDER, feed=FeedConfig(url=url, interval_s=5, max_interval_s=20))
    stored = tmp_path / "var" / "upstream-feeds.sqlite"

    async def run_poller(rt, intake, link, until, what):
        poller_rt = Runtime(rt.config, Clock())  # one process lifetime of the poller
        memory = FeedMemory(stored)
        task = asyncio.create_task(poll(poller_rt, intake, link, source, memory))
        try:
            await wait_for(until, 40, what)
        finally:
            poller_rt.stop.set()
            await asyncio.wait_for(task, 10)
            memory.close()

    def failures() -> float:
        return REGISTRY.get_sample_value("yujing_upstream_feed_failures_total", {"source": "zx-met"}) or 0.0

    failed_before = failures()
    try:
        async with intake_rig(tmp_path, mosquitto, prefix) as (rt, intake, link):
            # first run: document 2 fails once; after the back-off the index is asked for again, not a 304
            await run_poller(rt, intake, link, lambda: "/cap/2.xml" in fetches, "document 2 after its failure")
            assert fetches == ["index", "/cap/1.xml", "/cap/2.xml 500", "index", "/cap/2.xml"]
            assert failures() == failed_before + 1  # the failure counted, not only logged
            # a restart on an unchanged feed: a conditional GET, and no document again
            first = len(fetches)
            await run_poller(rt, intake, link, lambda: "index 304" in fetches[first:], "a conditional poll")
            assert fetches[first:] == ["index 304"]
            # a restart, then the feed moves on: entry 1 leaves the index, 3 joins it; only 3 is fetched
            state["items"], state["etag"] = ["/cap/2.xml", "/cap/3.xml"], '"v2"'
            second = len(fetches)
            await run_poller(rt, intake, link, lambda: "/cap/3.xml" in fetches[second:], "the new entry")
            assert fetches[second:] == ["index", "/cap/3.xml"]
            memory = FeedMemory(stored)
            base = url.removesuffix("/feed.xml")
            assert sorted(memory.fetched("zx-met")) == [base + "/cap/2.xml", base + "/cap/3.xml"]
            memory.close()
    finally:
        await runner.cleanup()


async def test_documents_published_on_the_sources_topic_are_taken(tmp_path, mosquitto, prefix):
    topic = f"{prefix}/upstream/cap/zx-met"
    async with intake_rig(tmp_path, mosquitto, prefix) as (rt, intake, link):
        source = Source(id="zx-met", sender=SENDER, mqtt_topic=topic)
        task = asyncio.create_task(_mqtt(rt, intake, link, source))
        try:
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"pub-{prefix}") as c:
                async def delivered() -> bool:
                    await c.publish(topic, document("m-1").encode(), qos=1)
                    await asyncio.sleep(0.3)  # the subscriber may not be there yet: publish again (a replay is harmless)
                    return len(intake.issuer.in_force()) == 1
                await wait_for(delivered, 15, "the document from the topic")
                await c.publish(topic, b"<not-cap/>", qos=1)
                await wait_for(lambda: intake.deadletters.entries()[:1] and
                               intake.deadletters.entries()[0]["route"] == "mqtt", 10, "the refusal kept")
            assert len(intake.issuer.in_force()) == 1
        finally:
            rt.stop.set()
            await asyncio.wait_for(task, 10)


async def test_a_document_posted_for_no_configured_source_is_refused_counted_and_kept(tmp_path, mosquitto, prefix):
    # was: a 404 and nothing else: a platform given the wrong address lost its warnings without a trace
    def refused() -> float:
        return REGISTRY.get_sample_value("yujing_upstream_refused_total", {"source": "?",
                                                                            "reason": "unknown-source"}) or 0.0

    before = refused()
    async with intake_rig(tmp_path, mosquitto, prefix) as (rt, intake, link):
        app = web.Application()
        app[INTAKE], app[LINK] = intake, link
        app[SOURCES] = {"zx-met": Source(id="zx-met", sender=SENDER)}
        app.router.add_post("/cap/{source}", post)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        raw = document("lost-1").encode()
        try:
            async with ClientSession() as http:
                async with http.post(f"http://127.0.0.1:{runner.addresses[0][1]}/cap/zx-meteo", data=raw) as r:
                    assert r.status == 404
                    assert (await r.json()) == {"error": "unknown-source", "detail": "no source 'zx-meteo'"}
        finally:
            await runner.cleanup()
        [entry] = intake.deadletters.entries()
        assert (entry["source"], entry["route"], entry["reason"], entry["size"]) == ("?", "post", "unknown-source",
                                                                                     len(raw))
        assert "zx-meteo" in entry["detail"]
        assert intake.issuer.in_force() == []
    assert refused() == before + 1
