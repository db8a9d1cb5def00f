/* The drills page: start a drill of a shipped scenario (asked first), watch it run, its report listed when done. */
"use strict";
(() => {
  const T = Y.T, E = Y.esc;
  const stateWord = (s) => ({running: T.drill_running, passed: T.passed, "not-passed": T.not_passed, failed: T.drill_failed}[s] || s);
  let seen = false;
  async function refresh() {
    const res = await Y.api("GET", "/console/drills.json");
    if (res.status !== 200) return;
    const d = res.body, sel = document.getElementById("d-scenario");
    if (sel && !seen) { sel.innerHTML = d.scenarios.map((s) => `<option value="${E(s)}">${E(s)}</option>`).join(""); seen = true; }
    document.querySelector("#d-runs tbody").innerHTML = d.runs.map((r) => `<tr data-run="${E(r.run)}" data-state="${E(r.state)}">
      <td>${E(r.scenario)} <small>${E(r.run)} · ${E(r.user)}</small></td><td class="d-state">${E(stateWord(r.state))}</td><td></td></tr>`).join("");
    document.querySelector("#d-reports tbody").innerHTML = d.reports.map((r) => `<tr data-run="${E(r.run)}">
      <td>${E(r.scenario)} <small>${E(r.run)} ${E(r.started_at.slice(0, 16))}</small></td>
      <td>${r.passed === null ? "-" : E(r.passed ? T.passed : T.not_passed)}</td>
      <td>${r.html ? `<a href="/console/reports/${encodeURIComponent(r.run)}/report.html">${E(T.open_report)}</a>` : ""}</td></tr>`).join("");
    const none = document.getElementById("d-no-reports");
    if (none) none.hidden = d.reports.length > 0;
  }
  const start = document.getElementById("d-start");
  if (start) start.addEventListener("click", async () => {
    const scenario = document.getElementById("d-scenario").value;
    await Y.act(T.start_drill, `<p>${E(T.ask_drill)}</p><p><b>${E(scenario)}</b></p>`,
      () => Y.api("POST", "/api/v1/drills", {scenario}));
    refresh();
  });
  refresh();
  setInterval(refresh, 1000);  // a drill's state is the child process's, not on the event stream
})();
