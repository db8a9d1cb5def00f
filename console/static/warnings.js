"use strict";
(() => {
  const list = document.getElementById("warnlist");
  const draw = () => Y.renderList(list);
  Y.on("loaded", draw); Y.on("warning", draw); Y.on("progress", draw);
  document.getElementById("filters").addEventListener("change", draw);
  const open = document.getElementById("issue-open");
  if (open) open.addEventListener("click", async () => {
    const T = Y.T, E = Y.esc;
    const body = document.getElementById("issue-form").innerHTML;
    const dlg = Y.ask(T.issue, body);
    // villages follow the township chosen
    const town = document.querySelector("#ask .i-township"), vil = document.querySelector("#ask .i-village");
    const follow = () => {
      let first = null;
      for (const o of vil.options) { o.hidden = o.dataset.township !== town.value; if (!o.hidden && !first) first = o; }
      if (first) vil.value = first.value;
    };
    town.addEventListener("change", follow); follow();
    if (!(await dlg)) return;
    const f = new FormData(document.querySelector("#ask form"));
    const w = {hazard: f.get("hazard"), level: f.get("level"), area: f.get("area"), title: f.get("title"),
               text: f.get("text") || "", expires_in_s: Number(f.get("hours")) * 3600};
    const place = vil.options[vil.selectedIndex].textContent;
    const res = await Y.act(T.issue, `<p>${E(T.ask_issue)}</p><p><b>${E(place)}</b> · ${E(Y.hazard(w.hazard))}
      <span class="badge ${E(w.level)}">${E(Y.level(w.level))}</span></p><p>${E(w.title)}</p>`,
      () => Y.api("POST", "/api/v1/warnings", w));
    if (res && res.status === 201) location.href = "/warnings/" + encodeURIComponent(res.body.key);
  });
  Y.autoload = true;
  Y.connect();
})();
