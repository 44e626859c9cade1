// The live SLA countdown: ticks a task's business time left without asking the server.
// Each .countdown[data-clock] carries {at, left, due, warn, open}: the server time it was rendered,
// the business seconds left then, the due and warning instants, and the calendar's opening intervals
// ([start, end] epoch seconds). Only the business time that passes is subtracted, so the count stands
// still outside opening hours; the badge turns amber at the warning and red at the due time.
(function () {
  "use strict";
  var SPOKEN = { on_track: "on track", warning: "warning: SLA nearly due", breached: "SLA breached" };

  function businessBetween(open, a, b) {
    var total = 0;
    for (var i = 0; i < open.length; i++) {
      var lo = Math.max(open[i][0], a), hi = Math.min(open[i][1], b);
      if (hi > lo) total += hi - lo;
    }
    return total;
  }

  function text(seconds) {
    var minutes = seconds >= 0 ? Math.floor(seconds / 60) : -Math.floor(-seconds / 60);
    var sign = minutes < 0 ? "\u2212" : "";
    var abs = Math.abs(minutes), hours = Math.floor(abs / 60), rest = abs % 60;
    return hours ? sign + hours + " h " + rest + " min" : sign + rest + " min";
  }

  function tick() {
    var nowClient = Date.now() / 1000;
    var clocks = document.querySelectorAll(".countdown[data-clock]");
    for (var i = 0; i < clocks.length; i++) {
      var el = clocks[i], raw = el.getAttribute("data-clock");
      if (!el._clock || el._clock.raw !== raw) {
        var c = JSON.parse(raw);
        // The browser's clock may differ from the server's: count from when the page got the figures.
        el._clock = { raw: raw, c: c, skew: nowClient - c.at > 0 && nowClient - c.at < 5 ? 0 : nowClient - c.at };
      }
      var d = el._clock.c, now = nowClient - el._clock.skew;
      var left = d.left - businessBetween(d.open, d.at, now);
      var state = now >= d.due ? "breached" : d.warn !== null && now >= d.warn ? "warning" : "on_track";
      var shown = text(left);
      if (el.textContent !== shown) el.textContent = shown;
      if (el.getAttribute("data-state") !== state) {
        el.classList.remove("sla-on_track", "sla-warning", "sla-breached");
        el.classList.add("sla-" + state);
        el.setAttribute("data-state", state);
        var spoken = el.nextElementSibling;
        if (spoken && spoken.classList.contains("sla-spoken")) spoken.textContent = SPOKEN[state];
      }
    }
  }

  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("htmx:afterSwap", tick);
  setInterval(tick, 1000);
})();
