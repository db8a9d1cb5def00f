"""The simulated field and the Twilio stand-in, around a running Yujing (``yujing run`` and drills).

    async with running(rt) as sim:     # every configured device, driven by simulation.scenario
        ...                            # sim.devices, sim.twilio, sim.scenario, sim.t0

``yujing run`` enters it when the deployment has a ``simulation:`` section. Devices whose kind has
no simulator yet are left out with one warning naming them (their readers will report them offline).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator

from simulators.devices import Fault, SimulatedDevices, simulable, simulate_devices
from simulators.playback import Action, Plan, build_plan, play_faults
from simulators.scenario import FaultEvent, Scenario, check_against, load_scenario
from yujing.errors import ConfigError
from yujing.runtime import Runtime

log = logging.getLogger("yujing.sim")

@dataclass
class Simulation:
    scenario: Scenario | None
    t0: datetime
    plan: Plan
    devices: SimulatedDevices | None = None
    twilio: Any = None  # simulators.twilio.TwilioStandIn when running
    skipped: list[str] = field(default_factory=list)  # device ids left unsimulated

    def offset(self, now: datetime) -> float:
        """Scenario seconds since the start."""
        return (now - self.t0).total_seconds()


def scenario_of(rt: Runtime) -> Scenario | None:
    sim = rt.config.simulation
    if sim is None or not sim.scenario:
        return None
    scn = load_scenario(rt.config.path(sim.scenario, ""))
    problems = check_against(scn, rt.config)
    if problems:
        raise ConfigError([f"{sim.scenario}: {p}" for p in problems])
    return scn


@contextlib.asynccontextmanager
async def running(rt: Runtime, scenario: Scenario | None = None, *, devices: list[Any] | None = None,
                  gateway_action: Action | None = None, twilio: bool | None = None,
                  twilio_port: int | None = None) -> AsyncIterator[Simulation]:
    """Serve the simulated devices (all configured, or ``devices``) and the Twilio stand-in until exit."""
    cfg = rt.config
    simcfg = cfg.simulation
    scn = scenario if scenario is not None else scenario_of(rt)
    t0 = rt.clock.now()
    wanted = devices if devices is not None else [d for g in cfg.gateways for d in g.devices]
    if simcfg is not None and not simcfg.devices and devices is None:
        wanted = []
    served = [d for d in wanted if simulable(d.type)]
    skipped = [d.id for d in wanted if not simulable(d.type)]
    if skipped:
        kinds = sorted({d.type for d in wanted if not simulable(d.type)})
        log.warning("no simulator for some device kinds yet; those devices are not simulated",
                    extra={"kv": {"kinds": ",".join(kinds), "devices": len(skipped)}})
    plan = build_plan(cfg, scn, t0, served)
    sim = Simulation(scenario=scn, t0=t0, plan=plan, skipped=skipped)
    use_twilio = twilio if twilio is not None else bool(simcfg and simcfg.twilio)
    async with contextlib.AsyncExitStack() as stack:
        if use_twilio:
            sim.twilio = await stack.enter_async_context(_twilio(rt, twilio_port))
        sim.devices = await stack.enter_async_context(simulate_devices(served, plan.sources, rt.clock, cfg.mqtt))
        log.info("simulation running", extra={"kv": {
            "devices": len(served), "scenario": scn.name if scn else "calm", "speed": rt.clock.speed,
            "twilio": getattr(sim.twilio, "base_url", "") if sim.twilio else "off"}})
        task = None
        if scn is not None and scn.faults:
            task = asyncio.create_task(_faults(rt, sim, scn.faults, gateway_action))
        try:
            yield sim
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _faults(rt: Runtime, sim: Simulation, events: list[FaultEvent], gateway_action: Action | None) -> None:
    served = set(sim.devices.by_device) if sim.devices else set()

    async def sleep_until(offset: float) -> bool:
        return await rt.sleep(offset - sim.offset(rt.clock.now()))

    async def device_action(ev: FaultEvent, starting: bool) -> None:
        if sim.devices is None or ev.device not in served:
            return
        await sim.devices.fault(Fault(ev.fault.value) if starting else Fault.NONE, ev.device)

    try:
        await play_faults(events, sleep_until, device_action, gateway_action)
    except Exception:
        log.exception("scenario fault timeline failed")


@contextlib.asynccontextmanager
async def _twilio(rt: Runtime, port: int | None, verbose: bool = True, limits: Any = None) -> AsyncIterator[Any]:
    """The Twilio stand-in (simulators/twilio.py), on simulation.twilio_port, printing what it would send."""
    try:
        mod = importlib.import_module("simulators.twilio")
    except ImportError:
        log.warning("the Twilio stand-in is not available; notifications will fail to send")
        yield None
        return
    simcfg = rt.config.simulation
    port = port if port is not None else (simcfg.twilio_port if simcfg else 0)
    twcfg = rt.config.alerts.twilio
    token = "standin-token"
    secret = twcfg.auth_token
    if secret is not None and secret.env and secret.env not in os.environ:
        # the demo: alerts talks to this stand-in, which accepts its own token; say so once
        os.environ[secret.env] = token
        log.info("Twilio stand-in: using its own auth token", extra={"kv": {"variable": secret.env}})
    if secret is not None:
        with contextlib.suppress(LookupError):
            token = secret.get()
    hook = rt.config.alerts.webhook
    replies = f"{hook.public_url or f'http://{hook.host}:{hook.port}'}/twilio/sms" if hook.port else None
    async with mod.TwilioStandIn(auth_token=token, account_sid=twcfg.account_sid, port=port, clock=rt.clock,
                                 verbose=verbose, sms_webhook=replies, limits=limits) as standin:
        yield standin
