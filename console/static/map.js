/* The county on one map: every site a dot coloured by its level, grey when silent; filters; the warnings beside. */
"use strict";
(() => {
  const COLOURS = {blue: "#2563eb", yellow: "#eab308", orange: "#f97316", red: "#dc2626"};
  const el = document.getElementById("map");
  const cfg = JSON.parse(el.dataset.config || "{}");
  const map = L.map(el, {preferCanvas: true, zoomSnap: 0.25, attributionControl: !!cfg.tiles});
  if (cfg.tiles) L.tileLayer(cfg.tiles, {attribution: cfg.attribution || "", maxZoom: 18}).addTo(map);
  if (cfg.boundaries) {
    fetch("/console/boundaries.geojson").then((r) => r.json()).then((g) => {
      L.geoJSON(g, {style: {color: "#64748b", weight: 1, fill: false}, interactive: false}).addTo(map).bringToBack();
    });
  }
  const layer = L.layerGroup().addTo(map);
  const markers = new Map();
  const list = document.getElementById("warnlist");

  // dots grow with the screen: a wall screen across the room, a phone in the hand
  const K = Math.max(1, Math.min(2.5, window.innerWidth / 1600));
  function style(id) {
    const st = Y.states[id] || {};
    const s = styleOf(st);
    s.radius *= K;
    return s;
  }
  function styleOf(st) {
    if (st.silent) return {radius: 5, color: "#6b7280", fillColor: "#9ca3af", fillOpacity: 0.9, weight: 1};
    if (st.level) return {radius: 8, color: "#111827", fillColor: COLOURS[st.level], fillOpacity: 0.95, weight: 1.5};
    return {radius: 4, color: "#166534", fillColor: "#4ade80", fillOpacity: 0.8, weight: 1};
  }
  function visible(site, f) {
    const st = Y.states[site.id] || {};
    if (f.township && site.township !== f.township) return false;
    if (f.level === "silent") { if (!st.silent) return false; }
    else if (f.level && st.level !== f.level) return false;
    if (f.hazard && !(st.hazards || []).includes(f.hazard)) return false;
    return true;
  }
  function applyFilters() {
    const f = Y.filters();
    let n = 0;
    for (const [id, m] of markers) {
      const show = visible(Y.sites.get(id), f);
      if (show) { n++; if (!layer.hasLayer(m)) layer.addLayer(m); } else if (layer.hasLayer(m)) layer.removeLayer(m);
    }
    document.getElementById("nsites").textContent = n;
    Y.renderList(list);
  }
  function restyle(ids) {
    for (const id of ids) {
      const m = markers.get(id);
      if (!m) continue;
      m.setStyle(style(id)); m.setRadius(style(id).radius);
      if ((Y.states[id] || {}).level) m.bringToFront();
    }
  }
  Y.on("loaded", () => {
    layer.clearLayers(); markers.clear();
    const pts = [];
    for (const s of Y.sites.values()) {
      if (s.lat == null || s.lon == null) continue;
      const m = L.circleMarker([s.lat, s.lon], style(s.id));
      m.bindPopup(() => {
        const st = Y.states[s.id] || {};
        return `<b>${Y.esc(s.name)}</b><br>${Y.esc(s.id)} · ${Y.esc(st.silent ? Y.T.silent : Y.level(st.level))}<br><a href="/sites/${encodeURIComponent(s.id)}">→</a>`;
      });
      markers.set(s.id, m);
      pts.push([s.lat, s.lon]);
    }
    if (pts.length && !map._loaded) map.fitBounds(pts, {padding: [20, 20]});
    else if (!map._loaded) map.setView([30.3, 108.0], 9);
    applyFilters();
    restyle([...markers.keys()].filter((id) => (Y.states[id] || {}).level));
  });
  Y.on("sites", (changed) => { restyle(Object.keys(changed)); applyFilters(); });
  Y.on("warning", () => Y.renderList(list));
  Y.on("progress", () => Y.renderList(list));
  document.getElementById("filters").addEventListener("change", applyFilters);
  window.yujingMap = {map, markers, visibleCount: () => layer.getLayers().length};
  Y.autoload = true;
  Y.connect();
})();
