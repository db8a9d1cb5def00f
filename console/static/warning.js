/* One warning: evidence, history, source, its progress down the chain and who was told. */
"use strict";
(() => {
  const root = document.getElementById("warning");
  const key = root.dataset.key;
  const $ = (id) => document.getElementById(id);
  const rows = (id, html) => { $(id).querySelector("tbody").innerHTML = html; };
  let pending = null;
  async function draw() {
    const r = await fetch(`/console/warnings/${encodeURIComponent(key)}.json`, {cache: "no-store"});
    if (!r.ok) { $("w-title").textContent = key; return; }
    const w = await r.json();
    const E = Y.esc;
    $("w-title").textContent = (w.drill ? "【" + Y.T.drill_mark + "】" : "") + (w.title || Y.hazard(w.hazard));
    $("w-level").textContent = Y.level(w.level); $("w-level").className = "badge " + w.level;
    $("w-state").textContent = Y.stateWord(w.state);
    $("w-source").textContent = w.source;
    $("w-site").textContent = w.site_name || w.area_name || w.site || w.area;
    if (w.site) $("w-site").href = "/sites/" + encodeURIComponent(w.site);
    $("w-issued").textContent = Y.time(w.issued_at); $("w-updated").textContent = Y.time(w.updated_at);
    // a rule's evidence, or what the operator or the platform above wrote
    $("w-evidence").innerHTML = [...(w.evidence || []), ...(w.instruction ? [w.instruction] : [])].map((e) => `<li>${E(e)}</li>`).join("");
    const p = w.progress || {tiers: [], unconfirmed: []};
    rows("w-progress", p.tiers.map((t) => `<tr data-tier="${E(t.tier)}"><td>${E(Y.tier(t.tier))}</td><td>${t.told}</td><td>${t.delivered}</td><td>${t.failed}</td><td>${t.confirmed}</td><td>${t.escalated}</td><td>${t.by_escalation}</td></tr>`).join("")
      + `<tr class="total"><td>Σ</td><td>${p.told || 0}</td><td>${p.delivered || 0}</td><td>${p.failed || 0}</td><td>${p.confirmed || 0}</td><td>${p.escalated || 0}</td><td>${p.by_escalation || 0}</td></tr>`);
    rows("w-unconfirmed", (p.unconfirmed || []).map((u) => `<tr data-phone="${E(u.phone)}"><td>${E(u.name)}</td><td>${E(Y.role(u.role))}</td><td>${E(u.phone)}</td><td>${E(Y.tier(u.tier))}</td><td>${E(Y.ago(u.asked_at, u.asked_s))}</td><td>${Y.canWrite() && w.in_force ? `<button type="button" class="confirm-for" data-phone="${E(u.phone)}" data-name="${E(u.name)}">${E(Y.T.confirm_for)}</button>` : ""}</td></tr>`).join(""));
    // alerts' estimate of when the last person is reached, given our rates and the provider's limits
    rows("w-plans", (w.plans || []).map((f) => `<tr><td>${f.version}</td><td>${E(f.provider)}</td><td>${f.sms} / ${f.sms_segments}</td><td>${f.calls}</td><td class="last">${Math.round(f.last_s)} s</td></tr>`).join(""));
    rows("w-history", (w.history || []).map((h) => `<tr><td>${h.version}</td><td>${E(Y.stateWord(h.state))}</td><td><span class="badge ${E(h.level)}">${E(Y.level(h.level))}</span></td><td>${E(Y.time(h.at))}</td></tr>`).join(""));
    rows("w-notifications", (w.notifications || []).map((n) => `<tr data-phone="${E(n.phone)}" class="${n.confirmed_at ? "confirmed" : ""}"><td>${n.version}</td><td>${E(n.name)}</td><td>${E(Y.role(n.role))}</td><td>${E(n.phone)}</td><td>${E(Y.tier(n.tier))}</td><td>${E(n.channel)}${n.escalation ? " ↑" : ""}</td><td>${E(n.status)}</td><td class="conf">${n.confirmed_at ? E(Y.time(n.confirmed_at)) + " (" + E(n.confirmed_via) + ")" : ""}</td></tr>`).join(""));
    root.dataset.loaded = String(Date.now());
    root.dataset.state = w.state; root.dataset.version = String(w.version);
    const bar = $("w-actions");
    if (bar) {
      bar.hidden = !w.in_force;
      $("act-level").value = w.level;
      // a rule's warning follows its readings: only warnings from above (an operator, a CAP sender) are
      // changed or lifted by hand; resending and confirming are for every warning
      const fromAbove = !String(w.source || "").startsWith("rule");
      for (const id of ["act-level", "act-update", "act-lift"]) $(id).hidden = !fromAbove;
    }
  }
  const T = Y.T, E = Y.esc;
  const path = (what) => `/api/v1/warnings/${encodeURIComponent(key)}/${what}`;
  const after = (res) => { if (res && res.status < 300) soon(); };
  if ($("w-actions")) {
    $("act-resend").addEventListener("click", async () =>
      after(await Y.act(T.resend, `<p>${E(T.ask_resend)}</p>`, () => Y.api("POST", path("resend"), {}))));
    $("act-lift").addEventListener("click", async () =>
      after(await Y.act(T.lift, `<p>${E(T.ask_lift)}</p>`, () => Y.api("POST", path("lift"), {}))));
    $("act-update").addEventListener("click", async () => {
      const level = $("act-level").value;
      after(await Y.act(T.update_level, `<p>${E(T.ask_update)}</p><p><span class="badge ${E(level)}">${E(Y.level(level))}</span></p>`,
        () => Y.api("POST", path("update"), {level})));
    });
  }
  document.addEventListener("click", async (e) => {
    const b = e.target.closest("button.confirm-for");
    if (!b) return;
    const form = `<p>${E(T.ask_confirm_for)}</p><p><b>${E(b.dataset.name)}</b> ${E(b.dataset.phone)}</p>
      <label>${E(T.via)} <select name="via"><option value="landline">${E(T.via_landline)}</option>
        <option value="in-person">${E(T.via_in_person)}</option><option value="radio">${E(T.via_radio)}</option></select></label>
      <label>${E(T.note)} <input name="note" maxlength="500"></label>`;
    after(await Y.act(T.confirm_for, form, (f) => Y.api("POST", "/api/v1/confirm",
      {key, phone: b.dataset.phone, via: f.get("via"), note: f.get("note") || ""})));
  });
  function soon() { if (!pending) pending = setTimeout(() => { pending = null; draw(); }, 150); }
  Y.on("warning", (w) => { if (w.key === key) soon(); });
  Y.on("progress", (p) => { if (p.key === key) soon(); });
  Y.on("hello", soon);
  Y.connect();
})();
