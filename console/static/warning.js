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
    $("w-evidence").innerHTML = (w.evidence || []).map((e) => `<li>${E(e)}</li>`).join("");
    const p = w.progress || {tiers: [], unconfirmed: []};
    rows("w-progress", p.tiers.map((t) => `<tr data-tier="${E(t.tier)}"><td>${E(Y.tier(t.tier))}</td><td>${t.told}</td><td>${t.delivered}</td><td>${t.failed}</td><td>${t.confirmed}</td><td>${t.escalated}</td></tr>`).join("")
      + `<tr class="total"><td>Σ</td><td>${p.told || 0}</td><td>${p.delivered || 0}</td><td>${p.failed || 0}</td><td>${p.confirmed || 0}</td><td>${p.escalated || 0}</td></tr>`);
    rows("w-unconfirmed", (p.unconfirmed || []).map((u) => `<tr data-phone="${E(u.phone)}"><td>${E(u.name)}</td><td>${E(Y.role(u.role))}</td><td>${E(u.phone)}</td><td>${E(Y.tier(u.tier))}</td><td>${E(Y.ago(u.asked_at))}</td></tr>`).join(""));
    rows("w-history", (w.history || []).map((h) => `<tr><td>${h.version}</td><td>${E(Y.stateWord(h.state))}</td><td><span class="badge ${E(h.level)}">${E(Y.level(h.level))}</span></td><td>${E(Y.time(h.at))}</td></tr>`).join(""));
    rows("w-notifications", (w.notifications || []).map((n) => `<tr data-phone="${E(n.phone)}" class="${n.confirmed_at ? "confirmed" : ""}"><td>${n.version}</td><td>${E(n.name)}</td><td>${E(Y.role(n.role))}</td><td>${E(n.phone)}</td><td>${E(Y.tier(n.tier))}</td><td>${E(n.channel)}${n.escalation ? " ↑" : ""}</td><td>${E(n.status)}</td><td class="conf">${n.confirmed_at ? E(Y.time(n.confirmed_at)) + " (" + E(n.confirmed_via) + ")" : ""}</td></tr>`).join(""));
    root.dataset.loaded = String(Date.now());
  }
  function soon() { if (!pending) pending = setTimeout(() => { pending = null; draw(); }, 150); }
  Y.on("warning", (w) => { if (w.key === key) soon(); });
  Y.on("progress", (p) => { if (p.key === key) soon(); });
  Y.on("hello", soon);
  Y.connect();
})();
