"""The alerts service: warnings from MQTT in, SMS and calls out, confirmations and escalations, CAP.

    await serve(rt)                                   # until rt.stop
    await serve(rt, drill_recipients=[Person(...)])   # a drill that brings its own list

It subscribes ``{prefix}/warnings/#`` (QoS 1) on a persistent session (:mod:`yujing.bus`: a fixed client
id, MQTT 5 session expiry) and acknowledges each message only after the warning is in the notification log,
so a crash never loses one. If the log cannot take it (SQLite error: disk full, locked; or any other error
before it is recorded), the message stays unacknowledged and the service reconnects (backing off) so that the
broker sends it again. Once it is in the log, a stage that fails (route, render, the log refusing its
notifications) no longer concerns the broker: the warning is retried from the log with backoff, visible as
failed, and the county duty office is alarmed (alerts/retry.py).

The webhook server takes Twilio's signed callbacks and serves CAP documents, which are also published on
``{prefix}/cap/{hazard}/{site}`` (QoS 1, retained; one thread per group, see below). Each CAP document is kept
in the notification log before the warning counts as routed, and marked once the broker took it; so after a
crash the next Update still references the message before it, and a document the broker never got is
published when the broker is next reached. Timers run on ``rt.clock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from alerts.aliyun_hooks import AliyunHooks
from alerts.cap import CapBook, build, identifier, thread
from alerts.channels import CallbackUrls, senders
from alerts.channels.aliyun import aliyun_provider
from alerts.commands import Command, SilenceList, apply
from alerts.config import AlertsConfig, AliyunConfig, ProviderName
from alerts.directory import Directory
from alerts.escalate import Escalator
from alerts.fanout import Dispatcher, Outcome, run_until
from alerts.nflog import NotificationLog, WarningStatus
from alerts.pipeline import Pipeline, Publish
from alerts.provider import twilio_provider
from alerts.running import Running
from alerts.webhooks import Webhooks
from yujing import metrics, topics, wire
from yujing.bus import Session, Subscription, reconnecting
from yujing.errors import PayloadError
from yujing.config.people import Person
from yujing.log import Limiter
from yujing.model import HazardWarning
from yujing.publish import Outgoing, drain
from yujing.runtime import Runtime, tune_gc

log = logging.getLogger("yujing.alerts")
REJECTED = Counter("yujing_alerts_rejected_warnings_total", "Warning messages that could not be read", ["reason"])
UNLOGGED = Counter("yujing_alerts_unlogged_warnings_total",
                   "Warnings the notification log could not take (left unacknowledged, received again)")
TIMER_FAILURES = Counter("yujing_alerts_timer_failures_total",
                         "Escalation/group timer passes that failed (the step stays due and is retried)")
SUBSCRIBED = Gauge("yujing_alerts_mqtt_subscribed", "1 while subscribed to the warnings topics")
_limiter = Limiter(60.0)
CHECKPOINT_S = 2.0  # the WAL holds at most what the log writes in this time (plus a checkpoint's own)


async def serve(rt: Runtime, *, drill_recipients: list[Person] | None = None, auth_token: str | None = None,
                ready: asyncio.Event | None = None, on_running: Callable[[Running], None] | None = None) -> None:
    """Run until ``rt.stop``; ``ready`` is set once subscribed. ``on_running`` is handed what a caller (a test,
    a drill) may look at, once the service is wired (alerts/running.py)."""
    cfg = rt.config.alerts
    directory = Directory.load(rt.config)
    gc.collect()
    tune_gc()  # the chain (thousands of households) never changes: keep it out of every later collection
    token = auth_token if auth_token is not None else _auth_token(cfg.twilio)
    caps = CapBook()
    with contextlib.ExitStack() as files:
        real = files.enter_context(NotificationLog(rt.config.path(cfg.log, "alerts.sqlite"), drill=False))
        drill = files.enter_context(NotificationLog(rt.config.path(cfg.drill.log, "alerts-drill.sqlite"), drill=True))
        pipelines: dict[str, Pipeline] = {}
        webhooks = Webhooks(cfg, token, pipelines, caps)
        aliyun_hooks = None
        if cfg.aliyun is not None:
            aliyun_hooks = AliyunHooks(cfg, pipelines, _push_token(cfg.aliyun))
            webhooks.extra.append(aliyun_hooks.add_to)
        publisher = _CapPublisher(rt, caps, directory)

        def health() -> dict[str, object]:
            subscribed = publisher.sub is not None
            return {"ok": subscribed, "connected": subscribed, "webhook": webhooks.base_url}

        async with (metrics.serving(cfg.metrics_host, cfg.metrics_port, health), webhooks.serving(),
                    _providers(cfg, token) as providers):
            provider = providers.get("twilio")
            urls = CallbackUrls(webhooks.base_url)

            async def on_done(nflog: NotificationLog, outcome: Outcome) -> None:
                await pipelines["drill" if nflog.drill else "real"].receipts.on_outcome(outcome)

            limits = Escalator(cfg, directory)  # the first voice provider's per-callee limits

            def gate(nflog: NotificationLog, n: Any) -> float:
                return limits.call_wait_s(nflog, n.phone, rt.clock.now()) if n.channel == "voice" else 0.0

            dispatcher = Dispatcher(senders(providers, urls, cfg), {c.value: r for c, r in cfg.rates.items()},
                                    rt.clock, on_done, cfg.twilio.outage_retry_s, cfg.twilio.outage_retries,
                                    gate=gate if limits.callee_limits else None)
            common = {"cfg": cfg, "directory": directory, "dispatcher": dispatcher, "clock": rt.clock}
            pipelines["real"] = Pipeline(nflog=real, drill=False, publish=publisher.to(real), **common)
            pipelines["drill"] = Pipeline(nflog=drill, drill=True, publish=publisher.to(drill),
                                          drill_people=list(cfg.drill.recipients) + list(drill_recipients or []),
                                          **common)
            if on_running is not None:
                on_running(Running(pipelines, caps, webhooks.base_url, webhooks.port,
                                   aliyun_hooks.urls(webhooks.base_url) if aliyun_hooks else {}, dispatcher))
            if aliyun_hooks is not None:
                log.info("Alibaba Cloud push URLs (set them in its console)",
                         extra={"kv": {k: v.replace(aliyun_hooks.token, "…") for k, v in
                                       aliyun_hooks.urls(webhooks.base_url).items()}})
            if provider is not None and cfg.twilio.configure_number:
                await _configure_number(provider, urls)
            for p in pipelines.values():
                publisher.restore(p.nflog, p.text)
                await p.restore()
            wake = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(run_until(dispatcher, rt.stop))
                tg.create_task(_timers(rt, list(pipelines.values()), wake))
                tg.create_task(_checkpoints(rt, [real, drill]))
                tg.create_task(_subscribe(rt, pipelines, publisher, wake, ready))
                await rt.stop.wait()
                wake.set()


@contextlib.asynccontextmanager
async def _providers(cfg: AlertsConfig, token: str) -> AsyncIterator[dict[str, Any]]:
    """The configured providers (``alerts.providers``), each an open client, by name."""
    async with contextlib.AsyncExitStack() as stack:
        out: dict[str, Any] = {}
        if ProviderName.TWILIO in cfg.providers:
            out["twilio"] = await stack.enter_async_context(twilio_provider(cfg.twilio, token))
        if ProviderName.ALIYUN in cfg.providers and cfg.aliyun is not None:
            out["aliyun"] = await stack.enter_async_context(aliyun_provider(cfg.aliyun))
        yield out


def _push_token(aliyun: AliyunConfig) -> str:
    try:
        return aliyun.push_token.get() if aliyun.push_token else ""
    except LookupError as exc:
        log.error("no Alibaba Cloud push token: its receipts and replies will be refused",
                  extra={"kv": {"reason": str(exc)}})
        return ""


def _auth_token(twilio: Any) -> str:
    """The account's auth token. (The demo's stand-in lends its own through ``serve(auth_token=...)``, from the
    ``yujing`` command: production never knows a simulator's secrets.)"""
    try:
        if twilio.auth_token is None:
            raise LookupError("not configured")
        return twilio.auth_token.get()
    except LookupError as exc:  # Twilio will refuse us (401, counted); webhooks will refuse everyone
        log.error("no Twilio auth token: nothing can be sent or confirmed", extra={"kv": {"reason": str(exc)}})
        return ""


