// Several runs' curves overlaid: a smoothing control, runs that differ only by seed drawn as one mean line with a
// band (min-max or mean ± std), and the table of the values that differ. The URL holds the runs and the controls,
// so a comparison can be sent; new epochs of running runs come in without losing the zoom.
"use strict";

(() => {
  const {el, setText} = DL;
  const params = new URLSearchParams(location.search);
  const ids = (params.get("runs") || "").split(",").filter(Boolean);
  const controls = {
    metric: document.getElementById("metric"), smooth: document.getElementById("smooth"),
    groups: document.getElementById("groups"), band: document.getElementById("band"),
  };
  controls.metric.value = params.get("metric") || "val_accuracy";
  controls.smooth.value = params.get("smooth") || "0";
  controls.groups.checked = params.get("groups") === "1";
  controls.band.value = params.get("band") || "minmax";
  let last = null, chart = null, shape = "";

  function remember() {
    const p = new URLSearchParams({runs: ids.join(","), metric: controls.metric.value});
    if (+controls.smooth.value) p.set("smooth", controls.smooth.value);
    if (controls.groups.checked) p.set("groups", "1");
    if (controls.band.value !== "minmax") p.set("band", controls.band.value);
    history.replaceState(null, "", "/compare?" + p.toString());
    document.getElementById("back").href = "/?sel=" + ids.map(encodeURIComponent).join(",");
  }

  function draw() {
    if (!last) return;
    const metric = controls.metric.value, weight = +controls.smooth.value;
    setText(document.getElementById("smooth-value"), weight.toFixed(2));
    const length = Math.max(0, ...last.runs.map(r => r.metrics.epoch.length));
    const x = Array.from({length}, (_, i) => i + 1);
    const curve = r => {
      const values = r.metrics[metric] || [];
      return smoothed(x.map((_, i) => values[i] ?? null), weight);
    };
    const series = [], data = [x], bands = [];
    if (controls.groups.checked) {
      const groups = new Map();
      for (const r of last.runs) {
        if (!groups.has(r.group)) groups.set(r.group, []);
        groups.get(r.group).push(r);
      }
      [...groups].forEach(([label, members], g) => {
        const color = Charts.color(g);
        const {mean, lo, hi} = Charts.band(members.map(curve), length, controls.band.value);
        series.push({label: `${label} (${members.length} run${members.length > 1 ? "s" : ""})`, color, width: 2});
        data.push(mean);
        if (members.length > 1) {
          series.push({label: label + " high", color: Charts.fade(color, 0.35), width: 0.5, points: false, hidden: true});
          series.push({label: label + " low", color: Charts.fade(color, 0.35), width: 0.5, points: false, hidden: true});
          data.push(hi, lo);
          bands.push([data.length - 2, data.length - 1, Charts.fade(color, 0.15)]);
        }
      });
    } else {
      last.runs.forEach((r, i) => { series.push({label: r.label, color: Charts.color(i)}); data.push(curve(r)); });
    }
    const y = metric.endsWith("accuracy") ? "accuracy" : "loss";
    const signature = JSON.stringify([metric, series.map(s => s.label), bands.length, y]);
    if (signature !== shape) {
      shape = signature;
      chart = Charts.chart(document.getElementById("chart"), {title: controls.metric.selectedOptions[0].textContent,
                                                              y, series, bands, height: 340});
    }
    if (length) chart.update(data);
  }

  function smoothed(values, weight) { return Charts.smooth(values, weight); }

  // A run's colour: its own, or its group's when seeds are groups (as on the chart).
  function colors(answer) {
    if (!controls.groups.checked) return answer.runs.map((r, i) => Charts.color(i));
    const groups = [...new Set(answer.runs.map(r => r.group))];
    return answer.runs.map(r => Charts.color(groups.indexOf(r.group)));
  }

  function table(answer) {
    const head = document.querySelector("#table thead tr"), body = document.querySelector("#table tbody");
    const color = colors(answer);
    head.replaceChildren(el("th", {}, ""), ...answer.columns.map(c => el("th", {}, DL.title(c))));
    body.replaceChildren(...answer.runs.map((r, i) => {
      const tr = el("tr", {"data-run": r.row.name, "data-epochs": r.row.epochs_done ?? 0},
                    el("td", {}, el("span", {class: "swatch", style: `background:${color[i]}`})));
      for (const c of answer.columns) {
        tr.append(c === "name" ? el("td", {}, DL.runLink(r.row)) :
                  c === "status" ? el("td", {}, DL.statusBadge(r.row.status)) : el("td", {}, DL.cell(c, r.row)));
      }
      return tr;
    }));
  }

  function show(answer) {
    last = answer;
    setText(document.getElementById("title"), `Compare ${answer.runs.length} runs`);
    setText(document.getElementById("missing"), answer.missing.length
      ? "not among the runs shown: " + answer.missing.join(", ") : "");
    table(answer);
    draw();
  }

  for (const control of Object.values(controls)) {
    control.addEventListener("input", () => { remember(); draw(); if (last) table(last); });
  }
  remember();
  DL.poll(since => "/api/compare?" + new URLSearchParams(since === null ? {runs: ids.join(",")}
                                                                         : {runs: ids.join(","), since}), show);
})();
