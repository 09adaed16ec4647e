/* What the "Draw a digit" section shows, over draw.js's window.digitlab: the canvas (mouse, pen or finger; undo,
 * clear, a test digit, a mistake), the image as the network sees it, a bar per class, each layer's activations
 * with their colour scale, and the drawing's point in a 2-unit network's plane. */
(function () {
  "use strict";
  const D = window.digitlab, spec = D.spec, app = document.getElementById("draw-app");
  const SIDE = 256, PEN = 17;  // the canvas's pixels (what a PNG of it holds) and the pen's width in them
  const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#17becf"];
  const [channels, H, W] = spec.image_shape, pixels = channels * H * W;
  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) (k === "text" ? (e.textContent = v) : e.setAttribute(k, v));
    e.append(...kids);
    return e;
  };

  // -- layout -------------------------------------------------------------------------------------------------------
  const style = el("style", {}, `
#draw-app { --cell: 12px; }
.draw-top { display: flex; flex-wrap: wrap; gap: 16px 28px; align-items: flex-start; }
.draw-pad canvas#draw { width: 300px; max-width: 100%; aspect-ratio: 1; border: 1px solid var(--line); border-radius: 6px;
  touch-action: none; cursor: crosshair; background: #fff; display: block; }
.draw-buttons { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 8px; max-width: 300px; }
.draw-buttons button { font: inherit; padding: 6px 12px; min-height: 36px; border: 1px solid var(--line);
  border-radius: 6px; background: var(--bg); cursor: pointer; }
.draw-buttons button:hover { background: #eaeef2; }
.draw-status { min-height: 1.5em; margin-top: 4px; max-width: 300px; }
.draw-seen canvas { width: 140px; height: 140px; image-rendering: pixelated; border: 1px solid var(--line);
  border-radius: 4px; display: block; }
.draw-bars { margin-top: 4px; min-width: 220px; }
.draw-answer { font-weight: 600; margin-top: 10px; }
.draw-bar { display: grid; grid-template-columns: 1.6em 1fr 4.2em; align-items: center; gap: 6px; height: 20px; }
.draw-bar .track { background: var(--bg); border: 1px solid var(--line); height: 14px; border-radius: 3px; }
.draw-bar .fill { background: #9e9e9e; height: 100%; border-radius: 2px; }
.draw-bar.top .fill { background: #2ca02c; }
.draw-bar .pct { text-align: right; font-variant-numeric: tabular-nums; font-size: 0.9em; }
.draw-layers { margin-top: 12px; }
.draw-layer { margin: 10px 0; }
.draw-layer .maps { display: flex; flex-wrap: wrap; gap: 3px; }
.draw-layer canvas { image-rendering: pixelated; border: 1px solid var(--line); }
.draw-scale { display: inline-flex; align-items: center; gap: 6px; font-size: 0.85em; color: var(--soft); }
.draw-scale span.bar { width: 120px; height: 10px; border: 1px solid var(--line); display: inline-block; }
.draw-plane { max-width: 340px; }
.draw-plane canvas { width: 340px; max-width: 100%; aspect-ratio: 1; border: 1px solid var(--line); display: block; }
.draw-keys { font-size: 0.85em; color: var(--soft); }
.draw-keys b { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin: 0 3px 0 8px; }
@media (max-width: 700px) {
  .draw-pad canvas#draw { width: 100%; max-width: 340px; margin: 0 auto; }
  .draw-buttons { max-width: 360px; }
  .draw-buttons button { min-height: 44px; min-width: 44px; padding: 8px 14px; font-size: 16px; flex: 1 1 40%; }
  .draw-status { max-width: 360px; }
  .draw-seen { display: flex; gap: 12px; align-items: flex-start; width: 100%; }
  .draw-seen canvas { width: 96px; height: 96px; }
  .draw-image .note { font-size: 0.8em; max-width: 96px; }
  .draw-answer { margin-top: 0; }
  .draw-bars { min-width: 0; flex: 1; }
  .draw-bar { height: 18px; }
}`);
  const pad = el("canvas", { id: "draw", width: SIDE, height: SIDE, "aria-label": "draw a digit here" });
  const buttons = {
    undo: el("button", { type: "button", text: "Undo" }), clear: el("button", { type: "button", text: "Clear" }),
    test: el("button", { type: "button", text: "Show me a test digit" }),
    mistake: el("button", { type: "button", text: "Show me a mistake" }),
  };
  if (!spec.mistakes.labels.length) buttons.mistake.disabled = true;
  const status = el("div", { class: "draw-status note" });
  const seen = el("canvas", { width: W, height: H, "aria-label": "the image the network is given" });
  const bars = el("div", { class: "draw-bars" }), answer = el("div", { class: "draw-answer" });
  const layers = el("div", { class: "draw-layers" });
  const plane = spec.plane ? el("canvas", { width: 340, height: 340, "aria-label": "the 2-unit layer's plane" }) : null;
  app.append(style,
    el("div", { class: "draw-top" },
      el("div", { class: "draw-pad" }, pad, el("div", { class: "draw-buttons" }, ...Object.values(buttons)), status),
      el("div", { class: "draw-seen" },
        el("div", { class: "draw-image" }, el("div", { class: "note", text: `as the network sees it (${H}x${W})` }), seen),
        el("div", {}, answer, bars)),
      ...(plane ? [el("div", { class: "draw-plane" },
        el("div", { class: "note", text: `the drawing (black ring) in the 2-unit layer's plane (layer ${spec.plane.layer}), over ${spec.plane.labels.length} test images` }),
        plane, keys())] : [])),
    el("h3", { text: "Each layer's activations for this image" }),
    el("p", { class: "note", text: "Each square is a unit of a dense layer, each small image a convolution's "
      + "feature map, coloured by its value after the layer's batch norm and activation: white is 0, red positive, "
      + "blue negative; the strongest colour is the layer's largest magnitude, printed on its scale." }),
    layers);

  function keys() {
    return el("div", { class: "draw-keys" }, ...spec.classes.flatMap((c, i) => [
      Object.assign(el("b"), { style: `background:${TAB10[i % 10]}` }), document.createTextNode(String(c))]));
  }

  // -- the test images behind the buttons ----------------------------------------------------------------------------
  function decodeImages(set) {
    const bin = atob(set.images), scale = Math.fround(1 / spec.pixel_max), out = [];
    for (let n = 0; n < set.labels.length; n++) {
      const img = new Float32Array(pixels);
      for (let i = 0; i < pixels; i++) img[i] = Math.fround(bin.charCodeAt(n * pixels + i) * scale);
      out.push(img);
    }
    return out;
  }
  const examples = decodeImages(spec.examples), mistakes = decodeImages(spec.mistakes);
  const byClass = spec.classes.map((_, c) => spec.examples.labels.flatMap((l, i) => (l === c ? [i] : [])));
  const exampleOrder = [];
  for (let k = 0; k < Math.max(...byClass.map(a => a.length)); k++) {
    for (const rows of byClass) if (k < rows.length) exampleOrder.push(rows[k]);
  }
  let nextExample = 0, nextMistake = 0;
  if (!exampleOrder.length) buttons.test.disabled = true;

  // -- the canvas: strokes kept for undo, or a test image shown ----------------------------------------------------
  const ctx = pad.getContext("2d", { willReadFrequently: true });
  let strokes = [], shown = null, current = null;
  function paint() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, SIDE, SIDE);
    if (shown) {
      const small = document.createElement("canvas");
      small.width = W; small.height = H;
      small.getContext("2d").putImageData(greyImage(shown.image), 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(small, 0, 0, SIDE, SIDE);
      return;
    }
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#000";
    ctx.lineWidth = PEN;
    ctx.lineCap = ctx.lineJoin = "round";
    for (const s of strokes) {
      ctx.beginPath();
      if (s.length === 1) {
        ctx.arc(s[0][0], s[0][1], PEN / 2, 0, 2 * Math.PI);
        ctx.fill();
        continue;
      }
      ctx.moveTo(s[0][0], s[0][1]);
      for (const [x, y] of s.slice(1)) ctx.lineTo(x, y);
      ctx.stroke();
    }
  }
  function greyImage(image) {  // the first channel as ink dark on white
    const data = new ImageData(W, H);
    for (let i = 0; i < H * W; i++) {
      const v = Math.round(255 * (1 - Math.min(Math.max(image[i], 0), 1)));
      data.data.set([v, v, v, 255], 4 * i);
    }
    return data;
  }
  function point(e) {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * SIDE / r.width, (e.clientY - r.top) * SIDE / r.height];
  }
  let drawingNow = false;
  pad.addEventListener("pointerdown", e => {
    e.preventDefault();
    if (shown) { shown = null; strokes = []; }
    drawingNow = true;
    pad.setPointerCapture(e.pointerId);
    strokes.push([point(e)]);
    paint();
    schedule();
  });
  pad.addEventListener("pointermove", e => {
    if (!drawingNow) return;
    strokes[strokes.length - 1].push(point(e));
    paint();
    schedule();
  });
  const end = () => { if (drawingNow) { drawingNow = false; update(); } };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  buttons.undo.addEventListener("click", () => { if (shown) shown = null; else strokes.pop(); paint(); update(); });
  buttons.clear.addEventListener("click", () => { shown = null; strokes = []; paint(); update(); });
  buttons.test.addEventListener("click", () => {
    const i = exampleOrder[nextExample++ % exampleOrder.length];
    shown = { image: examples[i], text: `test image ${spec.examples.rows[i]}: a ${spec.classes[spec.examples.labels[i]]}` };
    paint(); update();
  });
  buttons.mistake.addEventListener("click", () => {
    const i = nextMistake++ % mistakes.length, m = spec.mistakes;
    shown = { image: mistakes[i], text: `test image ${m.rows[i]}: a ${spec.classes[m.labels[i]]} that the network `
      + `took for a ${spec.classes[m.predicted[i]]} (mistake ${i + 1} of ${mistakes.length}, the most confident first)` };
    paint(); update();
  });

  /* The image the network is given for what the canvas shows: the test image, or the drawing preprocessed. */
  function input() {
    if (shown) return shown.image;
    if (!strokes.length) return null;
    const rgba = ctx.getImageData(0, 0, SIDE, SIDE).data, grey = new Float32Array(SIDE * SIDE);
    for (let i = 0; i < grey.length; i++) {  // Pillow's L = (R 19595 + G 38470 + B 7471 + 0x8000) >> 16
      grey[i] = ((rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >> 16) / 255;
    }
    return D.toDigit(grey, SIDE, SIDE);
  }

  let pending = false;
  function schedule() {
    if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; update(); }); }
  }
  function update() {
    const x = input();
    current = x ? { x, outputs: D.forward(x) } : null;
    current && (current.p = D.probabilities(current.outputs[current.outputs.length - 1]));
    status.textContent = shown ? shown.text : strokes.length && !x ? "no ink found: draw darker or larger" : "";
    showSeen(); showBars(); showLayers(); showPlane();
    app.dataset.updates = String(+(app.dataset.updates || 0) + 1);
  }

  function showSeen() {
    seen.getContext("2d").putImageData(greyImage(current ? current.x : new Float32Array(pixels)), 0, 0);
  }
  function showBars() {
    const p = current ? current.p : spec.classes.map(() => 0), best = current ? p.indexOf(Math.max(...p)) : -1;
    answer.textContent = current ? `the network answers ${spec.classes[best]} (${(100 * p[best]).toFixed(1)}%)`
      : "draw a digit to see the network's answer";
    bars.replaceChildren(...spec.classes.map((c, i) => el("div", { class: "draw-bar" + (i === best ? " top" : "") },
      el("b", { text: String(c) }),
      el("div", { class: "track" }, Object.assign(el("div", { class: "fill" }), { style: `width:${(100 * p[i]).toFixed(1)}%` })),
      el("span", { class: "pct", text: current ? `${(100 * p[i]).toFixed(1)}%` : "" }))));
  }

  // -- activations: a weight layer with the batch norm, activation and dropout after it is one block; pooling one
  const BLOCK_STARTS = new Set(["linear", "conv2d", "class_means", "maxpool2d", "avgpool2d"]);
  const blocks = [];
  spec.layers.forEach((layer, i) => {  // flatten changes no value: maps stay maps
    if (layer.type === "flatten") return;
    if (BLOCK_STARTS.has(layer.type) || !blocks.length) blocks.push({ from: i, to: i, names: [layer.type] });
    else { blocks[blocks.length - 1].to = i; blocks[blocks.length - 1].names.push(layer.type); }
  });
  const hidden = blocks.slice(0, -1);  // the last block is the output: the bars show it
  function colour(t) {  // t in [-1, 1]: blue, white at 0, red
    const [r, g, b] = t >= 0 ? [178, 24, 43] : [33, 102, 172], a = Math.min(Math.abs(t), 1);
    return [255 + a * (r - 255), 255 + a * (g - 255), 255 + a * (b - 255)].map(Math.round);
  }
  function scaleKey(m, signed) {
    const grad = signed ? "linear-gradient(90deg, rgb(33,102,172), #fff, rgb(178,24,43))"
      : "linear-gradient(90deg, #fff, rgb(178,24,43))";
    return el("span", { class: "draw-scale" }, signed ? `${(-m).toPrecision(3)}` : "0",
      Object.assign(el("span", { class: "bar" }), { style: `background:${grad}` }), `${m.toPrecision(3)}`);
  }
  function showLayers() {
    if (!hidden.length) {
      layers.replaceChildren(el("p", { class: "note", text: "This network has no hidden layer: the bars are its output." }));
      return;
    }
    layers.replaceChildren(...hidden.map(block => {
      const layer = spec.layers[block.to], shape = layer.out;
      const title = (block.to > block.from ? `layers ${block.from}-${block.to}` : `layer ${block.from}`)
        + `: ${block.names.join(" + ")}, `
        + (shape.length === 3 ? `${shape[0]} maps of ${shape[1]}x${shape[2]}` : `${shape[0]} units`);
      const div = el("div", { class: "draw-layer" });
      if (!current) {
        div.append(el("div", { class: "note", text: title }));
        return div;
      }
      const v = current.outputs[block.to];
      let m = 0, signed = false;
      for (const a of v) { m = Math.max(m, Math.abs(a)); signed = signed || a < 0; }
      m = m || 1;
      div.append(el("div", { class: "note" }, title + " ", scaleKey(m, signed)));
      const maps = el("div", { class: "maps" });
      if (shape.length === 3) {
        const [c, h, w] = shape, zoom = Math.max(2, Math.floor(56 / h));
        for (let ch = 0; ch < c; ch++) maps.append(heat(v.subarray(ch * h * w, (ch + 1) * h * w), h, w, m, zoom));
      } else {
        const widest = Math.max(1, Math.floor((layers.clientWidth || 600) / 12)), rows = Math.ceil(v.length / widest);
        const cols = Math.ceil(v.length / rows);  // rows as even as they can be
        maps.append(heat(v, rows, cols, m, 12, v.length));
      }
      div.append(maps);
      return div;
    }));
  }
  function heat(v, h, w, m, zoom, count = h * w) {
    const c = el("canvas", { width: w, height: h });
    c.style.width = `${w * zoom}px`;
    c.style.height = `${h * zoom}px`;
    const data = new ImageData(w, h);
    for (let i = 0; i < h * w; i++) {
      const rgb = i < count ? colour(v[i] / m) : [246, 248, 250];
      data.data.set([...rgb, 255], 4 * i);
    }
    c.getContext("2d").putImageData(data, 0, 0);
    return c;
  }

  // -- the plane: the test images' points over what the rest of the network answers there, and the drawing's ------
  let planeBackground = null;
  function showPlane() {
    if (!plane) return;
    const g = plane.getContext("2d"), S = plane.width, P = spec.plane, [lx, ly] = P.low, [hx, hy] = P.high;
    const sx = x => ((x - lx) / (hx - lx)) * S, sy = y => S - ((y - ly) / (hy - ly)) * S;
    if (!planeBackground) {
      const n = 60, data = new ImageData(n, n);
      for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
        const z = [lx + ((c + 0.5) / n) * (hx - lx), hy - ((r + 0.5) / n) * (hy - ly)];
        const outs = D.forward(z, P.layer + 1), p = D.probabilities(outs[outs.length - 1]);
        const k = p.indexOf(Math.max(...p)), hex = TAB10[k % 10];
        const rgb = [1, 3, 5].map(j => parseInt(hex.slice(j, j + 2), 16)), a = 0.22 * Math.max(...p);
        data.data.set([...rgb.map(u => Math.round(255 + a * (u - 255))), 255], 4 * (r * n + c));
      }
      const small = document.createElement("canvas");
      small.width = small.height = n;
      small.getContext("2d").putImageData(data, 0, 0);
      planeBackground = small;
    }
    g.imageSmoothingEnabled = true;
    g.drawImage(planeBackground, 0, 0, S, S);
    for (let i = 0; i < P.labels.length; i++) {
      g.fillStyle = TAB10[P.labels[i] % 10];
      g.globalAlpha = 0.55;
      g.fillRect(sx(P.points[2 * i]) - 1.5, sy(P.points[2 * i + 1]) - 1.5, 3, 3);
    }
    g.globalAlpha = 1;
    if (current) {
      const z = current.outputs[P.layer], x = Math.min(Math.max(sx(z[0]), 6), S - 6), y = Math.min(Math.max(sy(z[1]), 6), S - 6);
      g.beginPath(); g.arc(x, y, 7, 0, 2 * Math.PI);
      g.fillStyle = "#fff"; g.fill(); g.lineWidth = 3; g.strokeStyle = "#000"; g.stroke();
    }
  }

  paint();
  update();
  Object.assign(D, {
    drawing: () => { const x = input(); return x ? D.classify(x) : null; },
    seen: () => input(),
  });
  app.dataset.ready = "1";
})();
