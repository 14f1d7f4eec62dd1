// Chart crosshair and tooltip for the server-rendered time charts (llm_monitor_mw/web/charts.py).
// Each chart (.tchart) carries its buckets' times and every series' formatted values as JSON in data-chart; this
// script only shows them: a vertical line at the bucket under the pointer (or finger, or the arrow keys when the
// plot has focus) and a tooltip listing the time and each series. Listeners are on the document, so charts
// swapped in by htmx every 10 s work without rebinding. Without this script the SVG <title> of each bucket is the
// tooltip. No inline styles are written into markup: positions are set through the CSSOM, which the CSP allows.
(function () {
  "use strict";
  var cache = typeof WeakMap === "function" ? new WeakMap() : null;
  var active = null; // the .tchart-plot showing a tooltip
  var last = null; // the last pointer position, to restore the tooltip after an htmx swap

  document.documentElement.classList.add("charts-js");

  function dataOf(chart) {
    if (cache && cache.has(chart)) return cache.get(chart);
    var data = null;
    try {
      data = JSON.parse(chart.getAttribute("data-chart") || "null");
    } catch (e) {
      data = null;
    }
    if (!data || !data.times || !data.times.length) data = null;
    if (cache) cache.set(chart, data);
    return data;
  }

  function tipOf(chart) {
    var tip = chart.querySelector(":scope > .chart-tip");
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "chart-tip";
      tip.setAttribute("role", "status");
      tip.setAttribute("aria-live", "polite");
      tip.hidden = true;
      chart.appendChild(tip);
    }
    return tip;
  }

  function fill(tip, data, index) {
    while (tip.firstChild) tip.removeChild(tip.firstChild);
    var time = document.createElement("div");
    time.className = "chart-tip-time";
    time.textContent = data.times[index];
    tip.appendChild(time);
    data.series.forEach(function (s) {
      var row = document.createElement("div");
      row.className = "chart-tip-row";
      var swatch = document.createElement("span");
      swatch.className = "swatch " + s.css;
      var name = document.createElement("span");
      name.className = "chart-tip-name";
      name.textContent = s.name;
      var value = document.createElement("span");
      value.className = "chart-tip-value";
      value.textContent = s.values[index] === undefined ? "—" : s.values[index];
      row.appendChild(swatch);
      row.appendChild(name);
      row.appendChild(value);
      tip.appendChild(row);
    });
  }

  function show(plot, index) {
    var chart = plot.closest(".tchart");
    var data = chart && dataOf(chart);
    if (!data) return;
    var n = data.times.length;
    index = Math.max(0, Math.min(n - 1, index));
    if (active && active !== plot) hide();
    active = plot;
    plot.setAttribute("data-index", String(index));
    var cross = plot.querySelector(".tchart-cross");
    var centre = ((index + 0.5) / n) * 100;
    if (cross) {
      cross.style.left = centre + "%";
      cross.hidden = false;
    }
    var tip = tipOf(chart);
    fill(tip, data, index);
    tip.hidden = false;
    var chartBox = chart.getBoundingClientRect();
    var plotBox = plot.getBoundingClientRect();
    var x = plotBox.left - chartBox.left + (plotBox.width * centre) / 100;
    var width = tip.offsetWidth;
    var left = x + 12;
    if (left + width > chartBox.width) left = Math.max(0, x - 12 - width);
    tip.style.left = left + "px";
  }

  function hide() {
    if (!active) return;
    var cross = active.querySelector(".tchart-cross");
    if (cross) cross.hidden = true;
    var chart = active.closest(".tchart");
    var tip = chart && chart.querySelector(":scope > .chart-tip");
    if (tip) tip.hidden = true;
    active = null;
  }

  function indexAt(plot, clientX) {
    var chart = plot.closest(".tchart");
    var data = chart && dataOf(chart);
    if (!data) return -1;
    var box = plot.getBoundingClientRect();
    if (box.width <= 0) return -1;
    return Math.floor(((clientX - box.left) / box.width) * data.times.length);
  }

  function atPointer(target, clientX) {
    var plot = target && target.closest ? target.closest(".tchart-plot") : null;
    if (!plot) {
      if (active && active !== document.activeElement) hide();
      return;
    }
    var index = indexAt(plot, clientX);
    if (index >= 0) show(plot, index);
  }

  document.addEventListener("pointermove", function (event) {
    last = { x: event.clientX, y: event.clientY };
    atPointer(event.target, event.clientX);
  });
  document.addEventListener("pointerdown", function (event) {
    last = { x: event.clientX, y: event.clientY };
    atPointer(event.target, event.clientX);
  });
  document.addEventListener("pointerout", function (event) {
    var plot = event.target && event.target.closest ? event.target.closest(".tchart-plot") : null;
    if (plot && plot === active && !plot.contains(event.relatedTarget) && plot !== document.activeElement) {
      last = null;
      hide();
    }
  });

  document.addEventListener("focusin", function (event) {
    var plot = event.target;
    if (!plot.classList || !plot.classList.contains("tchart-plot")) return;
    var chart = plot.closest(".tchart");
    var data = chart && dataOf(chart);
    if (!data) return;
    var current = parseInt(plot.getAttribute("data-index"), 10);
    show(plot, isNaN(current) ? data.times.length - 1 : current);
  });
  document.addEventListener("focusout", function (event) {
    if (event.target === active) hide();
  });
  document.addEventListener("keydown", function (event) {
    var plot = event.target;
    if (!plot.classList || !plot.classList.contains("tchart-plot")) return;
    var chart = plot.closest(".tchart");
    var data = chart && dataOf(chart);
    if (!data) return;
    var n = data.times.length;
    var current = parseInt(plot.getAttribute("data-index"), 10);
    if (isNaN(current)) current = n - 1;
    var next = null;
    if (event.key === "ArrowLeft") next = current - 1;
    else if (event.key === "ArrowRight") next = current + 1;
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = n - 1;
    else if (event.key === "Escape") {
      hide();
      return;
    }
    if (next === null) return;
    event.preventDefault();
    show(plot, next);
  });

  // A region swap replaces the chart under a resting pointer: show the new chart's values at the same place.
  document.addEventListener("htmx:afterSwap", function () {
    if (active && !document.body.contains(active)) active = null;
    if (!last) return;
    var target = document.elementFromPoint(last.x, last.y);
    if (target && target.closest && target.closest(".tchart-plot")) atPointer(target, last.x);
  });
})();
