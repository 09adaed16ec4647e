// A sweep: its points by state, parallel coordinates of the values it varies and the metric, the pruning rule's
// rungs (who stopped where, and why), and the progress of the invocation running; updated as the points train.
"use strict";

(() => {
  const {el, setText} = DL;
  const id = new URLSearchParams(location.search).get("id") || "";
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = {complete: "#1a7f43", running: "#2f6fdb", pruned: "#98a2b3", failed: "#c0362c", diverged: "#8a3ffc",
                  crashed: "#8f1d14", interrupted: "#c26a00", damaged: "#8b5e00", pending: "#d0d5dd"};

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // An axis per varied key and one for the metric: numbers on a linear (or, over a wide positive range, log) scale,
  // anything else as evenly spaced categories.
  function axis(name, values) {
    const known = values.filter(v => v !== null && v !== undefined);
    const numeric = known.length && known.every(v => typeof v === "number");
    if (numeric) {
      let lo = Math.min(...known), hi = Math.max(...known);
      const log = lo > 0 && hi / lo > 20;
      const f = log ? Math.log10 : (v => v);
      const a = f(lo), b = f(hi);
      const at = v => (v === null || v === undefined) ? null : (b === a ? 0.5 : (f(v) - a) / (b - a));
      const distinct = [...new Set(known)];
      const marks = distinct.length <= 8 && name !== "metric" ? distinct : [lo, hi];
      return {name, at, ticks: marks.map(v => [+v.toPrecision(4), at(v)])};
    }
    const categories = [...new Set(known.map(String))];
    const at = v => (v === null || v === undefined) ? null
      : categories.length === 1 ? 0.5 : categories.indexOf(String(v)) / (categories.length - 1);
    return {name, at, ticks: categories.map(c => [c, at(c)])};
  }

  function parallel(answer) {
    const box = document.getElementById("parallel");
    const width = Math.max(320, box.clientWidth || 800), height = 320, top = 28, bottom = 24, side = 50;
    const axes = answer.keys.map(k => axis(k, answer.points.map(p => p.values[k])));
    axes.push(Object.assign(axis("metric", answer.points.map(p => p.metric)), {name: answer.select}));
    const x = i => side + (axes.length === 1 ? 0 : i * (width - 2 * side) / (axes.length - 1));
    const y = t => top + (1 - t) * (height - top - bottom);
    const root = svg("svg", {class: "parallel", viewBox: `0 0 ${width} ${height}`, role: "img"});
    answer.points.forEach(p => {
      const ts = axes.map((a, i) => a.at(i < answer.keys.length ? p.values[answer.keys[i]] : p.metric));
      let d = "";
      ts.forEach((t, i) => { if (t !== null) d += (d && ts[i - 1] !== null ? " L" : " M") + x(i) + " " + y(t); });
      const line = svg("path", {class: "point", d: d.trim(), stroke: COLORS[p.state] || "#667085",
                                "data-state": p.state});
      line.append(svg("title", {}, `${p.label}: ${p.state}` + (p.metric !== null ? `, ${p.metric}` : "")));
      root.append(line);
    });
    axes.forEach((a, i) => {
      root.append(svg("line", {class: "axis", x1: x(i), x2: x(i), y1: y(0), y2: y(1)}));
      root.append(svg("text", {x: x(i), y: 14, "text-anchor": "middle", "font-weight": 600}, a.name));
      for (const [label, t] of a.ticks) root.append(svg("text", {x: x(i) + 4, y: y(t) + 4}, label));
    });
    box.replaceChildren(root);
  }

  // "a, b, c: why" once per distinct reason: most points stopped at a rung stopped for the same one.
  function stoppedAt(stopped) {
    if (!stopped.length) return "-";
    const byWhy = new Map();
    for (const s of stopped) byWhy.set(s.why, [...(byWhy.get(s.why) || []), s.label]);
    return [...byWhy].map(([why, labels]) => `${labels.join(", ")}: ${why}`).join(" · ");
  }

  function rule(r) {
    const box = document.getElementById("rule");
    box.className = r ? "" : "muted";
    if (!r) { box.replaceChildren("this sweep trains every point fully"); return; }
    const parts = [el("p", {}, `${r.name} on ${r.metric}`)];
    if (r.rungs) {
      const rows = r.rungs.map(g => el("tr", {}, el("td", {}, g.epoch), el("td", {}, g.reached),
        el("td", {}, stoppedAt(g.stopped))));
      parts.push(el("div", {class: "table-wrap"}, el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "rung: epoch"), el("th", {}, "points that reached it"),
                           el("th", {}, "stopped there, and why"))), el("tbody", {}, ...rows))));
    } else {
      parts.push(el("ul", {}, ...(r.stopped || []).map(s => el("li", {}, `${s.label}: after epoch ${s.epoch} (${s.why})`))));
    }
    box.replaceChildren(...parts);
  }

  function table(answer) {
    const head = document.querySelector("#points thead tr"), body = document.querySelector("#points tbody");
    head.replaceChildren(...["point", ...answer.keys, "state", answer.select, "epochs", "why"]
      .map(c => el("th", {}, c)));
    body.replaceChildren(...answer.points.map(p => el("tr", {"data-point": p.id, "data-state": p.state},
      el("td", {}, p.run ? el("a", {href: "/run?id=" + encodeURIComponent(p.run)}, p.id) : p.id),
      ...answer.keys.map(k => el("td", {}, p.values[k] ?? "-")),
      el("td", {}, DL.statusBadge(p.state)),
      el("td", {}, p.metric === null ? "-" : answer.select.endsWith("accuracy") ? DL.percent(p.metric) : p.metric.toPrecision(4)),
      el("td", {}, `${p.epochs_done}/${p.epochs ?? "?"}`),
      el("td", {}, p.why || ""))));
  }

  function show(answer) {
    setText(document.getElementById("name"), "sweep " + answer.name);
    document.title = answer.name + " · digitlab sweep";
    setText(document.getElementById("error"), answer.error || "");
    const g = answer.progress || {};
    document.getElementById("bar").style.width = g.total ? `${100 * g.done / g.total}%` : "0";
    setText(document.getElementById("progress"), g.total === undefined ? "" :
      `${g.done} of ${g.total} points done · ${g.running} running` +
      (g.eta !== null && g.eta !== undefined ? ` · about ${DL.duration(g.eta)} left` : ""));
    document.getElementById("counts").replaceChildren(...Object.entries(g.counts || {}).map(([s, n]) =>
      el("span", {class: "chip status-" + s}, `${s} ${n}`)));
    const report = document.getElementById("report");
    report.href = DL.fileUrl(id, "report.html");
    report.hidden = false;
    if (answer.points.length) parallel(answer);
    rule(answer.rule);
    table(answer);
  }

  DL.poll(since => "/api/sweep?" + new URLSearchParams(since === null ? {id} : {id, since}), show, 1500);
})();
