"use strict";
(() => {
  const form = document.getElementById("login");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = document.getElementById("login-error");
    err.textContent = "";
    const r = await fetch("/api/v1/login", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({username: form.username.value, password: form.password.value})});
    if (r.ok) { location.href = form.dataset.next || "/"; return; }
    const b = await r.json().catch(() => ({}));
    err.textContent = Y.T["error_" + (b.error || "")] || b.detail || r.status;
  });
})();
