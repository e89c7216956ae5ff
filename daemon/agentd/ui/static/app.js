// agentd ui: live refresh and the theme switch. No framework, nothing fetched from elsewhere.
"use strict";

(function theme() {
  const root = document.documentElement;
  const saved = localStorage.getItem("agentd-theme");
  if (saved) root.dataset.theme = saved;
  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme");
    if (!button) return;
    button.addEventListener("click", () => {
      const dark = root.dataset.theme
        ? root.dataset.theme === "dark"
        : matchMedia("(prefers-color-scheme: dark)").matches;
      root.dataset.theme = dark ? "light" : "dark";
      localStorage.setItem("agentd-theme", root.dataset.theme);
    });
  });
})();

// Filters apply as soon as a picker changes (the search box on Enter, as any form).
document.addEventListener("change", (event) => {
  if (event.target.matches(".filters select")) event.target.form.requestSubmit();
});

// Live: the server sends `change` when agentd stored something; the page re-renders its live
// region from the same URL (the server answers X-Fragment requests with that region only).
(function live() {
  const region = () => document.getElementById("live");
  const status = () => document.getElementById("conn");
  let busy = false;
  let again = false;

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch(location.href, { headers: { "X-Fragment": "1" }, cache: "no-store" });
      if (response.ok) {
        const html = await response.text();
        const target = region();
        if (target && target.innerHTML !== html) {
          target.innerHTML = html;
          document.body.dataset.refreshed = String(Date.now());
        }
      }
    } catch (_) {
      // The server went away: the event stream reconnects and refreshes again.
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  function connect() {
    const source = new EventSource("/api/live");
    const setState = (on) => {
      const el = status();
      if (!el) return;
      el.classList.toggle("on", on);
      el.querySelector(".conn-text").textContent = on ? "live" : "reconnecting";
    };
    let first = true;
    source.addEventListener("hello", () => {
      setState(true);
      if (!first) refresh(); // reconnected: catch up on what was missed
      first = false;
    });
    source.addEventListener("change", refresh);
    source.onerror = () => setState(false);
  }

  document.addEventListener("DOMContentLoaded", () => { if (region()) connect(); });
})();