async def _configure_number(provider: Any, urls: CallbackUrls) -> None:
    try:
        ok = await provider.set_sms_webhook(urls.sms())
    except Exception as exc:  # noqa: BLE001  not fatal: the webhook may be configured by hand in the Twilio console
        log.warning("could not set the number's inbound SMS webhook", extra={"kv": {"error": repr(exc)[:200]}})
        return
    if not ok:
        log.warning("the from_number is not a number of this account; set its SMS webhook by hand",
                    extra={"kv": {"url": urls.sms()}})


async def _timers(rt: Runtime, pipelines: list[Pipeline], wake: asyncio.Event) -> None:
    """Held groups and escalation steps, on the scenario clock; woken early when something new is due."""
    while not rt.stop.is_set():
        failed = False
        for p in pipelines:
            try:
                await p.tick()
            except Exception:  # e.g. the log's disk: the step stays due (one transaction) and is retried
                failed = True
                TIMER_FAILURES.inc()
                if _limiter.allow("timer"):
                    log.exception("alerts timer step failed; retrying every second")
        dues = [d for d in (p.next_due() for p in pipelines) if d is not None]
        wait_s = max(0.0, (min(dues) - rt.clock.now()).total_seconds()) if dues else 3600.0
        real_s = max(rt.clock.real_seconds(wait_s) + 0.005, 1.0 if failed else 0.0)
        wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(real_s):
                await wake.wait()


