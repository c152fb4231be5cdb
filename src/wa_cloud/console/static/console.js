// wa-cloud console: live regions over Server-Sent Events, and a few conveniences.
// No framework. A region is any element with data-live="<kinds>" and data-src="<url>";
// when the stream reports a change of one of its kinds (for its data-number, if it names
// one), its content is fetched again from data-src and replaced. Everything else is plain
// HTML forms, which work without this file.
"use strict";

(function () {
  const THROTTLE_MS = 250;
  const pending = new Map();

  function regions() {
    return Array.from(document.querySelectorAll("[data-live][data-src]"));
  }

  function matches(region, kind, number) {
    if (kind === "refresh") return true;
    const kinds = region.dataset.live.split(/\s+/);
    if (!kinds.includes(kind)) return false;
    const wanted = region.dataset.number;
    return !wanted || !number || wanted === number;
  }

  async function refresh(region) {
    const url = region.dataset.src;
    try {
      const response = await fetch(url, {
        credentials: "same-origin",
        headers: { "x-console-fragment": "1" },
      });
      if (response.status === 401) {
        window.location.reload();
        return;
      }
      if (!response.ok) return;
      const html = await response.text();
      const stick = region.dataset.stick === "bottom" && nearBottom(region);
      const focused = region.contains(document.activeElement) ? document.activeElement.id : null;
      region.innerHTML = html;
      if (focused) {
        const again = document.getElementById(focused);
        if (again) again.focus();
      }
      if (stick) region.scrollTop = region.scrollHeight;
      region.dispatchEvent(new CustomEvent("console:refreshed", { bubbles: true }));
    } catch (error) {
      // The next change or the stream's reconnection refreshes it again.
    }
  }

  function schedule(region) {
    if (pending.has(region)) return;
    pending.set(region, setTimeout(function () {
      pending.delete(region);
      refresh(region);
    }, THROTTLE_MS));
  }

  function nearBottom(element) {
    return element.scrollHeight - element.scrollTop - element.clientHeight < 80;
  }

  function listen() {
    if (!regions().length || !window.EventSource) return;
    const stream = new EventSource("/console/live");
    ["message", "contact", "number", "refresh"].forEach(function (kind) {
      stream.addEventListener(kind, function (event) {
        regions().forEach(function (region) {
          if (matches(region, kind, event.data)) schedule(region);
        });
      });
    });
    document.documentElement.dataset.live = "connecting";
    stream.addEventListener("open", function () {
      document.documentElement.dataset.live = "open";
    });
    stream.addEventListener("error", function () {
      document.documentElement.dataset.live = "reconnecting";
    });
  }

  function confirmations() {
    document.addEventListener("submit", function (event) {
      const message = event.target.dataset && event.target.dataset.confirm;
      if (message && !window.confirm(message)) event.preventDefault();
    });
  }

  function autosubmit() {
    document.querySelectorAll("[data-autosubmit]").forEach(function (field) {
      field.addEventListener("change", function () {
        if (field.form) field.form.requestSubmit();
      });
    });
  }

  function stickToBottom() {
    document.querySelectorAll("[data-stick=bottom]").forEach(function (element) {
      element.scrollTop = element.scrollHeight;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    stickToBottom();
    confirmations();
    autosubmit();
    listen();
  });
})();
