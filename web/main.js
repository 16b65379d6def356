// The page: loads the shipped checkpoint (or one picked from disk), then draws samples and the
// density on the browser's WebGPU adapter through resflow's wasm module.
import init, { open } from "./resflow_web.js";

const EXTENT = 4;
const $ = (id) => document.getElementById(id);
let sampler = null;

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

// Viridis-like colour ramp, t in [0, 1].
function colour(t) {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const f = x - i;
  return stops[i].map((c, k) => Math.round(c + f * (stops[i + 1][k] - c)));
}

// values: res × res, rows from the top; drawn scaled to the canvas.
function paint(canvas, values, res) {
  const max = values.reduce((m, v) => Math.max(m, v), 0) || 1;
  const img = new ImageData(res, res);
  values.forEach((v, i) => {
    const [r, g, b] = colour(v / max);
    img.data.set([r, g, b, 255], 4 * i);
  });
  const tmp = new OffscreenCanvas(res, res);
  tmp.getContext("2d").putImageData(img, 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
}

function histogram(points, res) {
  const counts = new Float32Array(res * res);
  for (let i = 0; i < points.length; i += 2) {
    const fx = ((points[i] + EXTENT) / (2 * EXTENT)) * res;
    const fy = ((EXTENT - points[i + 1]) / (2 * EXTENT)) * res;
    if (fx >= 0 && fy >= 0 && fx < res && fy < res) counts[Math.floor(fy) * res + Math.floor(fx)] += 1;
  }
  return counts.map(Math.sqrt); // keeps sparse tails visible next to the modes
}

// The adapter as the browser describes it (wgpu's view of it often lacks the name).
async function adapterName() {
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  const info = adapter && (adapter.info || (adapter.requestAdapterInfo && (await adapter.requestAdapterInfo())));
  if (!info) return "";
  return [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(" ");
}

// Images [n, C, H, W] in [0, 1] as a square grid on the canvas.
function paintGrid(canvas, pixels, n, [c, h, w]) {
  const cols = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / cols);
  const img = new ImageData(cols * (w + 1) + 1, rows * (h + 1) + 1);
  img.data.fill(255);
  for (let k = 0; k < n; k++) {
    const [ox, oy] = [(k % cols) * (w + 1) + 1, Math.floor(k / cols) * (h + 1) + 1];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const at = (v) => Math.round(255 * pixels[((k * c + v) * h + y) * w + x]);
        const rgb = c >= 3 ? [at(0), at(1), at(2)] : [at(0), at(0), at(0)];
        img.data.set([...rgb, 255], 4 * ((oy + y) * img.width + ox + x));
      }
    }
  }
  const tmp = new OffscreenCanvas(img.width, img.height);
  tmp.getContext("2d").putImageData(img, 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const scale = Math.min(canvas.width / img.width, canvas.height / img.height);
  ctx.drawImage(tmp, 0, 0, img.width * scale, img.height * scale);
}

async function load(bytes, name) {
  status(`loading ${name}…`);
  sampler = await open(new Uint8Array(bytes));
  const image = sampler.kind() === "image";
  $("density").parentElement.style.display = image ? "none" : "";
  $("samples-caption").textContent = image ? "samples (a grid)" : "samples (histogram, [−4, 4]²)";
  if (image) {
    status(`${name}: ${sampler.describe()}\nadapter: ${(await adapterName()) || "unnamed"} — ${sampler.adapter()}`);
    return sampler;
  }
  const res = 100;
  const start = performance.now();
  const logp = await sampler.density(res, EXTENT);
  paint($("density"), logp.map(Math.exp), res);
  status(`${name}: ${sampler.describe()}\nadapter: ${(await adapterName()) || "unnamed"} — ${sampler.adapter()}\ndensity on a ${res}×${res} grid in ${(performance.now() - start).toFixed(0)} ms`);
  return sampler;
}

// Draws and shows samples; returns them (the browser test calls this through window.resflow).
async function draw(n, seed, temperature) {
  const image = sampler.kind() === "image";
  if (image) n = Math.min(n, 64);
  const start = performance.now();
  const points = await sampler.draw(n, BigInt(seed), temperature);
  const ms = performance.now() - start;
  if (image) paintGrid($("samples"), points, n, Array.from(sampler.image_shape()));
  else paint($("samples"), histogram(points, 100), 100);
  const lines = $("status").textContent.split("\n").filter((l) => !l.startsWith("drew "));
  const iterations = Array.from(sampler.iterations());
  status([...lines, `drew ${n} samples (seed ${seed}, temperature ${temperature}) in ${ms.toFixed(0)} ms; fixed-point iterations per block: ${iterations.join(", ")}`].join("\n"));
  return { points: Array.from(points), ms, iterations };
}

async function main() {
  await init();
  if (!navigator.gpu) throw new Error("this browser has no WebGPU (navigator.gpu is missing)");
  // ?model=F opens another checkpoint served beside the page.
  const model = new URLSearchParams(location.search).get("model") || "model.safetensors";
  const shipped = await fetch(model);
  if (!shipped.ok) throw new Error(`cannot fetch ${model}: ${shipped.status}`);
  await load(await shipped.arrayBuffer(), model);
  $("draw").onclick = () => draw(+$("n").value, +$("seed").value, +$("temperature").value).catch((e) => status(String(e), true));
  $("file").onchange = async (ev) => {
    const file = ev.target.files[0];
    if (file) await load(await file.arrayBuffer(), file.name).catch((e) => status(String(e), true));
  };
  await draw(+$("n").value, +$("seed").value, +$("temperature").value);
  window.resflow = { draw, sampler, ready: true };
}

window.resflow = { ready: false };
main().catch((e) => {
  status(String(e), true);
  window.resflow = { ready: false, error: String(e) };
});
