"""The console's words, Chinese first (the duty office's language), English beside each.

Templates call ``t("key")``; the page's script gets the same table (``window.T``) for what it draws.
"""

from __future__ import annotations

from console.config import Language

WORDS: dict[str, tuple[str, str]] = {
    "title": ("预警值班台", "Yujing duty console"),
    "map": ("一张图", "Map"),
    "warnings": ("在发预警", "Warnings in force"),
    "equipment": ("设备", "Equipment"),
    "drills": ("演练", "Drills"),
    "audit": ("操作记录", "Audit log"),
    "sites": ("站点", "sites"),
    "all_townships": ("全部乡镇", "All townships"),
    "all_hazards": ("全部灾种", "All hazards"),
    "all_levels": ("全部级别", "All levels"),
    "level_blue": ("蓝色", "Blue"), "level_yellow": ("黄色", "Yellow"),
    "level_orange": ("橙色", "Orange"), "level_red": ("红色", "Red"),
    "normal": ("正常", "Normal"), "silent": ("无数据", "Silent"),
    "no_warnings": ("当前无在发预警", "No warning in force"),
    "live": ("实时", "Live"), "offline": ("连接中断", "Disconnected"),
    "evidence": ("依据", "Evidence"), "history": ("过程", "History"), "source": ("来源", "Source"),
    "progress": ("叫应进度", "Progress down the chain"),
    "told": ("已通知", "Told"), "delivered": ("已送达", "Delivered"), "failed": ("失败", "Failed"),
    "confirmed": ("已叫应", "Confirmed"), "escalated": ("已升级呼叫", "Escalated"),
    "unconfirmed": ("未叫应", "Not confirmed"), "asked_for": ("已等待", "Asked for"),
    "notifications": ("通知记录", "Notifications"),
    "person": ("人员", "Person"), "role": ("角色", "Role"), "phone": ("电话", "Phone"),
    "tier": ("层级", "Tier"), "channel": ("方式", "Channel"), "status": ("状态", "Status"),
    "confirmed_at": ("叫应时间", "Confirmed at"), "version": ("版本", "Version"),
    "issued_at": ("发布时间", "Issued"), "updated_at": ("更新时间", "Updated"),
    "state": ("状态", "State"), "level": ("级别", "Level"), "at": ("时间", "At"),
    "site": ("站点", "Site"), "area": ("区域", "Area"), "hazard": ("灾种", "Hazard"),
    "series_24": ("近24小时", "Last 24 h"), "series_72": ("近72小时", "Last 72 h"),
    "devices": ("设备", "Devices"), "people": ("责任人", "People"),
    "device": ("设备", "Device"), "gateway": ("网关", "Gateway"), "last_seen": ("最后数据", "Last seen"),
    "outbox": ("待发缓存", "Outbox"), "gateways": ("网关", "Gateways"),
    "equipment_warnings": ("设备预警", "Equipment warnings"),
    "online": ("在线", "Online"), "unknown": ("未知", "Unknown"), "ok": ("正常", "OK"),
    "degraded": ("降级", "Degraded"), "offline_dev": ("离线", "Offline"),
    "reports": ("演练报告", "Drill reports"), "no_reports": ("暂无演练报告", "No drill report yet"),
    "scenario": ("场景", "Scenario"), "passed": ("通过", "Passed"), "not_passed": ("未通过", "Not passed"),
    "open_report": ("查看报告", "Open report"),
    "state_issued": ("发布", "Issued"), "state_upgraded": ("升级", "Upgraded"),
    "state_downgraded": ("降级", "Downgraded"), "state_lifted": ("解除", "Lifted"),
    "no_data": ("该时段无数据", "No data in this period"),
    "drill_mark": ("演练", "DRILL"), "lang_other": ("English", "中文"),
    "login": ("登录", "Log in"), "logout": ("退出", "Log out"), "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
}

HAZARDS: dict[str, tuple[str, str]] = {
    "rainstorm": ("暴雨", "Rainstorm"), "torrent": ("山洪", "Mountain torrent"), "reservoir": ("水库水位", "Reservoir"),
    "river": ("河道水位", "River"), "landslide": ("滑坡", "Landslide"), "fire": ("森林火灾", "Forest fire"),
    "equipment": ("监测设备", "Equipment"),
}

TIERS: dict[str, tuple[str, str]] = {
    "city": ("市", "City"), "county": ("县", "County"), "township": ("乡镇", "Township"),
    "village": ("村", "Village"), "group": ("组", "Group"), "household": ("户", "Household"),
    "site": ("站点", "Site"),  # a site's own monitor and responsible person
}

ROLES: dict[str, tuple[str, str]] = {
    "responsible": ("责任人", "Responsible"), "deputy": ("副责任人", "Deputy"), "monitor": ("监测员", "Monitor"),
    "grid": ("网格员", "Grid worker"), "duty": ("值班室", "Duty office"), "group_leader": ("组长", "Group leader"),
    "household": ("户", "Household"), "maintainer": ("设备运维", "Maintainer"),
}


def table(lang: Language) -> dict[str, str]:
    i = 0 if lang is Language.ZH else 1
    out = {k: v[i] for k, v in WORDS.items()}
    for prefix, words in (("hazard_", HAZARDS), ("tier_", TIERS), ("role_", ROLES)):
        out.update({prefix + k: v[i] for k, v in words.items()})
    return out


def pick(requested: str | None, cookie: str | None, default: Language) -> Language:
    for choice in (requested, cookie):
        if choice in (Language.ZH.value, Language.EN.value):
            return Language(choice)
    return default
