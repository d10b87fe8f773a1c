// grokmon report: the values of the checkpoint under the mouse (or picked with the arrow keys).
// Reads the JSON block #grokmon-hover written by grokmon/reporting/hover.py; fetches nothing.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("grokmon-hover").textContent);
  var box = document.getElementById("grokmon-figure");
  var image = box.querySelector("img");
  var marks = box.querySelector(".marks");
  var tip = box.querySelector(".tip");
  var SNAP = 0.05; // a checkpoint farther than this share of the panel's width from the mouse is not shown
  var shown = null;

  function format(value) {
    if (value === null || value === undefined) return "\u2013";
    var size = Math.abs(value);
    if (size !== 0 && (size >= 1e5 || size < 1e-3)) return value.toExponential(2);
    return String(Number(value.toPrecision(4)));
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function panelAt(fx, fy) {
    for (var k = 0; k < data.panels.length; k++) {
      var b = data.panels[k].box;
      if (fx >= b[0] && fx <= b[2] && fy >= b[1] && fy <= b[3]) return k;
    }
    return -1;
  }

  function nearest(run, u) {
    var best = -1, gap = Infinity;
    for (var i = 0; i < run.u.length; i++) {
      if (run.u[i] === null) continue;
      var d = Math.abs(run.u[i] - u);
      if (d < gap) { gap = d; best = i; }
    }
    return gap <= SNAP ? best : -1;
  }

  function hitsAt(u) {
    var hits = [];
    data.runs.forEach(function (run, r) {
      var i = nearest(run, u);
      if (i >= 0) hits.push({ run: r, index: i });
    });
    return hits;
  }

  function place(node, left, top, width, height) {
    node.style.left = (left * 100) + "%";
    node.style.top = (top * 100) + "%";
    if (width !== undefined) node.style.width = (width * 100) + "%";
    if (height !== undefined) node.style.height = (height * 100) + "%";
    marks.appendChild(node);
  }

  function drawMarks(hits) {
    marks.textContent = "";
    data.panels.forEach(function (panel, k) {
      var b = panel.box, w = b[2] - b[0], h = b[3] - b[1];
      hits.forEach(function (hit) {
        var run = data.runs[hit.run], x = b[0] + run.u[hit.index] * w;
        var rule = element("div", "rule");
        rule.style.borderColor = data.runs.length > 1 ? run.colour : "";
        place(rule, x, b[1], undefined, h);
        run.lines.forEach(function (line) {
          var v = line.v[hit.index];
          if (line.panel !== k || v === null) return;
          var dot = element("div", "dot");
          dot.style.background = line.colour;
          place(dot, x, b[3] - v * h);
        });
      });
    });
  }

  function mean(run, column, split, index) {
    var pair = run.values[column] && run.values[column][split];
    return pair ? pair[0][index] : null;
  }

  function valueTable(run, index, columns, highlight) {
    var splits = run.splits.filter(function (split) {
      return columns.some(function (column) { return mean(run, column, split, index) !== null; });
    });
    var table = element("table");
    var head = element("tr");
    head.appendChild(element("th", "", "metric"));
    splits.forEach(function (split) { head.appendChild(element("th", "", split)); });
    table.appendChild(head);
    columns.forEach(function (column) {
      var row = element("tr", column === highlight ? "here" : "");
      row.appendChild(element("td", "", column));
      splits.forEach(function (split) {
        var pair = run.values[column] && run.values[column][split];
        var value = mean(run, column, split, index), se = pair ? pair[1][index] : null;
        row.appendChild(element("td", "num", format(value) + (value !== null && se !== null ? " \u00b1 " + format(se) : "")));
      });
      table.appendChild(row);
    });
    return table;
  }

  function describe(panel, hits) {
    tip.textContent = "";
    var column = data.panels[panel].column;
    hits.forEach(function (hit) {
      var run = data.runs[hit.run], i = hit.index;
      var head = element("div", "tip-head");
      if (data.runs.length > 1) {
        var swatch = element("span", "swatch");
        swatch.style.background = run.colour;
        head.appendChild(swatch);
        head.appendChild(document.createTextNode(run.name + ": "));
      }
      head.appendChild(document.createTextNode("step " + run.steps[i] + (run.checkpoints[i] ? " \u00b7 " + run.checkpoints[i] : "")));
      tip.appendChild(head);
      var facts = [];
      if (run.phases[i]) facts.push("phase " + run.phases[i].split("_").join(" "));
      if (run.verdicts && run.verdicts[i]) facts.push("verdict then: " + run.verdicts[i]);
      if (facts.length) tip.appendChild(element("div", "tip-facts", facts.join(" \u00b7 ")));
      var columns = data.runs.length > 1 ? [column] : run.columns;
      tip.appendChild(valueTable(run, i, columns, column));
    });
  }

  function show(panel, hits, x, y) {
    shown = { panel: panel, hits: hits };
    drawMarks(hits);
    describe(panel, hits);
    tip.hidden = false;
    var width = box.clientWidth, gap = 18;
    var left = x + gap + tip.offsetWidth > width ? Math.max(0, x - gap - tip.offsetWidth) : x + gap;
    var top = Math.max(0, Math.min(y - 20, box.clientHeight - tip.offsetHeight));
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  }

  function hide() {
    shown = null;
    marks.textContent = "";
    tip.hidden = true;
  }

  box.addEventListener("pointermove", function (event) {
    var r = image.getBoundingClientRect();
    var fx = (event.clientX - r.left) / r.width, fy = (event.clientY - r.top) / r.height;
    var panel = panelAt(fx, fy);
    if (panel < 0) { hide(); return; }
    var b = data.panels[panel].box;
    var hits = hitsAt((fx - b[0]) / (b[2] - b[0]));
    if (!hits.length) { hide(); return; }
    show(panel, hits, event.clientX - r.left, event.clientY - r.top);
  });
  box.addEventListener("pointerleave", hide);
  box.addEventListener("keydown", function (event) {
    var move = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!move || !data.runs.length || !data.panels.length) {
      if (event.key === "Escape") hide();
      return;
    }
    event.preventDefault();
    var run = data.runs[0], panel = shown ? shown.panel : 0;
    var index = shown && shown.hits[0].run === 0 ? shown.hits[0].index + move : (move > 0 ? 0 : run.u.length - 1);
    index = Math.max(0, Math.min(run.u.length - 1, index));
    var hits = hitsAt(run.u[index]).filter(function (hit) { return hit.run !== 0; });
    hits.unshift({ run: 0, index: index });
    var b = data.panels[panel].box;
    show(panel, hits, (b[0] + run.u[index] * (b[2] - b[0])) * image.clientWidth, b[1] * image.clientHeight);
  });
})();
