/* Gateways and devices: silent, degraded or broken, with the equipment warnings. */
"use strict";
(() => {
  const E = Y.esc;
  let pending = null;
  async function draw() {
    const r = await fetch("/console/equipment.json", {cache: "no-store"});
    const e = await r.json();
    document.getElementById("e-warnings").innerHTML = e.warnings.length ? e.warnings.map(Y.card).join("") : `<p class="empty">${E(Y.T.no_warnings)}</p>`;
    const state = (g) => g.online == null ? Y.T.unknown : g.online ? Y.T.online : Y.T.offline_dev;
    document.querySelector("#e-gateways tbody").innerHTML = e.gateways.sort((a, b) => (b.offline - a.offline) || (a.online - b.online)).map((g) =>
      `<tr class="${g.online === false || g.warned ? "st-offline" : g.offline || g.degraded ? "st-degraded" : ""}"><td>${E(g.name)} <small>${E(g.gateway)}</small></td><td>${E(state(g))}</td><td>${E(Y.time(g.ts))}</td><td>${g.devices}</td><td>${g.offline}</td><td>${g.degraded}</td><td>${g.outbox_depth ?? ""}</td></tr>`).join("");
    const bad = e.devices.filter((d) => d.state !== "ok" || d.warnings.length);
    document.querySelector("#e-devices tbody").innerHTML = bad.map((d) =>
      `<tr class="st-${E(d.state)}"><td>${E(d.device)}</td><td><a href="/sites/${encodeURIComponent(d.site)}">${E(d.site)}</a></td><td>${E(d.gateway)}</td><td>${E(Y.T[d.state === "offline" ? "offline_dev" : d.state] || d.state)}</td><td>${E(Y.time(d.last_ok))}</td><td>${E(d.warnings.join("; "))} ${E(d.error)}</td></tr>`).join("");
  }
  const soon = () => { if (!pending) pending = setTimeout(() => { pending = null; draw(); }, 1000); };
  Y.on("heartbeat", soon); Y.on("warning", (w) => { if (w.hazard === "equipment") soon(); });
  Y.on("hello", draw);
  Y.connect();
})();
