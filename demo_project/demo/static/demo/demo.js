// The demo page: draw on a canvas, downsample to the 8x8 grid the model was trained on
// (scikit-learn's digits: ink high, 0..16), ask over the WebSocket, show the answer.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen");
const statusEl = document.getElementById("status");
const predictionEl = document.getElementById("prediction");

// ---------------------------------------------------------------- the socket
const scheme = location.protocol === "https:" ? "wss" : "ws";
const pending = new Map(); // id -> {resolve, sent}
let nextId = 1;
let socket;

function connect() {
  socket = new WebSocket(`${scheme}://${location.host}/ws/tfbatch/`);
  socket.onopen = () => setStatus("open", "connected");
  socket.onclose = () => {
    setStatus("closed", "disconnected; retrying…");
    for (const waiter of pending.values()) waiter.resolve({ error: { code: "disconnected", message: "socket closed" } });
    pending.clear();
    setTimeout(connect, 1000);
  };
  socket.onmessage = (event) => {
    const answer = JSON.parse(event.data);
    const waiter = pending.get(answer.id);
    if (waiter) {
      pending.delete(answer.id);
      waiter.resolve(answer);
    }
  };
}

function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

function ask(pixels) {
  const id = nextId++;
  return new Promise((resolve) => {
    pending.set(id, { resolve });
    socket.send(JSON.stringify({ id, model: "digits", inputs: [pixels] }));
  });
}

// ---------------------------------------------------------------- drawing
ctx.lineCap = "round";
ctx.lineJoin = "round";
ctx.lineWidth = 22;
ctx.strokeStyle = "#fff";
let drawing = false;
let inked = false;

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  inked = true;
  pad.setPointerCapture(event.pointerId);
  const [x, y] = point(event);
  ctx.beginPath();
  ctx.moveTo(x, y);
  ctx.lineTo(x + 0.01, y);
  ctx.stroke();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  ctx.lineTo(x, y);
  ctx.stroke();
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    predict();
  });
}

document.getElementById("clear").addEventListener("click", () => {
  ctx.clearRect(0, 0, pad.width, pad.height);
  inked = false;
  predictionEl.textContent = "–";
  predictionEl.dataset.state = "none";
  document.getElementById("probabilities").innerHTML = "";
  document.getElementById("batch-info").textContent = "";
  drawSeen(new Array(8).fill(0).map(() => new Array(8).fill(0)));
});

// The digit's bounding box, made square and centred with a small margin, averaged into
// 8x8 cells: how the data set's 32x32 bitmaps were reduced to 8x8 counts.
function pixels() {
  const { data, width, height } = ctx.getImageData(0, 0, pad.width, pad.height);
  let top = height, left = width, bottom = -1, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (data[(y * width + x) * 4] > 0) {
        if (y < top) top = y;
        if (y > bottom) bottom = y;
        if (x < left) left = x;
        if (x > right) right = x;
      }
    }
  }
  const grid = new Array(8).fill(0).map(() => new Array(8).fill(0));
  if (bottom < 0) return grid;
  const side = Math.max(bottom - top, right - left) * 1.1 + 1;
  const cy = (top + bottom) / 2, cx = (left + right) / 2;
  const y0 = cy - side / 2, x0 = cx - side / 2, cell = side / 8;
  for (let gy = 0; gy < 8; gy++) {
    for (let gx = 0; gx < 8; gx++) {
      let sum = 0, count = 0;
      for (let y = Math.floor(y0 + gy * cell); y < y0 + (gy + 1) * cell; y++) {
        for (let x = Math.floor(x0 + gx * cell); x < x0 + (gx + 1) * cell; x++) {
          count++;
          if (y >= 0 && y < height && x >= 0 && x < width) sum += data[(y * width + x) * 4] / 255;
        }
      }
      grid[gy][gx] = Math.round((16 * sum) / Math.max(count, 1) * 100) / 100;
    }
  }
  return grid;
}

function drawSeen(grid) {
  seen.dataset.pixels = JSON.stringify(grid); // what was sent, for the browser test to check
  const c = seen.getContext("2d");
  const s = seen.width / 8;
  for (let y = 0; y < 8; y++) {
    for (let x = 0; x < 8; x++) {
      const v = Math.round((grid[y][x] / 16) * 255);
      c.fillStyle = `rgb(${v},${v},${v})`;
      c.fillRect(x * s, y * s, s, s);
    }
  }
}

async function predict() {
  const grid = pixels();
  drawSeen(grid);
  predictionEl.dataset.state = "waiting";
  const answer = await ask(grid);
  if (answer.error) {
    predictionEl.textContent = "!";
    predictionEl.dataset.state = "error";
    document.getElementById("batch-info").textContent = `${answer.error.code}: ${answer.error.message}`;
    return;
  }
  const probs = answer.outputs[0];
  const best = probs.indexOf(Math.max(...probs));
  predictionEl.textContent = String(best);
  predictionEl.dataset.state = "done";
  document.getElementById("confidence").textContent = `(${(probs[best] * 100).toFixed(1)} %)`;
  const list = document.getElementById("probabilities");
  list.innerHTML = "";
  probs.forEach((p, digit) => {
    const li = document.createElement("li");
    if (digit === best) li.className = "best";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(1, p * 200)}px`;
    li.append(`${digit}: `, bar, ` ${(p * 100).toFixed(1)} %`);
    list.append(li);
  });
  const b = answer.batch;
  document.getElementById("batch-info").textContent =
    `ran in a batch of ${b.size}; queued ${b.queue_ms} ms, model ${b.run_ms} ms`;
}

// ---------------------------------------------------------------- burst
document.getElementById("burst").addEventListener("click", async () => {
  const n = Math.max(1, Math.min(256, Number(document.getElementById("burst-n").value) || 1));
  const result = document.getElementById("burst-result");
  result.dataset.state = "running";
  result.textContent = `sending ${n}…`;
  const grid = pixels();
  const t0 = performance.now();
  const answers = await Promise.all(Array.from({ length: n }, () => ask(grid)));
  const ms = performance.now() - t0;
  const sizes = new Map();
  let errors = 0;
  for (const a of answers) {
    if (a.error) errors++;
    else sizes.set(a.batch.size, (sizes.get(a.batch.size) || 0) + 1);
  }
  result.dataset.state = "done";
  result.textContent = `${n - errors} answers, ${errors} errors in ${ms.toFixed(0)} ms`;
  const body = document.querySelector("#burst-sizes tbody");
  body.innerHTML = "";
  for (const [size, count] of [...sizes.entries()].sort((a, b) => a[0] - b[0])) {
    const row = document.createElement("tr");
    row.innerHTML = `<td>${size}</td><td>${count}</td>`;
    body.append(row);
  }
});

connect();
