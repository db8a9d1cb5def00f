"""How far a warning's notifications got, per tier of the chain: one reading of the notification log's rows,
for the console's warning page and the duty office's API alike (they counted apart before, and disagreed).

    rows = db.execute(f"SELECT {COLUMNS} FROM notifications WHERE warning_id=? ORDER BY seq", ...)
    delivery(rows, confirmed_phones)

- ``told``: people sent anything; ``delivered``: reached on some channel (``states.REACHED``); ``failed``: not
  reached on any (a failed SMS whose fallback call got through is reached, not failed);
- ``confirmed``: people told who confirmed (叫应), by reply, keypress or the duty officer;
- ``escalated``: people whose silence started an escalation step (a notification's reason ``recall:<phone>``,
  ``deputy:<phone>``, ``up:<phone>`` names them); ``by_escalation``: people told because of such a step;
- ``unconfirmed``: people asked to confirm who have not, with when they were first asked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from alerts.nflog.states import NOT_REACHED, REACHED
from yujing.config.areas import Tier

COLUMNS = "phone, tier, node, name, status, ack, reason, created_at"
COUNTS = ("told", "delivered", "failed", "confirmed", "escalated", "by_escalation")
_ORDER = [t.value for t in Tier]  # the chain, top down; a site's own people after it


def delivery(rows: Iterable[tuple[str, str, str, str, str, int, str, str]], confirmed: set[str]) -> dict[str, Any]:
    """Totals, the same per tier (chain order), and who has not confirmed; ``rows`` as :data:`COLUMNS` reads them."""
    per: dict[str, dict[str, set[str]]] = {}
    tier_of: dict[str, str] = {}
    asked: dict[str, dict[str, Any]] = {}
    origins: set[str] = set()
    for phone, tier, node, name, status, ack, reason, created in rows:
        t = per.setdefault(tier, {k: set() for k in COUNTS})
        tier_of.setdefault(phone, tier)
        t["told"].add(phone)
        if status in REACHED:
            t["delivered"].add(phone)
        if status in NOT_REACHED:
            t["failed"].add(phone)
        if phone in confirmed:
            t["confirmed"].add(phone)
        if ":" in reason:  # an escalation step: "<kind>:<whose silence started it>"
            t["by_escalation"].add(phone)
            origins.add(reason.split(":", 1)[1])
        if ack and phone not in confirmed and phone not in asked:
            asked[phone] = {"name": name, "phone": phone, "tier": tier, "node": node, "asked_at": created}
    for origin in origins:
        if origin in tier_of:
            per[tier_of[origin]]["escalated"].add(origin)
    for t in per.values():
        t["failed"] -= t["delivered"]
    tiers = [{"tier": tier, **{k: len(v) for k, v in per[tier].items()}}
             for tier in sorted(per, key=lambda t: _ORDER.index(t) if t in _ORDER else 99)]
    return {**{k: sum(t[k] for t in tiers) for k in COUNTS}, "tiers": tiers, "unconfirmed": list(asked.values())}
