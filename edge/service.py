"""The edge agent: every device of a gateway polled in its own task, readings into the outbox, outbox to MQTT.

    await serve(rt)                      # every gateway in rt.config
    await serve(rt, ["gw-zhongzhou-01"]) # only these

Per gateway: one SQLite outbox at ``config.path(gw.outbox, "edge-<id>.outbox")``,
one uplink publishing ``ReadingBatch`` JSON to ``{prefix}/readings/{gateway}``
(QoS 1) and a retained heartbeat on ``{prefix}/status/{gateway}``.

The heartbeat's ``outbox_dropped`` is the cumulative count of readings the gateway had to drop
(outbox full by policy, or its disk full past the in-memory bound), persisted in the outbox; a
drop triggers a heartbeat within about a second, so the centre can raise an equipment warning.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from edge.config import GatewayConfig
from edge.outbox import GroupCommit, Outbox
from edge.poller import DevicePoller
from edge.devices.reader import ReaderContext
from edge.status import DeviceStatus
from edge.uplink import Uplink
from yujing import metrics, wire
from yujing.model import Reading
from yujing.runtime import Runtime

log = logging.getLogger("yujing.edge")


async def serve(rt: Runtime, gateways: list[str] | None = None) -> None:
    chosen = [g for g in rt.config.gateways if gateways is None or g.id in gateways]
    unknown = set(gateways or ()) - {g.id for g in chosen}
    if unknown:
        raise LookupError(f"no gateway with id {sorted(unknown)} in the configuration")
    async with asyncio.TaskGroup() as tg:
        for gw in chosen:
            tg.create_task(serve_gateway(rt, gw))


def heartbeat_builder(rt: Runtime, gw: GatewayConfig, outbox: Outbox, statuses: dict[str, DeviceStatus],
                      started: datetime, uplink_sent: "list[Uplink]", rejects: dict[str, dict[str, int]]):
    """The heartbeat. A device's ``rejected`` counts its frames, lines or payloads refused, by reason: the
    very counts ``yujing_edge_frames_rejected_total`` got since the gateway started (``errors`` are failed
    polls); ``unrouted`` the frames a shared listener got for no configured device, by listener."""

    def build(online: bool) -> dict:
        now = rt.clock.now()
        return wire.GatewayStatus(
            gateway=gw.id, online=online, ts=now, started=started,
            uptime_s=round((now - started).total_seconds(), 3),
            outbox_depth=outbox.depth + outbox.held, outbox_dropped=outbox.dropped,
            published=uplink_sent[0].sent if uplink_sent else 0, drill=rt.drill,
            refused=dict(uplink_sent[0].hold.refused_by) if uplink_sent else {},
            devices={d: {**s.as_json(), "rejected": dict(rejects.get(d, {}))} for d, s in statuses.items()},
            unrouted={k: dict(v) for k, v in rejects.items() if k not in statuses},
        ).model_dump(mode="json")  # the uplink sends it as JSON (and as its last will)

    return build


async def serve_gateway(rt: Runtime, gw: GatewayConfig) -> None:
    path = rt.config.path(gw.outbox, f"edge-{gw.id}.outbox")
    started = rt.clock.now()
    async with Outbox(path, gw.id, gw.outbox_limit, gw.outbox_when_full) as outbox:
        changed = asyncio.Event()
        statuses = {d.id: DeviceStatus(d.id, changed=changed) for d in gw.devices}
        holder: list[Uplink] = []
        ctx = ReaderContext(clock=rt.clock, mqtt=rt.config.mqtt)
        uplink = Uplink(rt, gw, outbox, heartbeat_builder(rt, gw, outbox, statuses, started, holder, ctx.rejects))
        holder.append(uplink)

        commits = GroupCommit(outbox)

        async def sink(readings: list[Reading]) -> None:
            await commits.put(readings)

        async def relay_status_changes() -> None:
            while not rt.stop.is_set():
                await changed.wait()
                changed.clear()
                uplink.status_changed.set()

        async def relay_losses() -> None:
            while not rt.stop.is_set():
                await outbox.lost.wait()
                outbox.lost.clear()
                uplink.status_changed.set()
                await asyncio.sleep(1.0)  # a drop per poll makes one heartbeat a second, not one per poll

        def health() -> dict[str, object]:
            states: dict[str, int] = {}
            for st in statuses.values():
                states[st.state.value] = states.get(st.state.value, 0) + 1
            connected, held = uplink.connected.is_set(), uplink.hold.held
            return {"ok": connected and not held, "gateway": gw.id, "connected": connected,
                    "outbox_depth": outbox.depth + outbox.held, "devices": states,
                    "held": held, "refused": dict(uplink.hold.refused_by)}  # held: the broker refuses readings

        log.info("gateway starting", extra={"kv": {"gateway": gw.id, "devices": len(gw.devices),
                                                   "outbox": str(path), "backlog": outbox.depth}})
        async with metrics.serving(gw.metrics_host, gw.metrics_port, health), asyncio.TaskGroup() as tg:
            tg.create_task(uplink.run())
            writer = tg.create_task(commits.run())
            async with asyncio.TaskGroup() as pollers:
                relay = pollers.create_task(relay_status_changes())
                losses = pollers.create_task(relay_losses())
                for dev in gw.devices:
                    pollers.create_task(DevicePoller(rt, gw.id, dev, ctx, sink, statuses[dev.id]).run())
                await rt.stop.wait()
                relay.cancel()
                losses.cancel()
            writer.cancel()  # the pollers are done, so nothing is pending in it
            uplink.finish.set()  # every reading is committed now: flush them before leaving
    log.info("gateway stopped", extra={"kv": {"gateway": gw.id}})

