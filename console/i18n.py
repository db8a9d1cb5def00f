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
    "confirmed": ("已叫应", "Confirmed"), "escalated": ("未叫应已升级", "Escalated (no answer)"),
    "by_escalation": ("升级呼叫", "Told by escalation"),
    "unconfirmed": ("未叫应", "Not confirmed"), "asked_for": ("已等待", "Asked for"),
    "notifications": ("通知记录", "Notifications"),
    "fanout_plan": ("发送计划", "Fan-out plan"), "sms_segments": ("短信（条/段）", "SMS (messages/segments)"),
    "calls": ("电话", "Calls"), "provider": ("通道", "Provider"),
    "last_person": ("预计送达最后一人", "Estimated time to the last person"),
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
    "start_drill": ("开始演练", "Start a drill"), "drill_runs": ("本台发起的演练", "Drills started here"),
    "drill_running": ("进行中", "Running"), "drill_failed": ("未能运行", "Could not run"),
    "drill_explain": ("在运行中的系统上演练一个场景：消息均标【演练】，仅发给演练参与人（经短信网关替身），不影响真实预警。",
                      "Drills a scenario on the live system: every message is marked 【演练】 and reaches only the "
                      "drill's participants (through the SMS gateway's stand-in); live warnings are not touched."),
    "ask_drill": ("将在运行中的系统上开始以下场景的演练（标【演练】，仅演练参与人）：",
                  "This starts a drill of the scenario below on the live system (marked 【演练】, drill participants only):"),
    "error_drill-running": ("已有演练在进行", "A drill is already running"),
    "state_issued": ("发布", "Issued"), "state_upgraded": ("升级", "Upgraded"),
    "state_downgraded": ("降级", "Downgraded"), "state_lifted": ("解除", "Lifted"),
    "no_data": ("该时段无数据", "No data in this period"),
    "drill_mark": ("演练", "DRILL"), "lang_other": ("English", "中文"),
    "login": ("登录", "Log in"), "logout": ("退出", "Log out"), "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "cancel": ("取消", "Cancel"), "confirm_send": ("确认", "Confirm"), "demo_login": ("演示账号", "Demo login"),
    "action": ("操作", "Action"), "target": ("对象", "Target"), "result": ("结果", "Result"), "remote": ("来源地址", "From"),
    "error_bad-credentials": ("用户名或密码错误", "Wrong user name or password"),
    "error_too-many-attempts": ("失败次数过多，请稍后再试", "Too many failed attempts; try again later"),
    "error_forbidden": ("无此操作权限", "Not allowed for your role"),
    "error_csrf": ("会话校验失败，请刷新页面", "Session check failed; reload the page"),
    "error_unauthenticated": ("请先登录", "Log in first"),
    "issue": ("发布预警", "Issue a warning"), "resend": ("重发未叫应", "Resend to the unconfirmed"),
    "lift": ("解除预警", "Lift"), "update_level": ("调整级别", "Change level"),
    "confirm_for": ("代为叫应", "Confirm for them"), "via": ("确认方式", "Confirmed by"), "note": ("备注", "Note"),
    "via_landline": ("座机", "Landline"), "via_in_person": ("当面", "In person"), "via_radio": ("对讲/广播", "Radio"),
    "village": ("村", "Village"), "township": ("乡镇", "Township"), "text": ("内容", "Text"), "w_title": ("标题", "Title"),
    "expires_h": ("有效时长(小时)", "Valid for (hours)"), "silence": ("维护静默", "Silence for maintenance"),
    "hours": ("小时", "hours"), "reason": ("原因", "Reason"), "done": ("已提交", "Done"),
    "ask_issue": ("确认发布？将按预警级别向该区域各级责任人发送短信/电话。", "Issue it? The people of this area will be sent SMS/calls by its level."),
    "ask_lift": ("确认解除？将向已通知的人员发送解除通知。", "Lift it? Everyone told will be sent the lift."),
    "ask_resend": ("确认重发？将再次通知所有未叫应人员。", "Resend? Everyone not yet confirmed will be told again."),
    "ask_update": ("确认调整级别？将按新级别通知。", "Change the level? People will be told at the new level."),
    "ask_confirm_for": ("确认代为叫应？该人员的升级呼叫将停止。", "Confirm for this person? Their escalation stops."),
    "ask_silence": ("确认静默？期间该站点的预警不发送通知。", "Silence? Warnings at this site notify nobody meanwhile."),
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
    # the duty office's accounts
    "viewer": ("只读", "Viewer"), "operator": ("值班员", "Operator"), "admin": ("管理员", "Administrator"),
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
