/* The console's shared script: words, the live event stream, the warnings in force, small helpers. */
"use strict";
const Y = (() => {
  const T = JSON.parse(document.getElementById("words").textContent);
  const handlers = {};
  const Y = {
    T, state: null, warnings: new Map(), sites: new Map(), states: {}, areas: {},
    on(kind, fn) { (handlers[kind] = handlers[kind] || []).push(fn); },
    emit(kind, data) { (handlers[kind] || []).forEach((fn) => fn(data)); },
    esc(s) { return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c])); },
    level(lv) { return lv ? T["level_" + lv] || lv : T.normal; },
    hazard(h) { return T["hazard_" + h] || h; },
    tier(t) { return T["tier_" + t] || t; },
    role(r) { return r ? T["role_" + r] || r : ""; },
    stateWord(s) { return T["state_" + s] || s; },
    ago(iso, seconds) {
      if (!iso && seconds == null) return "";
      const s = seconds != null ? seconds : Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
      if (s < 90) return Math.round(s) + " s";
      if (s < 5400) return Math.round(s / 60) + " min";
      return (s / 3600).toFixed(1) + " h";
    },
    // people read Beijing time, whatever the browser's own zone (a wall screen's PC may be on UTC)
    time(iso) { return iso ? new Date(iso).toLocaleString(document.body.dataset.lang === "zh" ? "zh-CN" : "en-GB", {hour12: false, timeZone: "Asia/Shanghai"}) : ""; },
    async load() {
      const r = await fetch("/console/state.json", {cache: "no-store"});
      const s = await r.json();
      Y.state = s; Y.states = s.states; Y.areas = s.areas;
      Y.sites = new Map(s.sites.map((a) => [a[0], {id: a[0], name: a[1], kind: a[2], township: a[3], lat: a[4], lon: a[5]}]));
      Y.warnings = new Map(s.warnings.map((w) => [w.key, w]));
      Y.emit("loaded", s);
      Y.count();
      return s;
    },
    count() { const n = document.getElementById("nwarn"); if (n) n.textContent = Y.warnings.size || ""; },
    connect() {
      const conn = document.getElementById("conn");
      const es = new EventSource("/console/events");
      // The state is loaded once the stream is open (and again after every break), so no change can fall
      // between the snapshot and the first event.
      es.addEventListener("hello", () => {
        conn.textContent = T.live; conn.classList.add("up");
        if (Y.autoload) Y.load();
        Y.emit("hello", {});
      });
      es.onerror = () => { conn.textContent = T.offline; conn.classList.remove("up"); };
      es.addEventListener("warning", (e) => {
        const w = JSON.parse(e.data);
        // equipment warnings have their own page; the map and the lists are about hazards
        if (w.hazard !== "equipment") { if (w.state === "lifted") Y.warnings.delete(w.key); else Y.warnings.set(w.key, w); }
        Y.count(); Y.emit("warning", w);
      });
      es.addEventListener("progress", (e) => {
        const p = JSON.parse(e.data);
        const w = Y.warnings.get(p.key);
        if (w && w.version === p.version) w.progress = p.progress;
        Y.emit("progress", p);
      });
      es.addEventListener("sites", (e) => {
        const changed = JSON.parse(e.data).sites;
        Object.assign(Y.states, changed);
        Y.emit("sites", changed);
      });
      es.addEventListener("heartbeat", (e) => Y.emit("heartbeat", JSON.parse(e.data)));
      Y.events = es;
    },
    filters() {
      const v = (id) => { const el = document.getElementById(id); return el ? el.value : ""; };
      return {township: v("f-township"), hazard: v("f-hazard"), level: v("f-level")};
    },
    warningMatches(w, f) {
      if (f.hazard && w.hazard !== f.hazard) return false;
      if (f.level && w.level !== f.level) return false;
      if (f.township && w.township !== f.township) return false;
      return true;
    },
    card(w) {
      const p = w.progress || {};
      const place = w.site_name || (Y.sites.get(w.site) || {}).name || w.area_name || Y.areas[w.area] || w.site || w.area;
      const ev = (w.evidence || [])[0] || "";
      return `<a class="wcard ${Y.esc(w.level)}${w.drill ? " drill" : ""}" href="/warnings/${encodeURIComponent(w.key)}" data-key="${Y.esc(w.key)}" data-level="${Y.esc(w.level)}">
        <span class="wlevel">${Y.esc(Y.level(w.level))}</span>
        <span class="wbody"><b class="wt">${Y.esc(w.title || Y.hazard(w.hazard))}</b>
        <span class="wplace">${Y.esc(place)} · ${Y.esc(Y.stateWord(w.state))} ${Y.esc(w.updated_local || "")}</span>
        <span class="wev">${Y.esc(ev)}</span>
        <span class="wprog"><span>${Y.esc(T.told)} <b class="n-told">${p.told || 0}</b></span>
          <span>${Y.esc(T.delivered)} <b>${p.delivered || 0}</b></span>
          <span>${Y.esc(T.confirmed)} <b class="n-confirmed">${p.confirmed || 0}</b></span>
          <span class="${(p.unconfirmed || []).length ? "warn" : ""}">${Y.esc(T.unconfirmed)} <b>${(p.unconfirmed || []).length}</b></span>
          ${p.failed ? `<span class="warn">${Y.esc(T.failed)} <b>${p.failed}</b></span>` : ""}</span></span></a>`;
    },
    renderList(el) {
      const f = Y.filters();
      const ws = [...Y.warnings.values()].filter((w) => Y.warningMatches(w, f))
        .sort((a, b) => (Y.sev(b.level) - Y.sev(a.level)) || (b.updated_at < a.updated_at ? -1 : 1));
      el.innerHTML = ws.length ? ws.map(Y.card).join("") : `<p class="empty">${Y.esc(T.no_warnings)}</p>`;
    },
    sev(lv) { return {blue: 1, yellow: 2, orange: 3, red: 4}[lv] || 0; },
    meta(name) { const m = document.querySelector(`meta[name="${name}"]`); return m ? m.content : ""; },
    canWrite() { return ["operator", "admin"].includes(Y.meta("role")); },
    /* The duty office's API; every write carries the session's CSRF token. */
    async api(method, path, body) {
      const headers = {"Content-Type": "application/json"};
      if (method !== "GET") headers["X-CSRF-Token"] = Y.meta("csrf");
      const r = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
      return {status: r.status, body: await r.json().catch(() => ({}))};
    },
    errorText(res) { return T["error_" + (res.body.error || "")] || res.body.detail || String(res.status); },
    /* Nothing goes to people before the duty officer says yes: every action opens this dialog first. */
    ask(title, html) {
      const dlg = document.getElementById("ask");
      document.getElementById("ask-title").textContent = title;
      document.getElementById("ask-body").innerHTML = html || "";
      document.getElementById("ask-error").textContent = "";
      dlg.returnValue = "";
      dlg.showModal();
      return new Promise((resolve) => dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), {once: true}));
    },
    /* ask, then do; the answer (or the refusal) is said in a toast */
    async act(title, html, call) {
      if (!(await Y.ask(title, html))) return null;
      const res = await call(new FormData(document.querySelector("#ask form")));
      Y.toast(res.status < 300 ? T.done : Y.errorText(res), res.status >= 300);
      return res;
    },
    toast(text, bad) {
      const t = document.getElementById("toast");
      t.textContent = text; t.className = "toast show" + (bad ? " bad" : "");
      clearTimeout(Y._toast); Y._toast = setTimeout(() => { t.className = "toast"; }, 4000);
    },
  };
  const out = document.getElementById("logout");
  if (out) out.addEventListener("click", async () => { await Y.api("POST", "/api/v1/logout", {}); location.href = "/login"; });
  setInterval(() => { const c = document.getElementById("clock"); if (c) c.textContent = new Date().toLocaleTimeString("zh-CN", {hour12: false, timeZone: "Asia/Shanghai"}); }, 1000);
  return Y;
})();
