"""What a running alerts service shows the code that started it (tests, the bench, drills): ``serve(rt,
on_running=...)`` hands one :class:`Running` over once the service is wired, before it subscribes.

It names what a caller may look at, so the service's other parts stay its own: the pipelines (each with its
notification log), the CAP documents served, where the webhooks listen, and whether anything is still on its way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the service imports this module
    from alerts.cap import CapBook
    from alerts.fanout import Dispatcher
    from alerts.pipeline import Pipeline


@dataclass(frozen=True)
class Running:
    pipelines: dict[str, Pipeline]  # "real" and "drill"
    caps: CapBook  # the CAP documents served (and published), by identifier and by (hazard, site)
    webhook_url: str  # where providers' callbacks are signed for (the public URL, if one is configured)
    webhook_port: int  # the port the webhooks listen on (0 in the config: the one the OS gave)
    aliyun_urls: dict[str, str] = field(default_factory=dict)  # Alibaba Cloud's push URLs; {} without it
    dispatcher: Dispatcher | None = field(default=None, repr=False)

    def pipeline(self, kind: str = "real") -> Pipeline:
        return self.pipelines[kind]

    def busy(self) -> int:
        """Notifications queued or in flight, in both kinds: 0 once everything decided so far was sent or failed."""
        backlog = self.dispatcher.backlog if self.dispatcher is not None else 0
        return backlog + sum(p.nflog.notifications.pending_count() for p in self.pipelines.values())