async def _checkpoints(rt: Runtime, logs: list[NotificationLog]) -> None:
    """The logs' WAL into their files every CHECKPOINT_S (real time), in threads: the fsyncs stay off the loop."""
    while not rt.stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CHECKPOINT_S):
                await rt.stop.wait()
        for nflog in logs:
            try:
                await nflog.checkpoint()
            except sqlite3.Error:  # the disk: the WAL keeps growing (nothing lost) and the next pass tries again
                if _limiter.allow("checkpoint"):
                    log.exception("checkpointing the notification log failed")


class _CapPublisher:
    """CAP documents: built once, kept in the warning's notification log (real or drill: each references
    its own kind), served by the webhooks' CapBook and published on MQTT once the broker is there: the logs'
    unpublished documents are a yujing.publish.Queue, drained on the live connection (``changed``,
    ``pending``, ``delivered``), oldest first, each marked published once its PUBACK is in."""

    def __init__(self, rt: Runtime, caps: CapBook, directory: Directory) -> None:
        self.rt = rt
        self.caps = caps
        self.directory = directory
        self.sub: Subscription | None = None  # the live connection, if any
        self.logs: list[NotificationLog] = []
        self.changed = asyncio.Event()  # a document was kept: publish it
        self._order: dict[tuple[int, str], int] = {}  # (log, identifier) -> its place in the queue, first seen
        self._at: dict[int, tuple[int, NotificationLog, str]] = {}
        self._last = 0

    def to(self, nflog: NotificationLog) -> Publish:
        """The pipeline's ``publish`` for warnings of ``nflog``."""
        self.logs.append(nflog)

        async def publish(w: HazardWarning, text: str) -> None:
            self.keep(nflog, w, text)
            self.changed.set()
        return publish

    def keep(self, nflog: NotificationLog, w: HazardWarning, text: str, published: bool = False) -> None:
        """Build and record ``w``'s document unless it already is (a warning re-decided after a crash)."""
        ident = identifier(w)
        xml = nflog.caps.get(ident)
        if xml is None:
            before = nflog.caps.last_warning(w.hazard.value, thread(w))
            site = self.directory.site(w.site) if w.site else None
            area = self.directory.area(w.area or (site.area if site else ""))
            desc = "".join(a.name for a in reversed(self.rt.config.lineage(area.id))) if area else w.site
            cap = self.rt.config.alerts.cap
            xml = build(w, text, desc + (site.name if site else ""), nflog.warnings.get(before) if before else None,
                        sender=cap.sender, sender_name=cap.sender_name or self.rt.config.deployment.name,
                        lat=site.lat if site else None, lon=site.lon if site else None,
                        area_code=area.code if area else None)
            nflog.caps.keep(w.id, w.hazard.value, thread(w), ident, xml, published)
        self.caps.add(w.hazard.value, thread(w), ident, xml)

    def restore(self, nflog: NotificationLog, text: Callable[[HazardWarning], str]) -> None:
        """At start: the CapBook from the log (a log from before CAP documents were kept gets them now)."""
        if not nflog.caps.all():
            for w in nflog.warnings.in_state(WarningStatus.ROUTED):
                self.keep(nflog, w, text(w), published=True)
        for ident, hazard, site, xml in nflog.caps.all():
            self.caps.add(hazard, site, ident, xml)

    async def pending(self, after: int) -> list[Outgoing]:
        """Every document the broker has not taken yet, in the order first seen (the last one stays retained;
        a drill's document on a live system is not retained: the slot is the real state's)."""
        out = []
        for i, nflog in enumerate(self.logs):
            retain = nflog.drill == self.rt.drill
            for ident, hazard, site, xml in nflog.caps.all(unpublished=True):
                at = self._order.get((i, ident))
                if at is None:
                    self._last = self._order[i, ident] = at = self._last + 1
                self._at[at] = (i, nflog, ident)
                if at > after:
                    topic = topics.cap(self.rt.config.mqtt.topic_prefix, hazard, site)
                    out.append(Outgoing(topic, xml.encode(), at, at, retain=retain))
        return sorted(out, key=lambda m: m.first)

    async def delivered(self, msg: Outgoing) -> None:
        i, nflog, ident = self._at.pop(msg.first)
        nflog.caps.published(ident)
        del self._order[i, ident]

    async def publishing(self, sub: Subscription) -> None:
        """Publish documents on ``sub`` until cancelled; a log that refuses a read or a write (they stay
        unpublished) is logged once a minute and tried again at the next document."""
        while True:
            try:
                await drain(sub, self)
            except* sqlite3.Error:
                if _limiter.allow("cap-publish"):
                    log.exception("publishing CAP documents failed; trying again at the next one")
            await self.changed.wait()


