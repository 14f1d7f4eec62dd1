// llm-monitor-mw dashboard: the few behaviours htmx attributes cannot express under a strict CSP (no eval).
// - Live toggle: pauses/resumes the regions that poll (`[data-poll]`, hx-trigger "every 10s, refresh-now");
//   the choice is kept in localStorage. Polls are also skipped while the tab is hidden.
// - Filter forms marked `data-autosubmit` submit when one of their <select>s changes.
// - Empty form fields are left out of htmx requests, so pushed URLs only carry the filters in use.
// - A banner reports failed htmx requests (e.g. a 400 for a bad filter) instead of failing silently.
(function () {
  "use strict";
  var KEY = "llm-monitor:live";

  function paused() {
    try {
      return window.localStorage.getItem(KEY) === "paused";
    } catch (e) {
      return false;
    }
  }

  function setPaused(value) {
    try {
      if (value) window.localStorage.setItem(KEY, "paused");
      else window.localStorage.removeItem(KEY);
    } catch (e) {
      /* storage unavailable: the toggle still works for this page */
    }
    render(value);
  }

  function render(isPaused) {
    var button = document.getElementById("live-toggle");
    if (!button) return;
    button.setAttribute("aria-pressed", isPaused ? "false" : "true");
    button.classList.toggle("paused", isPaused);
    button.title = isPaused ? "Auto-refresh paused; click to resume" : "Auto-refresh every 10 seconds; click to pause";
    var label = button.querySelector(".live-label");
    if (label) label.textContent = isPaused ? "Paused" : "Live";
  }

  function showBanner(text) {
    var banner = document.getElementById("banner");
    if (!banner) return;
    banner.textContent = text;
    banner.hidden = false;
  }

  function hideBanner() {
    var banner = document.getElementById("banner");
    if (banner) banner.hidden = true;
  }

  document.addEventListener("DOMContentLoaded", function () {
    render(paused());
    var button = document.getElementById("live-toggle");
    if (button) {
      button.addEventListener("click", function () {
        var nowPaused = !paused();
        setPaused(nowPaused);
        if (!nowPaused && window.htmx) {
          document.querySelectorAll("[data-poll]").forEach(function (el) {
            window.htmx.trigger(el, "refresh-now");
          });
        }
      });
    }
  });

  // Cancel polling requests while paused or while the tab is in the background.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    var polled = elt && elt.hasAttribute && elt.hasAttribute("data-poll");
    var requested = event.detail && event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    var manual = requested && requested.type === "refresh-now";
    if (polled && !manual && (paused() || document.hidden)) event.preventDefault();
  });

  document.addEventListener("htmx:configRequest", function (event) {
    var data = event.detail && event.detail.formData;
    if (!data || typeof data.keys !== "function") return;
    var empty = [];
    data.forEach(function (value, key) {
      if (value === "") empty.push(key);
    });
    empty.forEach(function (key) {
      data.delete(key);
    });
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.tagName === "SELECT" && target.form && target.form.hasAttribute("data-autosubmit")) {
      target.form.requestSubmit();
    }
  });

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail && event.detail.xhr;
    var status = xhr ? xhr.status : 0;
    var message = "Could not refresh (HTTP " + status + ").";
    if (xhr && status === 400) {
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var lead = doc.querySelector(".lead");
      if (lead) message = "Bad request: " + lead.textContent.trim();
    }
    showBanner(message);
  });

  document.addEventListener("htmx:sendError", function () {
    showBanner("The dashboard server did not answer; retrying on the next refresh.");
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail && event.detail.successful) hideBanner();
  });
})();
