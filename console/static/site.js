/* A site: its series for 24 h / 72 h against its thresholds, warning levels shaded; its devices. */
"use strict";
(() => {
  const COLOURS = {blue: "#2563eb", yellow: "#eab308", orange: "#f97316", red: "#dc2626", "": "#6b7280"};
  const root = document.getElementById("site");
  const site = root.dataset.site;
  const charts = document.getElementById("charts");
  let hours = 24;
  function shade(data) {
    return (u) => {
      const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
      ctx.save();
      for (const s of data.levels) {
        const x0 = u.valToPos(s.from, "x", true), x1 = u.valToPos(s.to, "x", true);
        ctx.fillStyle = COLOURS[s.level] + "33";
        ctx.fillRect(x0, top, Math.max(1, x1 - x0), h);
      }
      ctx.restore();
    };
  }
  function lines(panel) {
    return (u) => {
      const ctx = u.ctx;
      ctx.save(); ctx.setLineDash([6, 4]); ctx.lineWidth = 1.5;
      for (const t of panel.thresholds) {
        const y = u.valToPos(t.value, "y", true);
        if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) continue;
        ctx.strokeStyle = COLOURS[t.level] || "#6b7280";
        ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y); ctx.stroke();
        ctx.fillStyle = ctx.strokeStyle; ctx.font = `${12 * devicePixelRatio}px sans-serif`;
        ctx.fillText(t.label, u.bbox.left + 4, y - 3);
      }
      ctx.restore();
    };
  }
  async function draw() {
    const r = await fetch(`/console/sites/${encodeURIComponent(site)}/series.json?hours=${hours}`, {cache: "no-store"});
    const data = await r.json();
    charts.innerHTML = "";
    if (!data.panels || !data.panels.length) { charts.innerHTML = `<p class="empty">${Y.esc(Y.T.no_data)}</p>`; return; }
    const width = Math.max(300, charts.clientWidth - 8);
    for (const p of data.panels) {
      const div = document.createElement("div"); div.className = "chart"; charts.appendChild(div);
      const top = Math.max(...p.thresholds.map((t) => t.value), ...p.y.flat().filter((v) => v != null), 1);
      const opts = {
        width, height: 260, title: `${p.quantity} (${p.unit})`,
        scales: {x: {time: true, range: [data.since, data.until]}, y: {range: (u, lo, hi) => [Math.min(0, lo ?? 0), Math.max(top * 1.1, hi ?? 1)]}},
        series: [{}, ...p.series.map((s, i) => ({label: s.label, stroke: ["#111827", "#0ea5e9", "#a855f7", "#16a34a", "#f59e0b"][i % 5], width: 2}))],
        hooks: {drawClear: [shade(data)], draw: [lines(p)]},
      };
      new uPlot(opts, [p.x, ...p.y], div);
    }
    root.dataset.loaded = String(Date.now());
  }
  async function devices() {
    const r = await fetch("/console/equipment.json", {cache: "no-store"});
    const e = await r.json();
    const E = Y.esc;
    document.querySelector("#s-devices tbody").innerHTML = e.devices.filter((d) => d.site === site).map((d) =>
      `<tr class="st-${E(d.state)}"><td>${E(d.device)} <small>${E(d.type)}</small></td><td>${E(Y.T[d.state === "offline" ? "offline_dev" : d.state] || d.state)}</td><td>${E(Y.time(d.last_ok))}</td><td>${E(d.gateway)}</td><td>${d.outbox_depth ?? ""}</td><td>${E(d.warnings.join("; "))} ${E(d.error)}</td></tr>`).join("");
  }
  function badge() {
    fetch("/console/state.json").then((r) => r.json()).then((s) => {
      const st = s.states[site] || {};
      const b = document.getElementById("s-level");
      b.textContent = st.silent ? Y.T.silent : Y.level(st.level);
      b.className = "badge " + (st.silent ? "silent" : st.level || "none");
    });
  }
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll(".tabs button").forEach((x) => x.classList.toggle("on", x === b));
    hours = Number(b.dataset.hours); draw();
  }));
  const sil = document.getElementById("act-silence");
  if (sil) sil.addEventListener("click", () => Y.act(Y.T.silence, `<p>${Y.esc(Y.T.ask_silence)}</p>
      <label>${Y.esc(Y.T.hours)} <input name="hours" type="number" min="1" max="720" value="4" required></label>
      <label>${Y.esc(Y.T.reason)} <input name="reason" maxlength="500" required></label>`,
    (f) => Y.api("POST", "/api/v1/silences", {site, for_s: Number(f.get("hours")) * 3600, reason: f.get("reason")})));
  Y.on("sites", (changed) => { if (changed[site]) { badge(); draw(); } });
  Y.on("heartbeat", () => devices());
  Y.on("hello", () => { draw(); devices(); badge(); });
  Y.connect();
})();
