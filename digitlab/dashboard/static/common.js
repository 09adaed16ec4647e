// What every dashboard page shares: making elements (text always goes in as text, never as HTML), the token of
// --allow-stop, polling the server with the version it last answered, and how values are written.
"use strict";

const DL = (() => {
  const STATUSES = ["running", "complete", "failed", "interrupted", "diverged", "pruned", "crashed", "damaged"];

  // el("a", {href: url, class: "x"}, "text", child): attributes set one by one, children appended as nodes or text.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function setText(node, text) {
    const value = text === null || text === undefined ? "" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  // The --allow-stop token arrives in the URL the server printed; kept for this tab only, then out of the address bar.
  function token() {
    const params = new URLSearchParams(location.search);
    const given = params.get("token");
    if (given) {
      sessionStorage.setItem("digitlab-token", given);
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
    }
    return sessionStorage.getItem("digitlab-token") || "";
  }

  async function getJSON(url) {
    const answer = await fetch(url, {cache: "no-store"});
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error || String(answer.status));
    return body;
  }

  // poll(url(since), onAnswer): asks every `every` ms with the version last answered; onAnswer only when something
  // changed. now() asks at once, forgetting the version (the question changed); answers to older questions are dropped.
  function poll(url, onAnswer, every = 1000) {
    let since = null, asked = 0, timer = null;
    const status = document.getElementById("connection");
    async function ask() {
      clearTimeout(timer);
      const mine = ++asked;
      try {
        const body = await getJSON(url(since));
        if (mine !== asked) return;
        if (status) { setText(status, ""); status.className = "connection"; }
        if (!body.unchanged) onAnswer(body);
        since = body.version || null;
      } catch (error) {
        if (mine !== asked) return;
        if (status) { setText(status, "not connected: " + error.message); status.className = "connection lost"; }
      }
      if (mine === asked) timer = setTimeout(ask, since === null ? 150 : every);  // soon while the server reads
    }
    ask();
    return {now() { since = null; ask(); }};
  }

  function percent(x) { return typeof x === "number" ? (100 * x).toFixed(2) + "%" : x ?? "-"; }

  function duration(s) {
    if (typeof s !== "number" || !isFinite(s)) return "-";
    if (s < 10) return s.toFixed(2) + " s";
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    return h ? `${h} h ${String(m % 60).padStart(2, "0")} min` : `${m} min ${String(Math.round(s % 60)).padStart(2, "0")} s`;
  }

  // A cell's text: accuracies as percents, seconds as a duration, epochs as done/planned, the rest as written.
  function cell(column, row) {
    const v = row[column];
    if (column === "epochs_done") return `${v ?? 0}/${row.epochs ?? "?"}`;
    if (column === "best_val" || column === "test_acc" || column === "train_acc") return percent(v);
    if (column === "seconds") return duration(v);
    if (column === "digits") return `${row.dataset || ""} ${v ?? ""}`.trim() || "-";
    if (column === "started") return typeof v === "string" ? v.replace("T", " ").replace(/:\d\dZ$/, "") : "-";
    if (v === null || v === undefined) return "-";
    return typeof v === "object" ? JSON.stringify(v) : String(v);
  }

  const TITLES = {name: "run", status: "status", digits: "data", epochs_done: "epochs", best_val: "best val",
                  test_acc: "test acc", seconds: "time", started: "started", train_acc: "train acc",
                  batch_size: "batch", weight_decay: "wd"};
  function title(column) { return TITLES[column] || column; }

  function runLink(row) { return el("a", {href: "/run?id=" + encodeURIComponent(row.id)}, row.name); }

  function statusBadge(status) { return el("span", {class: "status status-" + String(status)}, status); }

  // /files/<id>/<name>: each segment of the id encoded on its own, so its slashes stay separators.
  function fileUrl(id, name) {
    return "/files/" + String(id).split("/").map(encodeURIComponent).join("/") + "/" + encodeURIComponent(name);
  }

  token();  // every page keeps the token it was opened with, before anything rewrites the address

  return {STATUSES, el, setText, token, getJSON, poll, percent, duration, cell, title, runLink, statusBadge, fileUrl};
})();
