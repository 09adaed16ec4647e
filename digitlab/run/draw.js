/* The run's network inside report.html: a digit drawn on the canvas goes through the preprocessing of `digitlab
 * predict` (digitlab/data/photo.py) and the forward pass of the engine's layers (digitlab/nn/), with the weights
 * embedded in the page (base64 float32). Everything is computed here, from file:// or inside an iframe, with
 * nothing fetched.
 *
 * window.digitlab.classes          the run's classes in output order
 * window.digitlab.classify(image)  a Float32Array of the dataset's image shape, row-major, in [0, 1] as the
 *                                  dataset stores it -> one probability per class (one sigmoid unit: [p, 1 - p])
 * window.digitlab.drawing()        the probabilities for what the canvas shows now (null when it is blank)
 * window.digitlab.seen()           the image the network is given for the canvas (null when it is blank)
 */
(function () {
  "use strict";
  const spec = JSON.parse(document.getElementById("draw-model").textContent);

  function decode(b64, Type) {
    const bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }

  const weights = decode(spec.weights, Float32Array);
  const tensor = (layer, name) => {
    const [offset, size] = layer.tensors[name];
    return weights.subarray(offset, offset + size);
  };
  const prod = shape => shape.reduce((a, b) => a * b, 1);

  // -- the forward pass: one function per layer type, on one image (shapes without the batch axis) -----------------
  const LAYERS = {
    linear(layer, x) {  // y = x W + b, W stored (in, out)
      const w = tensor(layer, "weight"), b = layer.tensors.bias ? tensor(layer, "bias") : null;
      const n = x.length, m = layer.out[0], y = new Float64Array(m);
      if (b) for (let j = 0; j < m; j++) y[j] = b[j];
      for (let i = 0; i < n; i++) {
        const xi = x[i];
        if (xi === 0) continue;
        const row = i * m;
        for (let j = 0; j < m; j++) y[j] += xi * w[row + j];
      }
      return y;
    },
    conv2d(layer, x) {  // cross-correlation; weight (F, C, k, k); zero padding (top, bottom, left, right)
      const w = tensor(layer, "weight"), b = layer.tensors.bias ? tensor(layer, "bias") : null;
      const [c, h, wd] = layer.in, [f, ho, wo] = layer.out, k = layer.kernel, s = layer.stride;
      const top = layer.pad[0], left = layer.pad[2], depth = c * k * k;
      const y = new Float64Array(f * ho * wo), patch = new Float64Array(depth);
      for (let oy = 0; oy < ho; oy++) {
        for (let ox = 0; ox < wo; ox++) {
          // the window of this output pixel, ordered (channel, row, column) as each kernel is; zeros outside
          let at = 0;
          for (let ch = 0; ch < c; ch++) {
            for (let i = 0; i < k; i++) {
              const iy = oy * s + i - top, inside = iy >= 0 && iy < h, base = (ch * h + iy) * wd;
              for (let j = 0; j < k; j++, at++) {
                const ix = ox * s + j - left;
                patch[at] = inside && ix >= 0 && ix < wd ? x[base + ix] : 0;
              }
            }
          }
          for (let o = 0; o < f; o++) {
            let acc = b ? b[o] : 0;
            for (let d = 0, wi = o * depth; d < depth; d++, wi++) acc += patch[d] * w[wi];
            y[(o * ho + oy) * wo + ox] = acc;
          }
        }
      }
      return y;
    },
    maxpool2d(layer, x) { return pool(layer, x, true); },
    avgpool2d(layer, x) { return pool(layer, x, false); },
    batchnorm(layer, x) {  // inference: x * gamma / sqrt(running_var + eps) + beta - running_mean * that
      const g = tensor(layer, "weight"), be = tensor(layer, "bias");
      const mean = tensor(layer, "running_mean"), v = tensor(layer, "running_var");
      const c = layer.in[0], per = x.length / c, y = new Float64Array(x.length);
      for (let ch = 0; ch < c; ch++) {
        const scale = g[ch] / Math.sqrt(v[ch] + layer.eps), shift = be[ch] - mean[ch] * scale;
        for (let i = ch * per; i < (ch + 1) * per; i++) y[i] = x[i] * scale + shift;
      }
      return y;
    },
    dropout: (layer, x) => x,  // inverted dropout is the identity in evaluation
    flatten: (layer, x) => x,  // (C, H, W) row-major is already the flat order
    relu: (layer, x) => each(x, v => (v > 0 ? v : 0)),
    leaky_relu: (layer, x) => each(x, v => (v > 0 ? v : v * layer.slope)),
    sigmoid: (layer, x) => each(x, v => (1 + Math.tanh(v / 2)) / 2),
    tanh: (layer, x) => each(x, Math.tanh),
    softmax(layer, x) {
      const top = Math.max(...x), e = x.map(v => Math.exp(v - top));
      const sum = e.reduce((a, b) => a + b, 0);
      return e.map(v => v / sum);
    },
    class_means(layer, x) {  // dot: x . m_c; euclidean: 2 x . m_c - |m_c|^2
      const y = LAYERS.linear({ tensors: { weight: layer.tensors.weight }, out: layer.out }, x);
      if (layer.metric === "euclidean") {
        const w = tensor(layer, "weight"), m = layer.out[0];
        for (let j = 0; j < m; j++) {
          let sq = 0;
          for (let i = 0; i < x.length; i++) sq += w[i * m + j] * w[i * m + j];
          y[j] = 2 * y[j] - sq;
        }
      }
      return y;
    },
  };

  function each(x, fn) {
    const y = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) y[i] = fn(x[i]);
    return y;
  }

  function pool(layer, x, max) {
    const [c, h, w] = layer.in, [, ho, wo] = layer.out, size = layer.size, s = layer.stride || size;
    const y = new Float64Array(c * ho * wo);
    for (let ch = 0; ch < c; ch++) {
      for (let oy = 0; oy < ho; oy++) {
        for (let ox = 0; ox < wo; ox++) {
          let acc = max ? -Infinity : 0;
          for (let i = 0; i < size; i++) {
            for (let j = 0; j < size; j++) {
              const v = x[(ch * h + oy * s + i) * w + ox * s + j];
              acc = max ? (v > acc ? v : acc) : acc + v;
            }
          }
          y[(ch * ho + oy) * wo + ox] = max ? acc : acc / (size * size);
        }
      }
    }
    return y;
  }

  /* Every layer's output for one image (the last is the network's output, after its output activation). */
  function forward(image, from = 0, upto = spec.layers.length) {
    let x = Float64Array.from(image);
    const outputs = [];
    for (let i = from; i < upto; i++) {
      x = LAYERS[spec.layers[i].type](spec.layers[i], x);
      outputs.push(x);
    }
    return outputs;
  }

  /* One probability per class, as digitlab.nn.metrics.class_probabilities reads a model's outputs. */
  function probabilities(out) {
    if (out.length === 1) return [out[0], 1 - out[0]];
    const clipped = Array.from(out, v => Math.max(v, 0));
    const sum = Math.max(clipped.reduce((a, b) => a + b, 0), 1e-12);
    return clipped.map(v => v / sum);
  }

  function classify(image) {
    if (image.length !== prod(spec.image_shape)) {
      throw new Error(`classify expects ${prod(spec.image_shape)} values (${spec.image_shape.join("x")}), got ${image.length}`);
    }
    const outputs = forward(image);
    return probabilities(outputs[outputs.length - 1]);
  }

  // -- digitlab predict's preprocessing (digitlab/data/photo.py), on the canvas's pixels ------------------------------
  const P = spec.preprocess;

  function median(values) {
    const a = Float32Array.from(values).sort(), n = a.length;
    return n % 2 ? a[(n - 1) / 2] : Math.fround((a[n / 2 - 1] + a[n / 2]) / 2);
  }
  const row = (a, h, w, r) => Array.from(a.subarray(r * w, (r + 1) * w));
  const col = (a, h, w, c) => Array.from({ length: h }, (_, r) => a[r * w + c]);
  const sides = (a, h, w) => [row(a, h, w, 0), row(a, h, w, h - 1), col(a, h, w, 0), col(a, h, w, w - 1)];
  function splitParts(side, n) {  // numpy's array_split: the first len % n parts one longer
    const base = Math.floor(side.length / n), extra = side.length % n, parts = [];
    let at = 0;
    for (let i = 0; i < n; i++) {
      const len = base + (i < extra ? 1 : 0);
      if (len) parts.push(side.slice(at, at + len));
      at += len;
    }
    return parts;
  }

  /* Pillow's resampling of a mode "F" image (Resample.c): per output pixel, filter weights normalised to 1, the
   * horizontal pass first (stored as float32), then the vertical one. */
  const FILTERS = {
    BOX: [0.5, x => (x > -0.5 && x <= 0.5 ? 1 : 0)],
    LANCZOS: [3, x => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0)],
  };
  function sinc(x) { return x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x); }
  function coefficients(inSize, outSize, filter) {
    const [support0, fn] = FILTERS[filter], scale = inSize / outSize, fs = Math.max(scale, 1);
    const support = support0 * fs, out = [];
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(center + support + 0.5), inSize);
      const k = [];
      let sum = 0;
      for (let x = xmin; x < xmax; x++) {
        const v = fn((x - center + 0.5) / fs);
        k.push(v);
        sum += v;
      }
      out.push([xmin, sum !== 0 ? k.map(v => v / sum) : k]);
    }
    return out;
  }
  function resize(a, h, w, oh, ow, filter) {
    let cur = a;
    if (ow !== w) {
      const cs = coefficients(w, ow, filter), next = new Float32Array(h * ow);
      for (let r = 0; r < h; r++) {
        for (let xx = 0; xx < ow; xx++) {
          const [xmin, k] = cs[xx];
          let s = 0;
          for (let x = 0; x < k.length; x++) s += cur[r * w + xmin + x] * k[x];
          next[r * ow + xx] = s;
        }
      }
      cur = next;
    }
    if (oh !== h) {
      const cs = coefficients(h, oh, filter), next = new Float32Array(oh * ow);
      for (let yy = 0; yy < oh; yy++) {
        const [ymin, k] = cs[yy];
        for (let c = 0; c < ow; c++) {
          let s = 0;
          for (let y = 0; y < k.length; y++) s += cur[(ymin + y) * ow + c] * k[y];
          next[yy * ow + c] = s;
        }
      }
      cur = next;
    }
    return cur === a ? Float32Array.from(a) : cur;
  }
  function roundHalfEven(x) {  // Python's round()
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }
  function resized(a, h, w, scale, filter = "LANCZOS") {
    const ow = Math.max(1, roundHalfEven(w * scale)), oh = Math.max(1, roundHalfEven(h * scale));
    const out = resize(a, h, w, oh, ow, filter);
    for (let i = 0; i < out.length; i++) out[i] = Math.min(Math.max(out[i], 0), 1);
    return [out, oh, ow];
  }

  /* Sliding minimum or maximum over a centred window of k (odd) along rows or columns, the ends extended by their
   * own values: van Herk and Gil-Werman's blocks (photo._running), a few passes whatever k is. */
  function running(a, h, w, k, alongRows, op) {
    const out = new Float32Array(h * w), r = k >> 1, n = alongRows ? h : w, lines = alongRows ? w : h;
    const len = Math.ceil((n + 2 * r) / k) * k, fill = op === Math.min ? Infinity : -Infinity;
    const line = new Float64Array(len), ahead = new Float64Array(len), behind = new Float64Array(len);
    const at = (l, i) => (alongRows ? i * w + l : l * w + i);
    for (let l = 0; l < lines; l++) {
      for (let i = 0; i < len; i++) line[i] = i < n + 2 * r ? a[at(l, Math.min(Math.max(i - r, 0), n - 1))] : fill;
      for (let i = 0; i < len; i++) ahead[i] = i % k ? op(ahead[i - 1], line[i]) : line[i];
      for (let i = len - 1; i >= 0; i--) behind[i] = (i + 1) % k ? op(behind[i + 1], line[i]) : line[i];
      for (let i = 0; i < n; i++) out[at(l, i)] = op(behind[i], ahead[i + k - 1]);
    }
    return out;
  }
  function opening(a, h, w, size) {  // photo._opening: erosion then dilation by a square, the image edge-extended
    const k = size | 1, pad = k - 1, eh = h + 2 * pad, ew = w + 2 * pad, ext = new Float32Array(eh * ew);
    for (let y = 0; y < eh; y++) {
      for (let x = 0; x < ew; x++) {
        ext[y * ew + x] = a[Math.min(Math.max(y - pad, 0), h - 1) * w + Math.min(Math.max(x - pad, 0), w - 1)];
      }
    }
    let e = running(running(ext, eh, ew, k, true, Math.min), eh, ew, k, false, Math.min);
    e = running(running(e, eh, ew, k, true, Math.max), eh, ew, k, false, Math.max);
    const out = new Float32Array(h * w);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = e[(y + pad) * ew + x + pad];
    return out;
  }

  /* photo.ink: ink 1 on background 0, faint noise dropped; null for a blank image. */
  function ink(grey, h, w) {
    const edges = sides(grey, h, w);
    const parts = edges.flatMap(side => splitParts(side, P.border_parts).map(median));
    const uneven = Math.max(...parts) - Math.min(...parts) > P.uneven;
    const paper = median(edges.flat());
    const lightPaper = (uneven ? Math.max(...parts) : paper) > 0.5;
    let strokes = lightPaper ? grey.map(v => 1 - v) : Float32Array.from(grey), level;
    if (uneven) {
      if (Math.max(h, w) > P.even_side) [strokes, h, w] = resized(strokes, h, w, P.even_side / Math.max(h, w), "BOX");
      const background = opening(strokes, h, w, Math.max(3, Math.floor(Math.min(h, w) / P.opening)));
      strokes = strokes.map((v, i) => (lightPaper ? (v - background[i]) / Math.max(1 - background[i], 0.2)
        : v - background[i]));
      level = median(sides(strokes, h, w).flat());
    } else {
      level = lightPaper ? 1 - paper : paper;
    }
    let top = -Infinity;
    for (const v of strokes) top = v > top ? v : top;
    const contrast = top - level;
    if (contrast < P.min_contrast) return null;
    const out = strokes.map(v => {
      const u = Math.min(Math.max((v - level) / contrast, 0), 1);
      return u < P.noise ? 0 : u;
    });
    return [out, h, w];
  }

  function place(small, bh, bw, top, left, H, W) {  // photo._place: a fractional position, linear interpolation
    top = Math.min(Math.max(top, 0), H - bh);
    left = Math.min(Math.max(left, 0), W - bw);
    const fy = top - Math.floor(top), fx = left - Math.floor(left), ph = bh + 1, pw = bw + 1;
    const at = (a, y, x) => (y >= 0 && y < bh && x >= 0 && x < bw ? a[y * bw + x] : 0);
    const rowsShifted = new Float32Array(ph * pw);
    for (let y = 0; y < ph; y++) for (let x = 0; x < pw; x++) {
      rowsShifted[y * pw + x] = (1 - fy) * at(small, y, x) + fy * at(small, y - 1, x);
    }
    const out = new Float32Array(H * W), t = Math.floor(top), l = Math.floor(left);
    for (let y = 0; y < Math.min(ph, H - t); y++) for (let x = 0; x < Math.min(pw, W - l); x++) {
      const left1 = x > 0 ? rowsShifted[y * pw + x - 1] : rowsShifted[y * pw + pw - 1];
      out[(t + y) * W + l + x] = (1 - fx) * rowsShifted[y * pw + x] + fx * left1;
    }
    return out;
  }
  function massCentre(a, h, w) {
    let total = 0, cy = 0, cx = 0;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const v = a[y * w + x];
      total += v; cy += v * y; cx += v * x;
    }
    return [cy / total, cx / total, total];
  }

  /* photo.to_digit: grey levels (white 1) -> the dataset's image (channels, rows, cols), or null when blank. */
  function toDigit(grey, h, w) {
    const inked = ink(grey, h, w);
    if (!inked) return null;
    const [strokes, sh, sw] = inked;
    let r0 = sh, r1 = -1, c0 = sw, c1 = -1;
    for (let y = 0; y < sh; y++) for (let x = 0; x < sw; x++) if (strokes[y * sw + x] !== 0) {
      r0 = Math.min(r0, y); r1 = Math.max(r1, y); c0 = Math.min(c0, x); c1 = Math.max(c1, x);
    }
    const ch = r1 - r0 + 1, cw = c1 - c0 + 1, crop = new Float32Array(ch * cw);
    for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) crop[y * cw + x] = strokes[(r0 + y) * sw + c0 + x];
    const [channels, H, W] = spec.image_shape;
    let out;
    if (H === 28 && W === 28) {  // MNIST: longer side 20, centre of mass at (14, 14)
      const [small, bh, bw] = resized(crop, ch, cw, P.mnist_box / Math.max(ch, cw));
      const [cy, cx, total] = massCentre(small, bh, bw);
      out = total > 0 ? place(small, bh, bw, 14 - cy, 14 - cx, 28, 28) : centred(small, bh, bw, 28, 28);
    } else if (H === 8 && W === 8) {  // optdigits: a 32x32 bitmap centred by mass, the share of ink per 4x4 block
      const [small, bh, bw] = resized(crop, ch, cw, 32 / Math.max(ch, cw), "BOX");
      const [cy, cx] = massCentre(small, bh, bw);
      const bitmap = place(small, bh, bw, 15.5 - cy, 15.5 - cx, 32, 32);
      out = new Float32Array(64);
      for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) out[(y >> 2) * 8 + (x >> 2)] += bitmap[y * 32 + x];
      for (let i = 0; i < 64; i++) out[i] /= 16;
    } else {
      const [small, bh, bw] = resized(crop, ch, cw, Math.min(H, W) / Math.max(ch, cw));
      out = centred(small, bh, bw, H, W);
    }
    const image = new Float32Array(channels * H * W);
    for (let c = 0; c < channels; c++) image.set(out, c * H * W);
    return image;
  }
  function centred(small, bh, bw, H, W) {
    const out = new Float32Array(H * W), t = (H - bh) >> 1, l = (W - bw) >> 1;
    for (let y = 0; y < bh; y++) for (let x = 0; x < bw; x++) out[(t + y) * W + l + x] = small[y * bw + x];
    return out;
  }

  window.digitlab = Object.assign(window.digitlab || {}, {
    classes: spec.classes, classify, probabilities, forward, toDigit, spec,
    drawing: () => null, seen: () => null,  // the drawing's own, once draw_ui.js has made the canvas
  });
})();
