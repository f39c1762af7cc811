// A small SVG line chart for the dashboard (no dependencies, nothing fetched).
//   ttChart.line(element, {times: [ms...], series: [{label, values: [number|null...], color}], unit})
// draws one <svg> into `element` (replacing what was there): a path per series whose points are
// the non-null values, a y axis from 0 to the largest value, the time of the first and last sample.
// Every text is set with textContent, so labels are never parsed as markup.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  // The legend has a line of its own above the plot (LEGEND_Y), so a series at the axis' top is
  // never drawn under it.
  const W = 560, H = 180, PAD = {left: 52, right: 12, top: 28, bottom: 24}, LEGEND_Y = 15;

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, value, anchor) {
    const t = el("text", {x, y, "text-anchor": anchor || "start", "font-size": 11, fill: "#6b7585"}, parent);
    t.textContent = value;
    return t;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) { if (m * step >= v) return m * step; }
    return 10 * step;
  }

  function format(v, unit) {
    if (unit === "ms") return v >= 1000 ? (v / 1000).toFixed(1) + " s" : Math.round(v) + " ms";
    return Number.isInteger(v) || v >= 100 ? String(Math.round(v)) : v.toFixed(1);
  }

  function clock(ms) { return new Date(ms).toLocaleTimeString(); }

  function line(target, spec) {
    const times = spec.times || [], series = spec.series || [];
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", class: "chart"});
    const title = el("title", {}, svg);
    title.textContent = series.map(s => s.label).join(", ");
    const plotW = W - PAD.left - PAD.right, plotH = H - PAD.top - PAD.bottom;
    let top = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > top) top = v;
    top = niceMax(top);
    const t0 = times.length ? times[0] : 0, t1 = times.length ? times[times.length - 1] : 1;
    const x = t => PAD.left + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * plotW;
    const y = v => PAD.top + plotH - (v / top) * plotH;
    for (const f of [0, 0.5, 1]) {  // grid lines and y labels
      el("line", {x1: PAD.left, x2: W - PAD.right, y1: y(top * f), y2: y(top * f), stroke: "#e4e7ec"}, svg);
      text(svg, PAD.left - 6, y(top * f) + 4, format(top * f, spec.unit), "end");
    }
    if (times.length) {
      text(svg, PAD.left, H - 6, clock(t0));
      text(svg, W - PAD.right, H - 6, clock(t1), "end");
    } else {
      text(svg, PAD.left + plotW / 2, PAD.top + plotH / 2, "no samples yet", "middle");
    }
    series.forEach((s, i) => {
      const pts = [];
      s.values.forEach((v, j) => { if (v !== null && v !== undefined && j < times.length) pts.push([x(times[j]), y(v)]); });
      const d = pts.map(([px, py], j) => `${j ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join(" ");
      const path = el("path", {d: d || "M0,0", fill: "none", stroke: s.color || "#1b4a9e", "stroke-width": 1.8,
                               class: "series", "data-series": s.label, "data-points": pts.length}, svg);
      if (!d) path.setAttribute("visibility", "hidden");
      if (pts.length === 1) el("circle", {cx: pts[0][0], cy: pts[0][1], r: 3.5, fill: s.color || "#1b4a9e"}, svg);
      const legend = text(svg, PAD.left + 8 + i * 130, LEGEND_Y, "— " + s.label);
      legend.setAttribute("fill", s.color || "#1b4a9e");
    });
    target.replaceChildren(svg);
    return svg;
  }

  window.ttChart = {line};
})();
