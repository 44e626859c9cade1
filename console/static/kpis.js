// Draws the metric chart with uPlot from the JSON the page carries; the table holds the same figures.
document.addEventListener("DOMContentLoaded", function () {
  var holder = document.getElementById("metric-chart");
  var data = document.getElementById("metric-chart-data");
  if (!holder || !data || typeof uPlot === "undefined") return;
  var chart = JSON.parse(data.textContent);
  var xs = chart.labels.map(function (d) { return Date.parse(d) / 1000; });
  var colors = ["#0b5cad", "#b42318", "#1a7f37", "#8a5a00", "#6f42c1", "#0e7490", "#9d174d"];
  var series = [{}].concat(chart.series.map(function (s, i) {
    return { label: s.name, stroke: colors[i % colors.length], width: 2 };
  }));
  var opts = { width: Math.max(300, holder.clientWidth), height: 260, series: series,
    axes: [{}, { size: 80 }] };
  var plot = new uPlot(opts, [xs].concat(chart.series.map(function (s) { return s.values; })), holder);
  holder.setAttribute("data-drawn", "1");
  window.addEventListener("resize", function () { plot.setSize({ width: Math.max(300, holder.clientWidth), height: 260 }); });
});
