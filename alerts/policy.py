"""The default routing policy: who hears of which colour, the issue's six-level chain.

    blue   → the site's monitor and responsible person, the village responsible person
    yellow → + the township (responsible, duty office)
    orange → + the county and city duty offices, voice calls to every group leader; officials must confirm
    red    → + every household (SMS and voice)

Reports go up the chain: county and city duty offices see every orange and red. Equipment faults go to
maintainers and the county duty office, never to households. YAML overrides a (hazard, level) whole.
"""

from __future__ import annotations

from alerts.config import AlertsConfig, Scope, Target
from yujing.config.areas import Tier
from yujing.config.people import Channel, Role
from yujing.model import Hazard, Level

SMS = [Channel.SMS]
BOTH = [Channel.SMS, Channel.VOICE]
VOICE = [Channel.VOICE]


def _chain(level: Level) -> list[Target]:
    confirm = level >= Level.ORANGE
    ch = BOTH if confirm else SMS
    out = [
        Target(scope=Scope.SITE, roles=[Role.MONITOR, Role.RESPONSIBLE], channels=ch, ack=confirm),
        Target(scope=Scope.VILLAGE, roles=[Role.RESPONSIBLE], channels=ch, ack=confirm),
    ]
    if level >= Level.YELLOW:
        out.append(Target(scope=Scope.TOWNSHIP, roles=[Role.RESPONSIBLE, Role.DUTY], channels=ch, ack=confirm))
    if level >= Level.ORANGE:
        out += [
            Target(scope=Scope.VILLAGE, roles=[Role.GRID], channels=SMS),
            Target(scope=Scope.GROUP, roles=[Role.GROUP_LEADER], channels=BOTH, ack=True),
            Target(scope=Scope.COUNTY, roles=[Role.DUTY], channels=BOTH, ack=True),
            Target(scope=Scope.CITY, roles=[Role.DUTY], channels=SMS),  # reports go up: the city sees it too
        ]
    if level >= Level.RED:
        out.append(Target(scope=Scope.HOUSEHOLD, roles=[], channels=BOTH))
    return out


def _equipment(level: Level) -> list[Target]:
    return [
        Target(scope=Scope.SITE, roles=[Role.MAINTAINER], channels=SMS),
        Target(scope=Scope.COUNTY, roles=[Role.MAINTAINER, Role.DUTY], channels=SMS),
    ]


def targets(cfg: AlertsConfig, hazard: Hazard, level: Level) -> list[Target]:
    """The targets for ``hazard`` at ``level``: the YAML override if there is one, else the default chain."""
    override = cfg.policy.get(hazard, {}).get(level)
    if override is not None:
        return override
    return _equipment(level) if hazard is Hazard.EQUIPMENT else _chain(level)


__all__ = ["Tier", "targets"]
