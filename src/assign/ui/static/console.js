// Assign console: live Overview (pause/resume), the throughput charts, "Select all matching".
// No inline code and no eval: the page's Content-Security-Policy allows scripts from Assign only.
(function () {
  "use strict";
  var paused = false;
  var charts = [];

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // [{minute, key, completed, failed}, ...] -> one point per minute of the last hour
  function series(rows) {
    var now = Math.floor(Date.now() / 60000) * 60;
    var byMinute = {};
    rows.forEach(function (r) {
      var t = Math.floor(Date.parse(r.minute) / 1000);
      var slot = byMinute[t] || (byMinute[t] = [0, 0]);
      slot[0] += r.completed || 0;
      slot[1] += r.failed || 0;
    });
    var xs = [], done = [], failed = [];
    for (var t = now - 59 * 60; t <= now; t += 60) {
      var slot = byMinute[t] || [0, 0];
      xs.push(t); done.push(slot[0]); failed.push(slot[1]);
    }
    return [xs, done, failed];
  }

  function drawCharts(root) {
    if (typeof uPlot === "undefined") return;
    charts = charts.filter(function (c) {
      if (document.body.contains(c.root)) return true;
      c.destroy();
      return false;
    });
    (root || document).querySelectorAll("[data-chart]").forEach(function (el) {
      var source = el.parentNode.querySelector("[data-chart-data]");
      var rows = source ? JSON.parse(source.textContent || "[]") : [];
      el.textContent = "";
      var axis = { stroke: css("--muted"), grid: { stroke: css("--line") }, ticks: { stroke: css("--line") } };
      var chart = new uPlot({
        width: Math.max(300, el.clientWidth || 600),
        height: 220,
        // UTC, like every time the console shows
        tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
        series: [
          {},
          { label: "completed", stroke: css("--ok"), width: 2, points: { show: false } },
          { label: "failed", stroke: css("--bad"), width: 2, points: { show: false } }
        ],
        axes: [axis, axis],
        scales: { y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } }
      }, series(rows), el);
      charts.push(chart);
    });
  }

  function setPaused(value) {
    paused = value;
    var button = document.querySelector("[data-live-toggle]");
    var state = document.getElementById("live-state");
    if (button) {
      button.textContent = paused ? "Resume updates" : "Pause updates";
      button.setAttribute("aria-pressed", paused ? "true" : "false");
    }
    if (state) state.textContent = paused ? "Updates paused" : "Updating every 5 s";
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    var button = document.querySelector("[data-live-toggle]");
    if (button) button.addEventListener("click", function () { setPaused(!paused); });
    var all = document.querySelector("[data-select-all]");
    if (all) {
      all.addEventListener("change", function () {
        document.querySelectorAll('input[name="link_id"]').forEach(function (box) {
          box.checked = all.checked;
          box.disabled = all.checked;
        });
      });
    }
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (paused && event.target && event.target.id === "live") event.preventDefault();
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target && event.target.id === "live") drawCharts(event.target);
  });
})();
