// Draws the metric chart with uPlot from the JSON the page carries; the table holds the same figures.
// A bucket still running (the current month) is drawn dashed, as its own series, so nobody reads a
// month to date as a fall: at its value projected to the whole month for a metric that adds up
// (chart.mode "projected"), else at its value so far ("month to date"). The legend says which.
document.addEventListener("DOMContentLoaded", function () {
  var holder = document.getElementById("metric-chart");
  var data = document.getElementById("metric-chart-data");
  if (!holder || !data || typeof uPlot === "undefined") return;
  var chart = JSON.parse(data.textContent);
  var xs = chart.labels.map(function (d) { return Date.parse(d) / 1000; });
  var partial = chart.partial || [];
  var colors = ["#0b5cad", "#b42318", "#1a7f37", "#8a5a00", "#6f42c1", "#0e7490", "#9d174d"];
  var series = [{}], columns = [xs], dashed = 0;
  chart.series.forEach(function (s, i) {
    var color = colors[i % colors.length];
    // Solid: the complete buckets. Dashed: from the last complete bucket to each running one.
    var solid = s.values.map(function (v, j) { return partial[j] ? null : v; });
    var ahead = s.projected || [];
    var running = s.values.map(function (v, j) {
      if (partial[j]) return ahead[j] === undefined ? v : ahead[j];
      return partial[j + 1] ? v : null;
    });
    series.push({ label: s.name, stroke: color, width: 2 });
    columns.push(solid);
    if (partial.indexOf(true) >= 0) {
      series.push({ label: s.name + " (" + (chart.label || "so far") + ")", stroke: color, width: 2, dash: [6, 5] });
      columns.push(running);
      dashed += 1;
    }
  });
  var opts = { width: Math.max(300, holder.clientWidth), height: 260, series: series, axes: [{}, { size: 80 }] };
  var plot = new uPlot(opts, columns, holder);
  holder.setAttribute("data-drawn", "1");
  holder.setAttribute("data-dashed", String(dashed));
  window.addEventListener("resize", function () { plot.setSize({ width: Math.max(300, holder.clientWidth), height: 260 }); });
});
