// TinySphere dashboard: the only script. Live fragments and instant table search; every page works without it.
"use strict";

// <div data-live="URL" data-live-active="true" data-interval="2000">: refetched while the server says it is live.
function follow(region) {
  const interval = Number(region.dataset.interval || 2000);
  const tick = async () => {
    try {
      const answer = await fetch(region.dataset.live, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}});
      if (answer.status === 401) {  // session ended: sign in again, then come back here
        window.location.assign("/ui/login?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      if (answer.ok) {
        const html = await answer.text();
        if (html !== region.dataset.lastHtml) {  // untouched when nothing changed, so keyboard focus stays put
          region.dataset.lastHtml = html;
          region.innerHTML = html;
        }
        const state = region.querySelector("[data-state]");
        if (state && !["running", "paused"].includes(state.dataset.state)) {
          region.dataset.liveActive = "false";
        }
      }
    } catch (error) {
      // the server is briefly unreachable: try again on the next tick
    }
    if (region.dataset.liveActive === "true") {
      window.setTimeout(tick, interval);
    }
  };
  if (region.dataset.liveActive === "true") {
    window.setTimeout(tick, interval);
  }
}

// <input data-filter-table="ID">: hides the table's rows that do not contain what was typed.
function filterTable(input) {
  const table = document.getElementById(input.dataset.filterTable);
  const shown = document.getElementById("shown");
  if (!table) return;
  input.addEventListener("input", () => {
    const needle = input.value.trim().toLowerCase();
    let count = 0;
    for (const row of table.tBodies[0].rows) {
      const match = !needle || row.textContent.toLowerCase().includes(needle);
      row.hidden = !match;
      if (match) count += 1;
    }
    if (shown) shown.textContent = String(count);
  });
}

// Links from an error summary to a field put the keyboard focus in that field.
function focusOnFollow(link) {
  link.addEventListener("click", (event) => {
    const target = document.getElementById(link.getAttribute("href").slice(1));
    if (target) {
      event.preventDefault();
      target.scrollIntoView({block: "center"});
      target.focus();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(follow);
  document.querySelectorAll(".error a[href^='#']").forEach(focusOnFollow);
  document.querySelectorAll("[data-filter-table]").forEach(filterTable);
});
