// Draws the integration graph with cytoscape; the weak spots are also listed in the page as text.
document.addEventListener("DOMContentLoaded", function () {
  var holder = document.getElementById("stack-graph");
  var data = document.getElementById("stack-graph-data");
  if (!holder || !data || typeof cytoscape === "undefined") return;
  var g = JSON.parse(data.textContent);
  var cy = cytoscape({
    container: holder,
    elements: g.nodes.concat(g.edges),
    layout: { name: "cose", animate: false, randomize: false },
    style: [
      { selector: "node", style: { label: "data(label)", "font-size": 10, "background-color": "#0b5cad", "text-valign": "bottom", color: "#1b1f24" } },
      { selector: "node[?spof]", style: { "border-width": 4, "border-color": "#b42318", "background-color": "#b42318" } },
      { selector: "node[?island]", style: { "border-width": 2, "border-style": "dashed", "border-color": "#57606a", "background-color": "#fff" } },
      { selector: "node[?orphan]", style: { "background-color": "#8a5a00" } },
      { selector: "edge", style: { width: 1.5, "line-color": "#8c959f", "target-arrow-shape": "triangle", "target-arrow-color": "#8c959f", "curve-style": "bezier" } }
    ]
  });
  holder.setAttribute("data-drawn", String(cy.nodes().length));
  window.addEventListener("resize", function () { cy.resize(); cy.fit(undefined, 20); });
});
