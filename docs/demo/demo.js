// The demo page: a drawing preprocessed as MNIST was, classified by onnxruntime-web.
// window.xpnetClassify(pixels) is the page's entry point for tests and the console.
(function () {
  "use strict";
  const here = document.currentScript.src;
  const SIZE = 28, BOX = 20; // MNIST: digits fitted in a 20x20 box, centred by mass in 28x28

  ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page
  ort.env.wasm.wasmPaths = new URL("ort/", here).href;
  const session = ort.InferenceSession.create(new URL("model.onnx", here).href,
                                              { executionProviders: ["wasm"] });

  function softmax(scores) {
    const max = Math.max(...scores);
    const exps = scores.map((s) => Math.exp(s - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    return exps.map((e) => e / sum);
  }

  // pixels: 784 numbers in [0, 1], row-major 28x28, white on black; used as given
  async function xpnetClassify(pixels) {
    if (pixels == null || pixels.length !== SIZE * SIZE) {
      throw new Error(`xpnetClassify needs 784 pixel values (28x28, row-major), got ${pixels == null ? pixels : pixels.length}`);
    }
    const s = await session;
    const x = new ort.Tensor("float32", Float32Array.from(pixels), [1, SIZE * SIZE]);
    const result = await s.run({ [s.inputNames[0]]: x });
    return softmax(Array.from(result[s.outputNames[0]].data));
  }
  window.xpnetClassify = xpnetClassify;

  // The drawing as MNIST's preprocessing would give it: a Float32Array of 784 values.
  function preprocess(canvas) {
    const { width, height } = canvas;
    const ink = canvas.getContext("2d").getImageData(0, 0, width, height).data;
    let top = height, left = width, bottom = -1, right = -1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (ink[4 * (y * width + x)] > 0) {
          top = Math.min(top, y); bottom = Math.max(bottom, y);
          left = Math.min(left, x); right = Math.max(right, x);
        }
      }
    }
    const out = new Float32Array(SIZE * SIZE);
    if (bottom < 0) return out; // nothing drawn
    const w = right - left + 1, h = bottom - top + 1;
    const scale = BOX / Math.max(w, h);
    const sw = Math.max(1, Math.round(w * scale)), sh = Math.max(1, Math.round(h * scale));
    const small = document.createElement("canvas");
    small.width = sw; small.height = sh;
    const sctx = small.getContext("2d");
    sctx.imageSmoothingEnabled = true;
    sctx.imageSmoothingQuality = "high";
    sctx.drawImage(canvas, left, top, w, h, 0, 0, sw, sh);
    const data = sctx.getImageData(0, 0, sw, sh).data;
    const value = new Float32Array(sw * sh);
    let mass = 0, mx = 0, my = 0;
    for (let y = 0; y < sh; y++) {
      for (let x = 0; x < sw; x++) {
        const v = data[4 * (y * sw + x)] / 255;
        value[y * sw + x] = v;
        mass += v; mx += v * (x + 0.5); my += v * (y + 0.5);
      }
    }
    if (mass === 0) return out;
    const dx = Math.round(SIZE / 2 - mx / mass), dy = Math.round(SIZE / 2 - my / mass);
    for (let y = 0; y < sh; y++) {
      for (let x = 0; x < sw; x++) {
        const tx = x + dx, ty = y + dy;
        if (tx >= 0 && tx < SIZE && ty >= 0 && ty < SIZE) out[ty * SIZE + tx] = value[y * sw + x];
      }
    }
    return out;
  }

  function showInput(pixels) {
    const ctx = document.getElementById("xpnet-input").getContext("2d");
    const image = ctx.createImageData(SIZE, SIZE);
    pixels.forEach((v, i) => {
      const g = Math.round(v * 255);
      image.data.set([g, g, g, 255], 4 * i);
    });
    ctx.putImageData(image, 0, 0);
  }

  // probabilities null: no drawing, empty bars
  function showProbabilities(probabilities) {
    const shown = probabilities ?? new Array(10).fill(0);
    const top = probabilities ? shown.indexOf(Math.max(...shown)) : -1;
    const bars = document.getElementById("xpnet-bars");
    bars.replaceChildren(...shown.map((p, digit) => {
      const row = document.createElement("div");
      row.className = "xpnet-bar" + (digit === top ? " xpnet-bar--top" : "");
      row.dataset.digit = String(digit);
      row.dataset.probability = String(p);
      row.innerHTML = `<span>${digit}</span><span class="xpnet-bar__track"><span class="xpnet-bar__fill" style="display:block;width:${(100 * p).toFixed(1)}%"></span></span><span class="xpnet-bar__value">${(100 * p).toFixed(1)}%</span>`;
      return row;
    }));
    document.getElementById("xpnet-prediction").textContent = top < 0 ? "–" : String(top);
  }

  function setUp() {
    const canvas = document.getElementById("xpnet-canvas");
    if (!canvas) return;
    const ctx = canvas.getContext("2d");
    const status = document.getElementById("xpnet-status");
    const clear = () => {
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      showInput(new Float32Array(SIZE * SIZE));
      showProbabilities(null);
    };
    clear();
    session.then(() => { status.textContent = "ready: draw a digit"; },
                 (error) => { status.textContent = `the model did not load: ${error}`; });

    let last = null;
    const point = (event) => {
      const box = canvas.getBoundingClientRect();
      return [(event.clientX - box.left) * canvas.width / box.width,
              (event.clientY - box.top) * canvas.height / box.height];
    };
    const stroke = (from, to) => {
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 22; // MNIST's strokes are about a tenth of the digit's box
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(...from);
      ctx.lineTo(...to);
      ctx.stroke();
    };
    const classify = async () => {
      const pixels = preprocess(canvas);
      showInput(pixels);
      showProbabilities(await xpnetClassify(pixels));
    };
    canvas.addEventListener("pointerdown", (event) => {
      last = point(event);
      stroke(last, last);
      try { canvas.setPointerCapture(event.pointerId); } catch (_) { /* synthetic events */ }
    });
    canvas.addEventListener("pointermove", (event) => {
      if (last === null) return;
      const next = point(event);
      stroke(last, next);
      last = next;
    });
    const end = () => {
      if (last === null) return;
      last = null;
      classify().catch((error) => { status.textContent = String(error); });
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    document.getElementById("xpnet-clear").addEventListener("click", clear);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUp);
  else setUp();
})();
