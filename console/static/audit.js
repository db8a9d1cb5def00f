"use strict";
(async () => {
  const r = await Y.api("GET", "/api/v1/audit?limit=200");
  const E = Y.esc;
  document.querySelector("#a-entries tbody").innerHTML = ((r.body || {}).entries || []).map((a) =>
    `<tr class="${a.result === "ok" ? "" : "st-offline"}"><td>${E(Y.time(a.at))}</td><td>${E(a.user)}</td><td>${E(Y.role(a.role))}</td><td>${E(a.action)}</td><td>${E(a.target)}</td><td>${E(a.result)}</td><td>${E(a.remote)}</td></tr>`).join("");
})();