async def _subscribe(rt: Runtime, pipelines: dict[str, Pipeline], publisher: _CapPublisher, wake: asyncio.Event,
                     ready: asyncio.Event | None) -> None:
    cfg = rt.config
    topic = topics.warnings(cfg.mqtt.topic_prefix)
    duty = (topics.commands(cfg.mqtt.topic_prefix), topics.silences(cfg.mqtt.topic_prefix))  # alerts/commands.py
    session = Session(cfg.alerts.client_id)

    async def connection() -> None:
        async with Subscription(cfg.mqtt, session, [(topic, 1), *((t, 1) for t in duty)],
                                on_session_lost=_session_lost) as sub:
            publisher.sub = sub
            SUBSCRIBED.set(1)
            log.info("alerts subscribed", extra={"kv": {"topic": topic}})
            # CAP documents made while the broker was away (or we were down), then each as it is made
            caps = asyncio.create_task(publisher.publishing(sub), name="alerts-cap")
            try:
                if ready is not None:
                    ready.set()
                async for msg in sub.messages(rt.stop):
                    if msg.matches(topic):  # the embedded demo broker sometimes sends retained strays
                        try:
                            await _on_message(rt, pipelines, msg.payload, msg.topic)
                        except Exception as exc:  # noqa: BLE001  not in the log: not acknowledged, sent again
                            raise _Unlogged(f"{type(exc).__name__}: {exc}") from exc
                    elif msg.topic in duty:  # the duty office's requests and silences
                        try:
                            _on_duty(rt, pipelines, msg.payload, msg.topic)
                        except sqlite3.Error as exc:
                            raise _Unlogged(str(exc)) from exc
                    else:
                        REJECTED.labels(reason="wrong-topic").inc()
                    msg.ack()
                    wake.set()
            finally:
                caps.cancel()
                await asyncio.wait([caps])
                if not caps.cancelled():
                    caps.exception()  # a broken link: the message loop's to raise (it has, or will)
                publisher.sub = None
                SUBSCRIBED.set(0)

    await reconnecting(rt.stop, session, connection, name="alerts", max_s=10.0, retry_on=(_Unlogged,),
                       on_error=_connection_failed)


