"""Approved templates for the Alibaba Cloud stand-in, from Yujing's own templates (the one definition).

    cfg_templates, sms, tts = approved(templates)   # alerts.aliyun.templates, and what the stand-in approves

Each template (the built-in defaults plus ``alerts.templates``) is "approved" as its text with ``{x}`` written
``${x}``: an SMS code and a TTS code, and drill codes for the same text behind 【演练】.
"""

from __future__ import annotations

import re

from alerts.render import (DEFAULT_ABOVE, DEFAULT_ABOVE_LIFT, DEFAULT_EQUIPMENT, DEFAULT_LIFT, DEFAULT_WARNING,
                           DRILL_MARK)

CONFIRMED_TTS = "TTS_900001"  # played after the key that confirms


def approved(templates: dict[str, str] | None = None,
             start: int = 100001) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, str]]:
    defs = {"default.warning": DEFAULT_WARNING, "default.lift": DEFAULT_LIFT, "default.equipment": DEFAULT_EQUIPMENT,
            "default.above": DEFAULT_ABOVE, "default.above.lift": DEFAULT_ABOVE_LIFT, **(templates or {})}
    cfg: dict[str, dict[str, str]] = {}
    sms: dict[str, str] = {}
    tts: dict[str, str] = {CONFIRMED_TTS: "已确认收到预警，谢谢。请按预案行动。"}
    for i, (name, text) in enumerate(sorted(defs.items())):
        aliyun_text = re.sub(r"\{(\w+)\}", r"${\1}", text)
        codes = {"sms": f"SMS_{start + 4 * i}", "voice": f"TTS_{start + 4 * i + 1}",
                 "drill_sms": f"SMS_{start + 4 * i + 2}", "drill_voice": f"TTS_{start + 4 * i + 3}"}
        cfg[name] = codes
        sms[codes["sms"]], tts[codes["voice"]] = aliyun_text, aliyun_text
        sms[codes["drill_sms"]], tts[codes["drill_voice"]] = DRILL_MARK + aliyun_text, DRILL_MARK + aliyun_text
    return cfg, sms, tts
