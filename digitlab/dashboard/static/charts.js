// Curves drawn in the browser with uPlot (vendored in static/vendor with its licence): a chart that takes new data
// without losing the user's zoom (drag to zoom, double-click to see everything again), smoothing, and seed groups.
"use strict";

const Charts = (() => {
  const COLORS = ["#2f6fdb", "#d9480f", "#1a7f43", "#8a3ffc", "#c0362c", "#0f766e", "#b45309", "#be185d",
                  "#4d7c0f", "#1e40af", "#9d174d", "#57534e"];

  function color(i) { return COLORS[i % COLORS.length]; }

  function fade(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }

  // chart(box, {title, y: "accuracy" | "loss", series: [{label, color, dash, width}], bands: [[hi, lo, color]]})
  // -> {update(data)}; data is [epochs, ...one array per series], null where a series has no value.
  function chart(box, spec) {
    const holder = DL.el("div", {class: "plot"});
    box.replaceChildren(DL.el("h3", {}, spec.title), holder,
                        DL.el("div", {class: "hint"}, "drag to zoom, double-click to see all"));
    let plot = null, zoomed = false;
    const percent = spec.y === "accuracy";
    function options(width) {
      return {
        width, height: spec.height || 260,
        scales: {x: {time: false}, y: percent ? {range: (u, lo, hi) => [Math.max(0, lo - 0.02), Math.min(1, hi + 0.02)]}
                                              : {}},
        axes: [{label: "epoch", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]},
               {size: 62, values: (u, ticks) => ticks.map(t => percent ? (100 * t).toFixed(1) + "%"
                                                                                     : +t.toPrecision(3))}],
        series: [{label: "epoch"}, ...spec.series.map(s => ({
          label: s.label, stroke: s.color, width: s.width || 1.5, dash: s.dash, spanGaps: true,
          points: s.points === false ? {show: false} : {size: 4}, fill: s.fill,
          value: (u, v) => v === null || v === undefined ? "-" : percent ? (100 * v).toFixed(2) + "%" : v.toPrecision(4),
        }))],
        bands: (spec.bands || []).map(([hi, lo, c]) => ({series: [hi, lo], fill: c})),
        legend: {live: true},
        cursor: {drag: {x: true, y: false}},
        hooks: {setSelect: [u => { if (u.select.width > 0) zoomed = true; }]},
      };
    }
    holder.addEventListener("dblclick", () => { zoomed = false; });
    const width = () => Math.max(240, holder.clientWidth || box.clientWidth - 16 || 480);
    new ResizeObserver(() => { if (plot && Math.abs(plot.width - width()) > 2) plot.setSize({width: width(), height: plot.height}); })
      .observe(holder);
    const handle = {
      update(data) {
        if (!plot) {
          plot = new uPlot(options(width()), data, holder);
          // a band's edges are series of their own: out of the legend, which names the mean line
          spec.series.forEach((s, i) => {
            const entry = s.hidden && plot.root.querySelectorAll(".u-legend .u-series")[i + 1];
            if (entry) entry.style.display = "none";
          });
        }
        else plot.setData(data, !zoomed);
      },
      get zoomed() { return zoomed; },
      get plot() { return plot; },
    };
    (window.digitlab = window.digitlab || {charts: []}).charts.push(handle);  // for scripts and tests
    return handle;
  }

  // Exponential moving average with TensorBoard's debiasing, so the first epochs are not pulled towards zero.
  function smooth(values, weight) {
    if (!weight) return values.slice();
    let last = 0, n = 0;
    return values.map(v => {
      if (v === null || v === undefined || !isFinite(v)) return null;
      n += 1;
      last = last * weight + (1 - weight) * v;
      return last / (1 - Math.pow(weight, n));
    });
  }

  // Mean, and the band (min-max, or mean ± std) of several aligned arrays, epoch by epoch (nulls left out).
  function band(arrays, length, kind) {
    const mean = [], lo = [], hi = [];
    for (let i = 0; i < length; i++) {
      const vs = arrays.map(a => a[i]).filter(v => v !== null && v !== undefined && isFinite(v));
      if (!vs.length) { mean.push(null); lo.push(null); hi.push(null); continue; }
      const m = vs.reduce((a, b) => a + b, 0) / vs.length;
      mean.push(m);
      if (kind === "std") {
        const sd = Math.sqrt(vs.reduce((a, b) => a + (b - m) ** 2, 0) / vs.length);
        lo.push(m - sd); hi.push(m + sd);
      } else { lo.push(Math.min(...vs)); hi.push(Math.max(...vs)); }
    }
    return {mean, lo, hi};
  }

  return {chart, smooth, band, color, fade};
})();
