"""The fan-out plan: how long until the last person is reached, given our rates and the provider's limits.

    plan = estimate(notifications, cfg)      # pure: counts, rates, the bound the limits impose
    plan.last_s                              # seconds from the first request to the last person's

The provider is the first of ``alerts.providers``. Twilio queues what it cannot send at once: each long-code
sender sends ``sms_segments_per_s`` (1) segments a second, so a pool of N senders carries N; calls go out at
``calls_per_s`` (1) per account. Alibaba Cloud refuses beyond its QPS caps (SendSms 5,000/s, IvrCall 100/s),
which our token buckets (``alerts.rates``) keep under; one SendSms carries up to ``sms_batch`` (1,000) numbers
that get the same text, so requests, not messages, are what the rates count. Officials come first (priority), so the estimate is for
the last person of the fan-out, who is a household in a red. Per channel the bound is the slower of our rate
and the provider's; channels run side by side, so the fan-out's is the longer of the two.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from alerts.config import AlertsConfig, ProviderName
from alerts.nflog import Notification
from yujing.config.people import Channel


def segments(body: str) -> int:
    """SMS segments: GSM-7 160 (153 per part), anything else (Chinese) UCS-2 70 (67 per part)."""
    single, part = (160, 153) if all(ord(c) < 128 for c in body) else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // part)


@dataclass(frozen=True)
class Plan:
    sms: int
    sms_segments: int
    calls: int
    sms_s: float  # seconds until the last SMS leaves the provider
    calls_s: float  # … the last call is dialled
    provider: str

    @property
    def last_s(self) -> float:
        return max(self.sms_s, self.calls_s)

    def as_dict(self) -> dict[str, object]:
        return {"sms": self.sms, "sms_segments": self.sms_segments, "calls": self.calls, "provider": self.provider,
                "sms_s": round(self.sms_s, 1), "calls_s": round(self.calls_s, 1), "last_s": round(self.last_s, 1)}


def estimate(items: Iterable[Notification], cfg: AlertsConfig) -> Plan:
    sms = segs = calls = 0
    same: dict[str, int] = {}  # SMS per identical template and parameters: what one batch request can carry
    for n in items:
        if n.channel == Channel.SMS.value:
            sms += 1
            segs += segments(n.body)
            same[n.template or n.key] = same.get(n.template or n.key, 0) + 1
        else:
            calls += 1
    ours = {c: cfg.rates[c].per_s for c in (Channel.SMS, Channel.VOICE) if c in cfg.rates}
    our_sms = sms / ours[Channel.SMS] if Channel.SMS in ours else 0.0
    our_calls = calls / ours[Channel.VOICE] if Channel.VOICE in ours else 0.0
    first = cfg.providers[0]
    if first is ProviderName.TWILIO:
        pool = len(cfg.twilio.from_numbers) or 1
        sms_s = max(our_sms, segs / (pool * cfg.twilio.sms_segments_per_s))
        calls_s = max(our_calls, calls / cfg.twilio.calls_per_s)
    else:
        assert cfg.aliyun is not None
        requests = sum(-(-k // cfg.aliyun.sms_batch) for k in same.values())  # SendSms carries up to 1,000 numbers
        our_sms = requests / ours[Channel.SMS] if Channel.SMS in ours else 0.0
        sms_s = max(our_sms, requests / cfg.aliyun.sms_qps)
        calls_s = max(our_calls, calls / cfg.aliyun.voice_qps)
    return Plan(sms, segs, calls, sms_s if sms else 0.0, calls_s if calls else 0.0, first.value)
