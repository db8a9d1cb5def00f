"""Who is told what, how, and through which provider: the ``alerts:`` section.

    alerts:
      providers: [aliyun, twilio]        # failover order; default [twilio]
      aliyun: {access_key_id: LTAI…, access_key_secret: {env: …}, sign_name: …, templates: {…}}
      twilio: {account_sid: AC…, auth_token: {env: TWILIO_AUTH_TOKEN}, from_number: '+8610…', base_url: …}
      webhook: {host: 0.0.0.0, port: 8089, public_url: 'https://yujing.example.cn'}
      households: households.csv          # 户: group,id,name,phone[,channels]
      policy:                              # overrides of the default chain, per hazard and level
        landslide:
          red: [{scope: site}, {scope: village, roles: [responsible], channels: [sms, voice], ack: true}, …]
      ack: {timeout_s: 300, steps: [recall, deputy, up]}
      rates: {sms: {per_s: 50}, voice: {per_s: 10}}
      silences: [{site: LS-01, hazard: landslide, starts: …, ends: …, comment: 监测仪维护}]
      drill: {recipients: [{name: 演练联络员, role: duty, phone: '+86…'}]}
      templates: {landslide.red: '…{site_name}…'}

The default policy (:mod:`alerts.policy`) is the issue's chain; YAML only states what differs.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from yujing.config.areas import Tier
from yujing.config.people import Channel, Person, Role
from yujing.config.secrets import Secret
from yujing.model import AwareUTC, Hazard, Level


class Window(BaseModel):
    """At most ``count`` uses per ``seconds``: one of a provider's frequency limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(ge=1)
    seconds: float = Field(gt=0)


class TwilioConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    account_sid: str = "AC00000000000000000000000000000000"
    auth_token: Secret | None = None
    from_number: str = Field(default="+15005550006", pattern=r"^\+[1-9][0-9]{6,14}$")
    # a pool of senders (long codes): SMS are spread over them, each sending 1 segment a second
    from_numbers: list[Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$")]] = Field(default_factory=list)
    sms_segments_per_s: float = Field(default=1.0, gt=0)  # per sender: Twilio's long-code rate (for the plan)
    calls_per_s: float = Field(default=1.0, gt=0)  # per account: Twilio's default CPS (for the plan)
    base_url: str | None = None  # None: Twilio's cloud; a URL: a stand-in of its REST API
    timeout_s: float = Field(default=10.0, gt=0)
    retries: int = Field(default=6, ge=0)  # per request, on 429/5xx/network, with exponential backoff
    backoff_s: float = Field(default=0.5, gt=0)  # first backoff (real seconds), doubling, capped at 30 s
    outage_retry_s: float = Field(default=15.0, gt=0)  # retries used up: look again after this, doubling to 300 s
    outage_retries: int = Field(default=8, ge=0)  # … this many times (≈ 25 min) before a notification fails
    configure_number: bool = True  # point the from_number's inbound-SMS webhook at us at startup
    # calls to one callee Twilio (or the carrier behind it) lets through; none published, so none by default
    callee_limits: list[Window] = Field(default_factory=list)


class ApprovedTemplate(BaseModel):
    """The codes the provider approved for one of our templates (by its name: ``landslide.red``, ``*.lift``…).
    The approved text is ours with ``{x}`` written ``${x}``; a drill's is the same behind 【演练】."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sms: str | None = None  # SMS_…
    voice: str | None = None  # TTS_…
    drill_sms: str | None = None
    drill_voice: str | None = None


class ProviderName(enum.StrEnum):
    TWILIO = "twilio"
    ALIYUN = "aliyun"


class AliyunConfig(BaseModel):
    """Alibaba Cloud SMS (dysmsapi 2017-05-25) and voice (dyvmsapi 2017-05-25), through the official SDKs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_key_id: str
    access_key_secret: Secret | None = None
    sign_name: str  # the approved 签名
    show_number: str  # CalledShowNumber: a number bought for voice
    sms_endpoint: str = "dysmsapi.aliyuncs.com"
    voice_endpoint: str = "dyvmsapi.aliyuncs.com"
    protocol: str = Field(default="https", pattern="^https?$")  # http: a stand-in
    templates: dict[str, ApprovedTemplate] = Field(default_factory=dict)
    confirmed_tts: str | None = None  # TTS code (no variables) played after the key that confirms
    push_token: Secret | None = None  # the secret path element of the push URLs (Aliyun's push is unsigned)
    param_max: int = Field(default=35, ge=1)  # characters per template variable
    sms_qps: float = Field(default=5000.0, gt=0)  # SendSms calls per second per account (for the plan)
    sms_batch: int = Field(default=1000, ge=1, le=1000)  # numbers per SendSms when the text is the same
    voice_qps: float = Field(default=100.0, gt=0)  # IvrCall/SingleCallByTts per second per account
    play_times: int = Field(default=2, ge=1, le=3)
    timeout_s: float = Field(default=10.0, gt=0)
    retries: int = Field(default=4, ge=0)
    backoff_s: float = Field(default=0.5, gt=0)
    # a voice notice reaches one callee at most once a minute, 5 times an hour, 20 a day
    callee_limits: list[Window] = Field(default_factory=lambda: [Window(count=1, seconds=60),
                                                                  Window(count=5, seconds=3600),
                                                                  Window(count=20, seconds=86400)])


class WebhookConfig(BaseModel):
    """The HTTP server Twilio calls back (status, <Gather>, inbound SMS) and that serves CAP documents."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8089, ge=0, le=65535)  # 0: any free port (tests)
    public_url: str = ""  # how Twilio reaches us; signatures are checked against it. "": http://host:port


class Scope(enum.StrEnum):
    """Where a target's people sit, relative to the warned site."""

    SITE = "site"  # the site's own people: monitor 监测员, responsible 责任人
    CITY = "city"
    COUNTY = "county"
    TOWNSHIP = "township"
    VILLAGE = "village"
    GROUP = "group"  # every group (组) under the site's village (or under `within`)
    HOUSEHOLD = "household"  # every household (户) under the site's village (or under `within`)

    @property
    def tier(self) -> Tier | None:
        return None if self is Scope.SITE else Tier(self.value)


class Target(BaseModel):
    """One line of a routing policy: these people, over these channels, asked to confirm or not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Scope
    roles: list[Role] = Field(default_factory=list)  # empty: everyone at that node
    within: Tier = Tier.VILLAGE  # for group/household scopes: under the site's ancestor of this tier
    channels: list[Channel] = Field(default_factory=lambda: [Channel.SMS])
    ack: bool = False  # ask for 叫应 confirmation and escalate when none comes


class AckConfig(BaseModel):
    """叫应: how long to wait for a confirmation, and what to do then, step by step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: dict[Level, float] = Field(default_factory=lambda: {Level.ORANGE: 600.0, Level.RED: 300.0})
    steps: list[EscalationStep] = Field(default_factory=lambda: [EscalationStep.RECALL, EscalationStep.DEPUTY,
                                                                   EscalationStep.UP])
    confirm_words: list[str] = Field(default_factory=lambda: ["1", "收到", "确认", "已收到", "好", "ok", "yes"])
    digits: str = "1"  # the key that confirms on a call


class EscalationStep(enum.StrEnum):
    RECALL = "recall"  # call the same person again
    DEPUTY = "deputy"  # their deputy (副责任人 / AB角) at the same node
    UP = "up"  # the responsible person and duty office one level up


AckConfig.model_rebuild()


class RateConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    per_s: float = Field(default=50.0, gt=0)  # requests per real second to the provider
    burst: int = Field(default=20, ge=1)
    concurrency: int = Field(default=16, ge=1)  # requests in flight at once


class Silence(BaseModel):
    """A maintenance window: matching warnings are logged but nobody is told."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str | None = None
    area: str | None = None  # every warning at or under this node (its sites, and warnings addressed to it)
    hazard: Hazard | None = None
    starts: AwareUTC
    ends: AwareUTC
    comment: str = ""
    id: str = ""  # the duty office's silences carry theirs (to be removed by it)

    def matches(self, site: str, hazard: Hazard, at: datetime, areas: set[str] | frozenset[str] = frozenset()) -> bool:
        """``areas``: the ids of the warning's chain (its area and every ancestor)."""
        return (self.site in (None, site) and (self.area is None or self.area in areas)
                and self.hazard in (None, hazard) and self.starts <= at < self.ends)


class DrillConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # the people who take part in every drill (a drill adds its own): the ONLY people a drill warning can
    # reach, and only as the real routing would; one who is nowhere in the chain gets an SMS copy (observer)
    recipients: list[Person] = Field(default_factory=list)
    log: str = ""  # drill notification log; default: <data_dir>/alerts-drill.sqlite


class GroupingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    wait_s: float = Field(default=5.0, ge=0)  # hold a new (hazard, site) group this long to gather its sensors


class CapConfig(BaseModel):
    """Who Yujing's own CAP documents say they are from: per deployment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sender: str = Field(default="yujing@localhost", pattern=r"^[^\s,<&]+$")  # CAP: no spaces, commas, < or &
    sender_name: str = ""  # "": the deployment's name


class AlertsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    twilio: TwilioConfig = Field(default_factory=TwilioConfig)
    aliyun: AliyunConfig | None = None
    providers: list[ProviderName] = Field(default_factory=lambda: [ProviderName.TWILIO], min_length=1)  # failover order
    log: str = ""  # notification log; default: <data_dir>/alerts.sqlite
    client_id: str = "yujing-alerts"  # MQTT persistent session
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    households: str = ""  # CSV of households (group,id,name,phone[,channels]); "": households.csv if present
    policy: dict[Hazard, dict[Level, list[Target]]] = Field(default_factory=dict)
    ack: AckConfig = Field(default_factory=AckConfig)
    rates: dict[Channel, RateConfig] = Field(default_factory=lambda: {
        Channel.SMS: RateConfig(per_s=100.0, burst=50, concurrency=32),
        Channel.VOICE: RateConfig(per_s=20.0, burst=10, concurrency=16)})
    grouping: GroupingConfig = Field(default_factory=GroupingConfig)
    silences: list[Silence] = Field(default_factory=list)
    drill: DrillConfig = Field(default_factory=DrillConfig)
    cap: CapConfig = Field(default_factory=CapConfig)
    templates: dict[str, str] = Field(default_factory=dict)  # "landslide.red", "landslide.lift", "*.red"…
    voice_language: str = "cmn-CN"  # <Say language=…>: Mandarin
    voice: str = "Polly.Zhiyu"
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # /metrics and /health (not the webhook port:
    # that one faces the Internet, this one the monitoring network)

    @field_validator("templates")
    @classmethod
    def _templates_valid(cls, v: dict[str, str]) -> dict[str, str]:
        from alerts.render import check_templates

        check_templates(v)
        return v

    @model_validator(mode="after")
    def _providers_can_carry(self) -> AlertsConfig:
        """Every text the policy can send must have an approved template at each template provider."""
        if ProviderName.ALIYUN in self.providers:
            if self.aliyun is None:
                raise ValueError("providers: 'aliyun' is listed but there is no alerts.aliyun section")
            from alerts.templates import uncovered

            problems = uncovered(self)
            if problems:
                raise ValueError("aliyun.templates: no approved template can carry " + "; ".join(problems))
        return self
