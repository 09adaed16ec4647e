// The runs table: filtered (the server applies `digitlab runs --where`'s expressions), sorted, selected; rows
// updated in place as the server's answers change, so filters, sort, selection and scroll survive every update.
// Filter, statuses, sort and selection live in the URL too: a reload or a sent link shows the same table.
"use strict";

(() => {
  const {el, setText} = DL;
  const params = new URLSearchParams(location.search);
  const state = {
    where: params.get("where") || "",
    statuses: new Set((params.get("status") || "").split(",").filter(Boolean)),
    sort: params.get("sort") || "",
    selected: new Set((params.get("sel") || "").split(",").filter(Boolean)),
    limit: 100,
  };
  const DESCENDING = new Set(["best_val", "test_acc", "train_acc", "started", "epochs_done"]);
  const table = document.getElementById("runs");
  const head = table.tHead.rows[0], body = table.tBodies[0];
  const rows = new Map();   // id -> {tr, cells: {column: td}, check}
  let columns = [], matching = 0;

  function remember() {
    const p = new URLSearchParams();
    if (state.where) p.set("where", state.where);
    if (state.statuses.size) p.set("status", [...state.statuses].join(","));
    if (state.sort) p.set("sort", state.sort);
    if (state.selected.size) p.set("sel", [...state.selected].join(","));
    const text = p.toString();
    history.replaceState(null, "", location.pathname + (text ? "?" + text : ""));
  }

  function url(since) {
    const p = new URLSearchParams({where: state.where, sort: state.sort, limit: state.limit});
    if (state.statuses.size) p.set("status", [...state.statuses].join(","));
    if (since !== null) p.set("since", since);
    return "/api/runs?" + p.toString();
  }

  function header() {
    head.replaceChildren(el("th", {class: "pick"}));
    const sortedBy = state.sort.replace(/^-/, "") || "started";
    for (const column of columns) {
      const arrow = column === sortedBy ? (state.sort.startsWith("-") || !state.sort ? " ▼" : " ▲") : "";
      const th = el("th", {"data-column": column, title: "sort by " + column}, DL.title(column) + arrow);
      th.addEventListener("click", () => {
        const now = state.sort.replace(/^-/, "") || "started";
        const down = state.sort.startsWith("-") || !state.sort;
        state.sort = column === now ? (down ? column : "-" + column) : (DESCENDING.has(column) ? "-" : "") + column;
        header(); remember(); poller.now();
      });
      head.append(th);
    }
  }

  function makeRow(row) {
    const check = el("input", {type: "checkbox", "aria-label": "select " + row.name});
    check.addEventListener("change", () => {
      if (check.checked) state.selected.add(row.id); else state.selected.delete(row.id);
      selectionChanged();
    });
    const tr = el("tr", {}, el("td", {class: "pick"}, check));
    const cells = {};
    for (const column of columns) {
      const td = el("td", {"data-column": column});
      if (column === "name") td.append(DL.runLink(row));
      else if (column === "status") td.append(DL.statusBadge(row.status));
      cells[column] = td;
      tr.append(td);
    }
    return {tr, cells, check};
  }

  function fill(item, row) {
    const {tr, cells, check} = item;
    tr.dataset.run = row.name;
    tr.dataset.id = row.id;
    tr.dataset.epochs = String(row.epochs_done ?? 0);
    tr.dataset.status = row.status;
    check.checked = state.selected.has(row.id);
    for (const column of columns) {
      const td = cells[column];
      if (column === "name") setText(td.firstChild, row.name);
      else if (column === "status") {
        td.firstChild.className = "status status-" + row.status;
        setText(td.firstChild, row.status);
      } else setText(td, DL.cell(column, row));
      if (column === "status" && row.damage) td.title = row.damage;
    }
  }

  function show(answer) {
    if (answer.error) { setText(document.getElementById("where-error"), answer.error); return; }
    setText(document.getElementById("where-error"), "");
    if (answer.columns.join() !== columns.join()) {
      columns = answer.columns;
      rows.clear();
      body.replaceChildren();
      header();
    }
    const seen = new Set();
    answer.rows.forEach((row, i) => {
      let item = rows.get(row.id);
      if (!item) { item = makeRow(row); rows.set(row.id, item); }
      fill(item, row);
      seen.add(row.id);
      if (body.children[i] !== item.tr) body.insertBefore(item.tr, body.children[i] || null);
    });
    for (const [id, item] of rows) if (!seen.has(id)) { item.tr.remove(); rows.delete(id); }
    matching = answer.matching;
    const shown = answer.rows.length;
    setText(document.getElementById("count"), answer.total === matching ? `${matching} runs`
      : `${matching} of ${answer.total} runs`);
    setText(document.getElementById("more"), shown < matching ? `first ${shown} shown; scroll for more` : "");
    chips(answer.statuses || {});
    sweeps(answer.sweeps || []);
  }

  function chips(counts) {
    const box = document.getElementById("statuses");
    if (!box.children.length) {
      for (const status of DL.STATUSES) {
        const box_ = el("input", {type: "checkbox", value: status});
        box_.checked = state.statuses.has(status);
        box_.addEventListener("change", () => {
          if (box_.checked) state.statuses.add(status); else state.statuses.delete(status);
          remember(); poller.now();
        });
        box.append(el("label", {class: "chip status-" + status, "data-status": status}, box_,
                      el("span", {class: "label"}, status), el("span", {class: "n"})));
      }
    }
    for (const label of box.children) {
      const n = counts[label.dataset.status] || 0;
      setText(label.querySelector(".n"), n);
      label.classList.toggle("empty", n === 0 && !state.statuses.has(label.dataset.status));
    }
  }

  function sweeps(list) {
    const nav = document.getElementById("sweeps");
    const key = list.map(s => s.id).join("\n");
    if (nav.dataset.ids === key) return;
    nav.dataset.ids = key;
    nav.replaceChildren(...list.map(s => el("a", {href: "/sweep?id=" + encodeURIComponent(s.id)}, "sweep " + s.name)));
  }

  function selectionChanged() {
    const n = state.selected.size;
    const compare = document.getElementById("compare");
    compare.disabled = n === 0;
    setText(compare, n ? `compare selected (${n})` : "compare selected");
    document.getElementById("clear").disabled = n === 0;
    remember();
  }

  document.getElementById("compare").addEventListener("click", () => {
    location.href = "/compare?runs=" + [...state.selected].map(encodeURIComponent).join(",");
  });
  document.getElementById("clear").addEventListener("click", () => {
    state.selected.clear();
    for (const item of rows.values()) item.check.checked = false;
    selectionChanged();
  });
  const where = document.getElementById("where");
  where.value = state.where;
  document.getElementById("filter").addEventListener("submit", event => {
    event.preventDefault();
    state.where = where.value.trim();
    remember(); poller.now();
  });
  new IntersectionObserver(entries => {
    if (entries.some(e => e.isIntersecting) && rows.size < matching) {
      state.limit += 200;
      poller.now();
    }
  }).observe(document.getElementById("more"));

  selectionChanged();
  const poller = DL.poll(url, show);
})();
