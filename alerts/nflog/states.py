"""The words of the notification log, as enums: what state a warning or a notification is in, which
channel, which tier of node. StrEnum, so a member is stored as its text and compares equal to it."""

from __future__ import annotations

import enum

from yujing.config.areas import Tier
from yujing.config.people import Channel

__all__ = ["Channel", "ChainState", "NodeTier", "Status", "WarningStatus"]


class WarningStatus(enum.StrEnum):
    """How far a recorded warning got: ``received`` until decided; a restart finishes what is not."""

    RECEIVED = "received"  # recorded, not yet decided (a crash here: decided again at start)
    ROUTED = "routed"  # its notifications are queued and its CAP document kept
    GROUPED = "grouped"  # folded into another member's message (alerts/group.py's verdicts)
    INHIBITED = "inhibited"
    SILENCED = "silenced"
    FAILED = "failed"  # a stage failed: retried from the log (alerts/retry.py)
    SUPERSEDED = "superseded"  # a newer version spoke before its retry did
    INTERNAL_ALARM = "internal-alarm"  # an alarm of our own to the duty office: no group, no CAP, not restored


class Status(enum.StrEnum):
    """A notification's state: ours until the provider has it, then the provider's word."""

    QUEUED = "queued"  # written, not yet asked for
    SENDING = "sending"  # the dangerous window: the request may or may not have reached the provider
    SENT = "sent"  # the provider accepted it (its sid kept)
    FAILED = "failed"
    # what providers report afterwards (Twilio's message and call statuses; Alibaba Cloud's, mapped to them)
    QUEUED_AT_PROVIDER = "queued-at-provider"  # the provider's own "queued"/"sending": never ours to resend
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    READ = "read"
    REJECTED = "rejected"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"
    OTHER = "other"  # a status this code does not know (kept in the event with the provider's own word)

    @property
    def pending(self) -> bool:
        """Not yet (known to be) with the provider: sent at start-up, or reconciled with the provider."""
        return self in (Status.QUEUED, Status.SENDING)

    @property
    def rank(self) -> int:
        """How far along a notification is: a receipt moves it only forward. Providers' callbacks arrive in any
        order (a late "sent" after "delivered"; a call's "ringing" after "completed"): the most advanced word
        is kept, whatever came last."""
        return _RANK[self]

    @classmethod
    def from_provider(cls, text: str) -> Status:
        """A provider's status. Its "queued" or "sending" is not ours: read as ours it would make a row pending
        again (sent twice after a crash); a word this code does not know is ``other``."""
        if text in ("queued", "sending"):
            return cls.QUEUED_AT_PROVIDER
        return _BY_TEXT.get(text, cls.OTHER)


_BY_TEXT = {s.value: s for s in Status}
_FINAL = 7  # the provider's last word on a message or call (one of them; a later final does not replace it)
_RANK = {
    Status.QUEUED: 0, Status.SENDING: 1,  # ours, before the provider has it
    Status.QUEUED_AT_PROVIDER: 2, Status.ACCEPTED: 2, Status.SCHEDULED: 2, Status.OTHER: 2,
    Status.SENT: 3, Status.INITIATED: 4, Status.RINGING: 5, Status.IN_PROGRESS: 6,
    Status.DELIVERED: _FINAL, Status.UNDELIVERED: _FINAL, Status.FAILED: _FINAL, Status.REJECTED: _FINAL,
    Status.COMPLETED: _FINAL, Status.BUSY: _FINAL, Status.NO_ANSWER: _FINAL, Status.CANCELED: _FINAL,
    Status.READ: _FINAL + 1,  # after delivered
}

# How the duty office counts a person told (the console and the duty API both read the log with these, not with
# word lists of their own: they used to, and a new word such as "read" went uncounted).
REACHED = frozenset({Status.DELIVERED, Status.READ, Status.COMPLETED})
NOT_REACHED = frozenset({Status.FAILED, Status.UNDELIVERED, Status.REJECTED, Status.BUSY, Status.NO_ANSWER,
                         Status.CANCELED})


class ChainState(enum.StrEnum):
    """An escalation step of a 叫应 chain."""

    PENDING = "pending"  # due at its time
    DONE = "done"  # taken
    STOPPED = "stopped"  # confirmed, or superseded by a newer version


class NodeTier(enum.StrEnum):
    """Where a recipient was found: a site's own people, or a level of the chain (:class:`Tier`)."""

    SITE = "site"
    CITY = "city"
    COUNTY = "county"
    TOWNSHIP = "township"
    VILLAGE = "village"
    GROUP = "group"
    HOUSEHOLD = "household"
    DRILL = "drill"  # a drill's participant, told an internal alarm outside the chain

    @classmethod
    def of(cls, tier: Tier) -> NodeTier:
        return cls(tier.value)
