"""Can the configured providers carry what the policy sends? Checked at load (``yujing check``), not in a flood.

A provider of approved templates only (Alibaba Cloud) sends a template code and its parameters, never free
text. Our templates (``alerts.templates`` and the built-in defaults, :mod:`alerts.render`) are the one
definition: each is approved at the provider as the same text with ``{x}`` written ``${x}``, and
``alerts.aliyun.templates`` maps its name to the approved codes per channel. :func:`uncovered` lists every
(template, channel) the policy can send that has no code; :func:`too_long` the parameters that would pass the
provider's cap per variable with this deployment's names (evidence and titles vary with each warning: they are
cut to the cap when sent, and counted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alerts.policy import targets
from alerts.render import ADVICE, fields_of, template_for
from yujing.config.people import Channel
from yujing.model import Hazard, Level

if TYPE_CHECKING:
    from alerts.config import AlertsConfig

STATIC = {"level_cn", "level_roman", "hazard_cn", "state_cn", "advice", "confirm"}
NAMES = {"area_name", "site_name", "township_name", "village_name"}


def _uses(cfg: AlertsConfig) -> dict[tuple[str, Channel], tuple[Hazard, Level]]:
    """Every (template name, channel) the policy can send, with one (hazard, level) that sends it."""
    out: dict[tuple[str, Channel], tuple[Hazard, Level]] = {}
    for hazard in Hazard:
        for level in Level:
            channels = {c for t in targets(cfg, hazard, level) for c in t.channels}
            channels |= {Channel.VOICE} if Channel.SMS in channels else set()  # a failed SMS is followed by a call
            for lift in (False, True):
                for above in (False, True):  # a warning from above (CAP, the duty office) has its own default
                    name, _ = template_for(cfg.templates, hazard, level, lift, above=above)
                    for channel in ({Channel.SMS} if lift else channels):
                        out.setdefault((name, channel), (hazard, level))
    return out


def uncovered(cfg: AlertsConfig) -> list[str]:
    if cfg.aliyun is None:
        return []
    approved = cfg.aliyun.templates
    missing = []
    uses = _uses(cfg)
    for (name, channel), (hazard, level) in sorted(uses.items()):
        entry = approved.get(name)
        if entry is None or getattr(entry, channel.value) is None:
            missing.append(f"{name} by {channel.value} (e.g. {hazard} {level})")
    for (name, _channel), (hazard, level) in sorted(uses.items()):
        above = name.startswith("default.above")
        _, text = template_for(cfg.templates, hazard, level, name.endswith("lift"), above=above)
        for var in fields_of(text):
            if var in STATIC:
                longest = _static_len(var, level)
                if longest > cfg.aliyun.param_max:
                    missing.append(f"{name}: {{{var}}} is up to {longest} characters, over the cap of "
                                   f"{cfg.aliyun.param_max}")
    return missing


def _static_len(var: str, level: Level) -> int:
    if var == "advice":
        return max(len(a.get(level, "")) for a in ADVICE.values())
    if var == "confirm":
        return len("收到请回复1确认。")
    return 4


def too_long(config: object) -> list[str]:
    """Names in this deployment (areas, sites) longer than a template variable may be."""
    alerts = getattr(config, "alerts", None)
    if alerts is None or alerts.aliyun is None:
        return []
    cap = alerts.aliyun.param_max
    problems = []
    for area in getattr(config, "areas", []):
        if len(area.name) > cap:
            problems.append(f"area {area.id}: name {area.name!r} has {len(area.name)} characters (cap {cap})")
    for site in getattr(config, "sites", []):
        if len(site.name) > cap:
            problems.append(f"site {site.id}: name {site.name!r} has {len(site.name)} characters (cap {cap})")
    return problems
