// sopcorr correspondence viewer (sopcorr/viewer/static/viewer.js; written beside index.html).
// Opens from disk with no server: the data are <script> files added on demand (no fetch()),
// each assigning window[manifest.data_global]["<category>/<name>"]. Encoding: sopcorr.viewer.encode
// (per ordered pair and source cell: qx, qy, qs bytes).
//
// For tests and measurements the page exposes
//   window.viewerTimings      ms from each pointer event (event.timeStamp) to the end of its redraw
//   window.viewerDrawTimings  ms of the redraw itself
//   window.viewerReadyAt      performance.now() when the first category and method were drawn
//   window.viewerFirstMatchAt performance.now() when the first match was drawn (page load: automatic)
//   window.viewerState        {loaded, category, method, source, point, pinned, markers, labels, keypoints}
//                             markers: [{image, x, y, score, valid, px, py}] (x, y: the target's original
//                             image pixels; px, py: pixels of its canvas)
//   window.viewer             {setCategory(name), setMethod(name), pointAt(i, x, y), tilePoint(i, x, y)}
(function () {
  "use strict";
  const M = window.SOPCORR_VIEWER;
  const status = (t) => { document.getElementById("status").textContent = t; };
  if (!M) { status("no manifest: rebuild the viewer (snakemake results/<run>/viewer)"); return; }
  if (!M.categories.length) {
    status("no category of this run has two images to match" + (M.skipped.length ? " (" + M.skipped.join(", ") + ")" : ""));
    document.body.dataset.state = "empty";
    return;
  }

  const state = {
    loaded: "", category: null, method: null, source: -1, point: null, pinned: false, markers: [],
    labels: false, keypoints: false,
  };
  let cat = null;   // the category being shown: {payload, images: [...], labels, grid}
  let corr = null;  // the method's decoded data: {bytes, n, HW, W, H, lo, hi, interpolation}
  window.viewerState = state;
  window.viewerTimings = [];
  window.viewerDrawTimings = [];

  // ------------------------------------------------------------------ data files
  const DATA = M.data_global;
  const pending = {};
  function loadData(key, src) {
    const store = window[DATA] || (window[DATA] = {});
    if (store[key]) return Promise.resolve(store[key]);
    if (!pending[src]) {
      pending[src] = new Promise((resolve, reject) => {
        const s = document.createElement("script");
        s.src = src;
        s.onload = () => {
          const d = (window[DATA] || {})[key];
          if (d) resolve(d); else reject(new Error(src + " holds no data for " + key));
        };
        s.onerror = () => { delete pending[src]; reject(new Error("cannot load " + src + " (rebuild the viewer)")); };
        document.head.appendChild(s);
      });
    }
    return pending[src];
  }
  function bytesOf(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // ------------------------------------------------------------------ colours
  const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [110, 206, 88], [181, 222, 43], [253, 231, 37]];
  const LUT = [];
  for (let i = 0; i < 256; i++) {
    const f = i / 255 * (VIRIDIS.length - 1), k = Math.min(Math.floor(f), VIRIDIS.length - 2), u = f - k;
    const c = VIRIDIS[k].map((v, j) => Math.round(v + (VIRIDIS[k + 1][j] - v) * u));
    LUT.push("rgb(" + c.join(",") + ")");
  }
  const PARTS = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [174, 199, 232],
    [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148],
    [247, 182, 210], [199, 199, 199], [219, 219, 141], [158, 218, 229]];
  const kpColour = (k, n) => "hsl(" + Math.round(k * 360 / Math.max(n, 1)) + ",90%,50%)";

  // ------------------------------------------------------------------ geometry (sopcorr.geometry)
  // image point (x, y) -> continuous cell (col, row) of the image's feature grid
  function toCell(im, x, y) {
    const g = cat.grid, sc = g.size / Math.max(im.w, im.h);
    return [(x + 0.5) * sc / g.stride - 0.5, (y + 0.5) * sc / g.stride - 0.5];
  }
  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  function pairBase(s, t) { return (s * (corr.n - 1) + t - (t > s ? 1 : 0)) * corr.HW * 3; }

  // where image point (x, y) of image s lands on image t: DenseCorrespondence.transfer of the
  // method's interpolation ('nearest' or 'bilinear'); valid: the nearest cell's
  function landing(s, t, x, y) {
    const D = corr.bytes, W = corr.W, H = corr.H, base = pairBase(s, t), tw = cat.images[t].w, th = cat.images[t].h;
    const [c, r] = toCell(cat.images[s], x, y);
    const cn = clamp(Math.round(c), 0, W - 1), rn = clamp(Math.round(r), 0, H - 1);
    const kn = base + (rn * W + cn) * 3;
    const valid = D[kn + 2] > 0;
    const sc = (q) => corr.lo + (q - 1) / 254 * (corr.hi - corr.lo);
    if (corr.interpolation === "nearest") {
      return { x: D[kn] * tw / 255 - 0.5, y: D[kn + 1] * th / 255 - 0.5, score: valid ? sc(D[kn + 2]) : null, valid };
    }
    const cc = clamp(c, 0, W - 1), rr = clamp(r, 0, H - 1);
    const c0 = Math.floor(cc), r0 = Math.floor(rr), c1 = Math.min(c0 + 1, W - 1), r1 = Math.min(r0 + 1, H - 1);
    const fc = cc - c0, fr = rr - r0;
    let X = 0, Y = 0, S = 0, SW = 0;
    const corners = [[r0, c0, (1 - fr) * (1 - fc)], [r0, c1, (1 - fr) * fc], [r1, c0, fr * (1 - fc)], [r1, c1, fr * fc]];
    for (const [ri, ci, w] of corners) {
      const k = base + (ri * W + ci) * 3;
      X += w * (D[k] * tw / 255 - 0.5);
      Y += w * (D[k + 1] * th / 255 - 0.5);
      if (D[k + 2] > 0 && w > 0) { S += w * sc(D[k + 2]); SW += w; }
    }
    return { x: X, y: Y, score: valid && SW > 0 ? S / SW : null, valid };
  }

  // ------------------------------------------------------------------ the grid of images
  const grid = document.getElementById("grid");

  async function prepareCategory(payload) {
    const g = payload.grid, HW = g.rows * g.cols;
    const labels = payload.labels ? bytesOf(payload.labels) : null;
    const images = await Promise.all(payload.images.map(async (rec, i) => {
      const img = new Image();
      img.src = rec.src;
      await img.decode();
      const im = Object.assign({}, rec, { img, index: i, dx: rec.tw / rec.w, dy: rec.th / rec.h });
      if (labels) {
        const lc = document.createElement("canvas");
        lc.width = g.cols; lc.height = g.rows;
        const lctx = lc.getContext("2d"), data = lctx.createImageData(g.cols, g.rows);
        for (let k = 0; k < HW; k++) {
          const code = labels[i * HW + k];
          if (code === 255) continue;
          const col = PARTS[code % PARTS.length];
          data.data.set([col[0], col[1], col[2], 255], 4 * k);
        }
        lctx.putImageData(data, 0, 0);
        im.labelCanvas = lc;
      }
      return im;
    }));
    return { payload, images, grid: g, labels };
  }

  function buildGrid() {
    grid.textContent = "";
    for (const im of cat.images) {
      const tile = document.createElement("div");
      tile.className = "tile";
      tile.dataset.index = im.index;
      const stack = document.createElement("div");
      stack.className = "stack";
      const base = document.createElement("canvas"), marks = document.createElement("canvas");
      for (const c of [base, marks]) { c.width = im.tw; c.height = im.th; }
      base.className = "base"; marks.className = "marks";
      marks.dataset.index = im.index;
      stack.append(base, marks);
      const cap = document.createElement("div");
      cap.className = "caption";
      cap.textContent = im.id + " (" + im.split + ")";
      cap.title = im.id + ", " + im.w + "x" + im.h + " px, " + im.split + " split";
      tile.append(stack, cap);
      grid.append(tile);
      im.tile = tile; im.base = base; im.marks = marks;
      im.bctx = base.getContext("2d"); im.mctx = marks.getContext("2d");
      marks.addEventListener("pointermove", (e) => onMove(im.index, e));
      marks.addEventListener("click", (e) => onClick(im.index, e));
      drawBase(im);
    }
  }

  function drawBase(im) {
    const ctx = im.bctx, g = cat.grid;
    ctx.clearRect(0, 0, im.tw, im.th);
    ctx.drawImage(im.img, 0, 0, im.tw, im.th);
    if (state.labels && im.labelCanvas) {
      // cell c spans input pixels [c*stride, (c+1)*stride): on the canvas, x from c*stride/scale*dx
      const sc = g.size / Math.max(im.w, im.h);
      ctx.save();
      ctx.globalAlpha = 0.5;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(im.labelCanvas, 0, 0, g.cols * g.stride / sc * im.dx, g.rows * g.stride / sc * im.dy);
      ctx.restore();
    }
  }

  // ------------------------------------------------------------------ markers
  function ring(ctx, px, py) {
    ctx.lineWidth = 3; ctx.strokeStyle = "#fff";
    ctx.beginPath(); ctx.arc(px, py, 6, 0, 2 * Math.PI); ctx.stroke();
    ctx.lineWidth = 1.5; ctx.strokeStyle = "#d00";
    ctx.beginPath(); ctx.arc(px, py, 6, 0, 2 * Math.PI); ctx.stroke();
  }
  function cross(ctx, px, py, r, colour, width) {
    ctx.lineWidth = width; ctx.strokeStyle = colour;
    ctx.beginPath();
    ctx.moveTo(px - r, py - r); ctx.lineTo(px + r, py + r);
    ctx.moveTo(px - r, py + r); ctx.lineTo(px + r, py - r);
    ctx.stroke();
  }
  function dot(ctx, px, py, colour) {
    ctx.fillStyle = colour; ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.arc(px, py, 5.5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
  }
  const toCanvas = (im, x, y) => [(x + 0.5) * im.dx, (y + 0.5) * im.dy];

  function redraw(t0) {
    const start = performance.now();
    const s = state.source, p = state.point;
    state.markers = [];
    for (const im of cat.images) {
      im.mctx.clearRect(0, 0, im.tw, im.th);
      im.tile.classList.toggle("source", im.index === s);
    }
    const K = cat.payload.keypoint_names.length;
    if (state.keypoints) {
      for (const im of cat.images) {
        im.keypoints.forEach((kp, k) => {
          if (!kp || !kp[2]) return;
          const [px, py] = toCanvas(im, kp[0], kp[1]);
          im.mctx.lineWidth = 2; im.mctx.strokeStyle = kpColour(k, K);
          im.mctx.beginPath(); im.mctx.arc(px, py, 4, 0, 2 * Math.PI); im.mctx.stroke();
        });
      }
    }
    if (corr && s >= 0 && p) {
      const src = cat.images[s];
      if (state.keypoints) {
        for (const im of cat.images) {
          if (im.index === s) continue;
          src.keypoints.forEach((kp, k) => {
            if (!kp || !kp[2]) return;
            const L = landing(s, im.index, kp[0], kp[1]);
            const [px, py] = toCanvas(im, L.x, L.y), gt = im.keypoints[k];
            if (gt && gt[2]) {
              const [gx, gy] = toCanvas(im, gt[0], gt[1]);
              im.mctx.lineWidth = 1; im.mctx.strokeStyle = kpColour(k, K);
              im.mctx.beginPath(); im.mctx.moveTo(px, py); im.mctx.lineTo(gx, gy); im.mctx.stroke();
            }
            cross(im.mctx, px, py, 3.5, kpColour(k, K), 2);
          });
        }
      }
      const [sx, sy] = toCanvas(src, p[0], p[1]);
      ring(src.mctx, sx, sy);
      for (const im of cat.images) {
        if (im.index === s) continue;
        const L = landing(s, im.index, p[0], p[1]);
        const [px, py] = toCanvas(im, L.x, L.y);
        if (L.valid) {
          dot(im.mctx, px, py, LUT[Math.round(clamp((L.score - corr.lo) / (corr.hi - corr.lo), 0, 1) * 255)]);
        } else {
          cross(im.mctx, px, py, 5, "#000", 4);
          cross(im.mctx, px, py, 5, "#aaa", 2);
        }
        state.markers.push({ image: im.index, x: L.x, y: L.y, score: L.score, valid: L.valid, px, py });
      }
    }
    const end = performance.now();
    window.viewerDrawTimings.push(end - start);
    if (t0 !== null && t0 !== undefined) window.viewerTimings.push(end - t0);
    if (window.viewerFirstMatchAt === undefined && state.markers.length) window.viewerFirstMatchAt = end;
  }

  function eventPoint(i, e) {
    const im = cat.images[i];
    return [clamp(e.offsetX / im.dx - 0.5, -0.5, im.w - 0.5), clamp(e.offsetY / im.dy - 0.5, -0.5, im.h - 0.5)];
  }
  function onMove(i, e) {
    if (state.pinned || !corr) return;
    state.source = i; state.point = eventPoint(i, e);
    redraw(e.timeStamp);
  }
  function onClick(i, e) {
    if (!corr) return;
    if (state.pinned && state.source === i) { state.pinned = false; }
    else { state.pinned = true; state.source = i; state.point = eventPoint(i, e); }
    status(state.pinned ? "pinned on " + cat.images[i].id + " (click it again to release)" : ready());
    redraw(e.timeStamp);
  }

  // ------------------------------------------------------------------ controls
  const sel = (id) => document.getElementById(id);
  const entry = (name) => M.categories.find((c) => c.name === name);
  function ready() {
    const e = entry(state.category);
    return e.name + ": " + e.n_images + " images, " + e.n_images * (e.n_images - 1) + " ordered pairs; method " +
      state.method + "; positions within " + e.max_error_px + " px (quantisation)";
  }
  function legend() {
    const c = sel("legend"), ctx = c.getContext("2d");
    for (let x = 0; x < c.width; x++) { ctx.fillStyle = LUT[Math.round(x / (c.width - 1) * 255)]; ctx.fillRect(x, 0, 1, c.height); }
    sel("score-lo").textContent = corr ? corr.lo.toFixed(2) : "";
    sel("score-hi").textContent = corr ? corr.hi.toFixed(2) : "";
  }

  async function setMethod(name) {
    const e = entry(state.category);
    if (!e.methods[name]) throw new Error(state.category + ": no method " + name);
    document.body.dataset.state = "loading";
    status("loading " + e.name + " / " + name + " …");
    const d = await loadData(e.name + "/" + name, e.methods[name]);
    if (!d.bytes) d.bytes = bytesOf(d.data);
    corr = { bytes: d.bytes, n: d.n, H: d.grid[0], W: d.grid[1], HW: d.grid[0] * d.grid[1], lo: d.score_lo,
      hi: d.score_hi, interpolation: d.interpolation };
    state.method = name;
    sel("method").value = name;
    const m = M.methods.find((x) => x.name === name);
    sel("method-description").textContent = name + ": " + (m ? m.description : "");
    legend();
    state.loaded = e.name + "/" + name;
    document.body.dataset.state = "ready";
    status(state.pinned ? "pinned on " + cat.images[state.source].id : ready());
    redraw(null);
  }

  async function setCategory(name) {
    const e = entry(name);
    if (!e) throw new Error("no category " + name);
    document.body.dataset.state = "loading";
    status("loading " + name + " …");
    corr = null;
    const payload = await loadData(name + "/images", e.images);
    cat = await prepareCategory(payload);
    state.category = name;
    sel("category").value = name;
    sel("labels").disabled = !cat.labels;
    sel("keypoints").disabled = !e.has_keypoints;
    buildGrid();
    // the first match: the centre of the first image's object box, until the pointer moves
    const b = cat.images[0].bbox;
    state.source = 0; state.pinned = false;
    state.point = [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2];
    const method = e.methods[state.method] ? state.method : Object.keys(e.methods)[0];
    await setMethod(method);
  }

  function init() {
    const cs = sel("category"), ms = sel("method");
    for (const c of M.categories) cs.add(new Option(c.name + " (" + c.n_images + ")", c.name));
    for (const m of M.methods) { const o = new Option(m.name, m.name); o.title = m.description; ms.add(o); }
    cs.addEventListener("change", () => setCategory(cs.value).catch(fail));
    ms.addEventListener("change", () => setMethod(ms.value).catch(fail));
    sel("labels").addEventListener("change", (e) => {
      state.labels = e.target.checked;
      for (const im of cat.images) drawBase(im);
    });
    sel("keypoints").addEventListener("change", (e) => { state.keypoints = e.target.checked; redraw(null); });
    state.method = M.methods[0].name;
    setCategory(M.categories[0].name).then(() => { window.viewerReadyAt = performance.now(); }).catch(fail);
  }
  function fail(err) { document.body.dataset.state = "error"; status("error: " + err.message); }

  window.viewer = {
    setCategory, setMethod,
    // move the point to image i's pixel (x, y) as a pointer event there would
    pointAt(i, x, y) { state.source = i; state.point = [x, y]; redraw(performance.now()); return state.markers; },
    // the page position (relative to the tile's canvas) of image i's pixel (x, y)
    tilePoint(i, x, y) { return toCanvas(cat.images[i], x, y); },
  };
  init();
})();
