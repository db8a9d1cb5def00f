"""Render: a warning into the words people read and hear. Chinese by default, one template per hazard and level.

Templates are ``str.format`` strings over the variables in :data:`VARIABLES`; every template (built in or
from YAML) is checked at load, so a typo fails ``yujing check``, not the first flood. Lookup order for a
(hazard, level, kind): ``hazard.level[.kind]``, ``*.level[.kind]``, ``hazard.kind``, the built-in default.
``kind`` is ``''`` for a warning, ``lift`` for 解除. A person whose ``language`` is not ``zh`` gets the
``<language>:``-prefixed template if there is one (``en:*.red``), else the Chinese text.
"""

from __future__ import annotations

import string

from yujing.config.areas import Tier
from yujing.model import Hazard, HazardWarning, Level, WarningState, local_time

DRILL_MARK = "【演练】"

VARIABLES = {
    "area_name", "level_cn", "level_roman", "hazard_cn", "state_cn", "site_name", "site", "title", "evidence",
    "time", "advice", "confirm", "township_name", "village_name", "sender_name", "headline", "instruction",
    "place_name",
}

ADVICE: dict[Hazard, dict[Level, str]] = {
    Hazard.LANDSLIDE: {
        Level.BLUE: "请监测员加密巡查，注意裂缝和变形。",
        Level.YELLOW: "请加密监测，做好撤离准备。",
        Level.ORANGE: "请立即组织危险区群众撤离准备，禁止人员进入危险区。",
        Level.RED: "请立即撤离至安全避险点，严禁返回！",
    },
    Hazard.TORRENT: {
        Level.BLUE: "请注意沟道水位变化。", Level.YELLOW: "请做好转移准备，远离河沟。",
        Level.ORANGE: "请立即组织低洼区群众转移。", Level.RED: "请立即转移至高处安全地带！",
    },
    Hazard.RAINSTORM: {
        Level.BLUE: "请注意防范强降雨。", Level.YELLOW: "请做好防御准备，注意山洪和地质灾害。",
        Level.ORANGE: "请停止户外作业，危险区群众做好转移。", Level.RED: "请立即转移危险区群众，停止一切户外活动！",
    },
    Hazard.RESERVOIR: {
        Level.BLUE: "请加强大坝巡查。", Level.YELLOW: "请加密巡查，做好泄洪准备。",
        Level.ORANGE: "请组织下游群众做好转移准备。", Level.RED: "请立即组织下游群众转移！",
    },
    Hazard.RIVER: {
        Level.BLUE: "请注意河道水位。", Level.YELLOW: "请远离河道，做好防汛准备。",
        Level.ORANGE: "请组织沿河群众做好转移准备。", Level.RED: "请立即组织沿河群众转移！",
    },
    Hazard.FIRE: {
        Level.BLUE: "请加强巡山护林。", Level.YELLOW: "请严控野外用火，加强巡查。",
        Level.ORANGE: "请扑火队伍集结待命。", Level.RED: "请立即组织扑救和人员疏散！",
    },
    Hazard.EQUIPMENT: {lvl: "请运维人员尽快检修。" for lvl in Level},
    Hazard.OTHER: {lvl: "请按当地政府和防汛指挥部的指令做好防范。" for lvl in Level},
}

DEFAULT_WARNING = ("{area_name}{hazard_cn}{level_cn}预警({level_roman}级){state_cn}：{site_name}，{title}{evidence}"
                   "（{time}）{advice}{confirm}")
DEFAULT_EQUIPMENT = "{area_name}{site_name}监测设备告警({level_cn})：{title}{evidence}（{time}）{advice}"
DEFAULT_LIFT = "{area_name}{site_name}{hazard_cn}{level_cn}预警已解除（{time}）。"
# a warning from above (CAP, the duty office) names who issued it and carries their headline and instruction
DEFAULT_ABOVE = "【{sender_name}】{headline}：{instruction}（{time}）{confirm}"
DEFAULT_ABOVE_LIFT = "【{sender_name}】{place_name}{hazard_cn}{level_cn}预警已解除（{time}）。"
# One SMS of UCS-2 text is 70 characters, a long one is sent in 67-character parts; carriers join at most a
# handful reliably. A warning from above brings text of any length: its instruction is cut to fit this.
MAX_ABOVE_CHARS = 335  # five parts


def check_templates(templates: dict[str, str]) -> None:
    """Raise ``ValueError`` naming the template and the unknown variable or bad syntax."""
    for name, text in templates.items():
        parts = name.split(":", 1)[-1].split(".")  # an optional language prefix: "en:landslide.red"
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"template {name!r}: name it hazard.level, hazard.level.lift or hazard.lift")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as exc:
            raise ValueError(f"template {name!r}: {exc}") from None
        unknown = {f.split(".")[0].split("[")[0] for f in fields} - VARIABLES
        if "" in unknown or unknown:
            raise ValueError(f"template {name!r}: unknown variable(s) {sorted(unknown)}; known: {sorted(VARIABLES)}")
        try:  # known names can still fail to format ('{site_name:d}', '{title[9]}'): find out now, not at a red
            for sample in ("", "示例文字"):  # every variable is a string, and may be empty
                text.format(**dict.fromkeys(VARIABLES, sample))
        except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
            raise ValueError(f"template {name!r} cannot be rendered: {exc}") from None