def _connection_failed(exc: BaseException) -> None:
    if isinstance(exc, _Unlogged):
        UNLOGGED.inc()
        if _limiter.allow("unlogged"):
            log.error("the notification log cannot take a warning: leaving it unacknowledged and "
                      "reconnecting, so that the broker sends it again", extra={"kv": {"error": str(exc)}})
    elif _limiter.allow("mqtt"):
        log.warning("alerts lost the broker; reconnecting", extra={"kv": {"error": str(exc)}})


def _session_lost() -> None:
    log.error("the broker has forgotten the alerts' session: warnings published while we were away are lost "
              "(is broker persistence on?)")


def _on_duty(rt: Runtime, pipelines: dict[str, Pipeline], payload: Any, topic: str) -> None:
    """A request of the duty office (confirm on behalf, resend) or its silences, all of them."""
    try:
        if topic == topics.silences(rt.config.mqtt.topic_prefix):
            given = SilenceList.model_validate_json(payload or b'{"silences": []}').silences
            for p in pipelines.values():
                p.grouper.silences = list(rt.config.alerts.silences) + given
            log.info("silences from the duty office", extra={"kv": {"count": len(given)}})
            return
        cmd = Command.model_validate_json(payload)
    except ValidationError as exc:
        REJECTED.labels(reason="invalid-command").inc()
        if _limiter.allow("invalid-command"):
            log.warning("ignoring a duty-office message that cannot be read",
                        extra={"kv": {"topic": topic, "error": str(exc).splitlines()[0]}})
        return
    result = apply(pipelines, cmd, rt.clock.now())
    log.info("duty-office request", extra={"kv": {"action": cmd.action.value, "key": cmd.key, "by": cmd.by,
                                                  "phone": cmd.phone, **result}})


class _Unlogged(Exception):
    """A warning the notification log could not record: not acknowledged."""


async def _on_message(rt: Runtime, pipelines: dict[str, Pipeline], payload: Any, topic: str = "") -> None:
    try:
        w = wire.decode_warning(payload, topic)
    except PayloadError as exc:
        REJECTED.labels(reason="invalid").inc()
        if _limiter.allow("invalid"):
            log.warning("ignoring a message that is not a HazardWarning",
                        extra={"kv": {"topic": topic, "error": str(exc).splitlines()[0],
                                      "bytes": len(payload or b""), "start": bytes(payload or b"")[:80]}})
        return
    if rt.drill and not w.drill:  # a drill run marks everything it makes
        w = w.model_copy(update={"drill": True})
    # Whatever fails once the warning is in the log is retried from the log (alerts/retry.py); whatever raises
    # here failed before it was (the log's disk, a bug in recording): the caller leaves it unacknowledged.
    await pipelines["drill" if w.drill else "real"].handle(w)
