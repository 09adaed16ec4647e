// One run: its curves growing epoch by epoch while it trains, its epoch and ETA, its values, and its report.html
// (served from the run folder, in a sandboxed frame) below; a stop button when the server allows stopping.
"use strict";

(() => {
  const {el, setText} = DL;
  const token = DL.token();
  const id = new URLSearchParams(location.search).get("id") || "";
  const accuracy = Charts.chart(document.getElementById("accuracy"), {
    title: "accuracy", y: "accuracy", series: [
      {label: "train", color: Charts.color(0), dash: [6, 4]},
      {label: "validation", color: Charts.color(1)},
      {label: "test", color: Charts.color(2)}]});
  const loss = Charts.chart(document.getElementById("loss"), {
    title: "loss", y: "loss", series: [
      {label: "train", color: Charts.color(0), dash: [6, 4]},
      {label: "validation", color: Charts.color(1)},
      {label: "test", color: Charts.color(2)}]});
  let allowStop = false, status = null, reportShown = false;

  function show(answer) {
    const run = answer.run, m = answer.metrics;
    document.title = run.name + " · digitlab";
    setText(document.getElementById("name"), run.name);
    status = run.status;
    document.getElementById("status").replaceChildren(DL.statusBadge(run.status));
    const progress = document.getElementById("progress");
    progress.dataset.epochs = String(m.epoch.length);
    setText(progress, `epoch ${m.epoch.length} of ${run.epochs ?? "?"}` +
      (answer.eta !== null && answer.eta !== undefined ? ` · about ${DL.duration(answer.eta)} left` : ""));
    setText(document.getElementById("damage"), answer.damage || run.damage || "");
    const column = name => m[name] || m.epoch.map(() => null);
    if (m.epoch.length) {
      accuracy.update([m.epoch, column("train_accuracy"), column("val_accuracy"), column("test_accuracy")]);
      loss.update([m.epoch, column("train_loss"), column("val_loss"), column("test_loss")]);
    }
    const facts = document.getElementById("facts");
    facts.replaceChildren(...Object.entries(run)
      .filter(([k, v]) => v !== null && v !== undefined && !["id", "name", "status", "epochs", "dataset"].includes(k))
      .map(([k, v]) => el("div", {}, el("b", {}, DL.title(k)), DL.cell(k, run))));
    if (answer.report && !reportShown) {
      reportShown = true;
      const url = DL.fileUrl(id, "report.html");
      document.getElementById("report").replaceChildren(
        el("p", {}, el("a", {href: url, target: "_blank", rel: "noopener"}, "open report.html on its own")),
        el("iframe", {class: "report", src: url, sandbox: "allow-scripts", title: "the run's report"}));
    }
    document.getElementById("stop").hidden = !(allowStop && status === "running");
  }

  document.getElementById("stop").addEventListener("click", async () => {
    const said = document.getElementById("stop-said");
    setText(said, "asking...");
    try {
      const answer = await fetch("/api/stop", {method: "POST", cache: "no-store",
        headers: {"Content-Type": "application/json", "X-Digitlab-Token": token}, body: JSON.stringify({run: id})});
      const body = await answer.json();
      said.className = answer.ok ? "muted" : "error";
      setText(said, answer.ok ? body.said : "refused: " + body.error);
    } catch (error) {
      said.className = "error";
      setText(said, "could not ask: " + error.message);
    }
  });

  DL.getJSON("/api/info").then(info => {
    allowStop = info.allow_stop;
    document.getElementById("stop").hidden = !(allowStop && status === "running");
  }).catch(() => {});
  DL.poll(since => "/api/run?" + new URLSearchParams(since === null ? {id} : {id, since}), show);
})();