def template_for(templates: dict[str, str], hazard: Hazard, level: Level, lift: bool,
                 language: str = "zh", above: bool = False) -> tuple[str, str]:
    kind = ".lift" if lift else ""
    names = (f"{hazard}.{level}{kind}", f"*.{level}{kind}", f"{hazard}{kind or '.warning'}", f"*{kind or '.warning'}")
    prefixes = ([f"{language}:"] if language and language != "zh" else []) + [""]
    for prefix in prefixes:
        for name in names:
            if prefix + name in templates:
                return prefix + name, templates[prefix + name]
    if above:  # a warning from above: who issued it, their headline and instruction
        return ("default.above.lift", DEFAULT_ABOVE_LIFT) if lift else ("default.above", DEFAULT_ABOVE)
    if lift:
        return "default.lift", DEFAULT_LIFT
    if hazard is Hazard.EQUIPMENT:
        return "default.equipment", DEFAULT_EQUIPMENT
    return "default.warning", DEFAULT_WARNING


def fields_of(text: str) -> list[str]:
    """The variables a template uses, in order, once each."""
    out: list[str] = []
    for _, f, _, _ in string.Formatter().parse(text):
        if f is not None and f not in out:
            out.append(f)
    return out


class Renderer:
    def __init__(self, templates: dict[str, str], confirm_digit: str = "1") -> None:
        check_templates(templates)
        self.templates = templates
        self.confirm_digit = confirm_digit

    def template(self, hazard: Hazard, level: Level, lift: bool, language: str = "zh", above: bool = False) -> str:
        """The template for a person's language (``en:landslide.red``…), else the Chinese one."""
        return self.named(hazard, level, lift, language, above)[1]

    def named(self, hazard: Hazard, level: Level, lift: bool, language: str = "zh",
              above: bool = False) -> tuple[str, str]:
        """(name, text) of the template: the name is what a template provider's approved codes are keyed by."""
        return template_for(self.templates, hazard, level, lift, language, above)

    def variables(self, w: HazardWarning, site_name: str, lineage: list[tuple[Tier, str]], ack: bool,
                  channel: str) -> dict[str, str]:
        names = dict(lineage)
        area = "".join(n for t, n in reversed(lineage) if t in (Tier.TOWNSHIP, Tier.VILLAGE))
        if ack:
            confirm = (f"收到请按{self.confirm_digit}确认。" if channel == "voice"
                       else f"收到请回复{self.confirm_digit}确认。")
        else:
            confirm = ""
        place = "".join(n for t, n in reversed(lineage) if t.depth >= Tier.COUNTY.depth and t.depth <= Tier.GROUP.depth)
        place_name = (place + (site_name or "")) if w.site else place
        advice = ADVICE.get(w.hazard, {}).get(w.level, "")
        return {
            "sender_name": w.sender_name or "预警发布单位",
            "headline": w.headline or f"{place_name}{w.hazard.chinese}{w.level.chinese}预警{w.state.chinese}",
            "instruction": w.instruction or advice, "place_name": place_name,
            "area_name": area, "level_cn": w.level.chinese, "level_roman": w.level.roman,
            "hazard_cn": w.hazard.chinese, "state_cn": w.state.chinese, "site_name": site_name or w.site,
            "site": w.site, "title": (w.title + "。") if w.title and not w.title.endswith("。") else w.title,
            "evidence": "；".join(w.evidence) + ("。" if w.evidence else ""),
            "time": local_time(w.updated_at), "advice": advice,
            "confirm": confirm, "township_name": names.get(Tier.TOWNSHIP, ""),
            "village_name": names.get(Tier.VILLAGE, ""),
        }

    def text(self, w: HazardWarning, site_name: str, lineage: list[tuple[Tier, str]], *, ack: bool = False,
             channel: str = "sms", language: str = "zh") -> str:
        return self.render(w, site_name, lineage, ack=ack, channel=channel, language=language)[0]

    def render(self, w: HazardWarning, site_name: str, lineage: list[tuple[Tier, str]], *, ack: bool = False,
               channel: str = "sms", language: str = "zh") -> tuple[str, str, dict[str, str]]:
        """(full text, template name, its parameters): the text for providers that take free text (Twilio),
        the name and parameters for those that send only approved templates (Alibaba Cloud)."""
        lift = w.state is WarningState.LIFTED
        name, template = self.named(w.hazard, w.level, lift, language, w.from_above)
        variables = self.variables(w, site_name, lineage, ack and not lift, channel)
        body = template.format(**variables)
        if w.from_above and len(body) > MAX_ABOVE_CHARS:  # cut the instruction, never who issued it or the 叫应 ask
            over = len(body) - MAX_ABOVE_CHARS + 1
            variables["instruction"] = variables["instruction"][:max(0, len(variables["instruction"]) - over)] + "…"
            body = template.format(**variables)[:MAX_ABOVE_CHARS]
        params = {f: variables[f] for f in fields_of(template)}
        return (DRILL_MARK + body) if w.drill else body, name, params
