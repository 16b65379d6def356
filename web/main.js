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

async function load(bytes, name) {
  status(`loading ${name}…`);
  sampler = await open(new Uint8Array(bytes));
  const res = 100;
  const start = performance.now();
  const logp = await sampler.density(res, EXTENT);
  paint($("density"), logp.map(Math.exp), res);
  status(`${name}: ${sampler.describe()}\nadapter: ${(await adapterName()) || "unnamed"} — ${sampler.adapter()}\ndensity on a ${res}×${res} grid in ${(performance.now() - start).toFixed(0)} ms`);
  return sampler;
}

// Draws and shows samples; returns them (the browser test calls this through window.resflow).
async function draw(n, seed, temperature) {
  const start = performance.now();
  const points = await sampler.draw(n, BigInt(seed), temperature);
  const ms = performance.now() - start;
  paint($("samples"), histogram(points, 100), 100);
  const lines = $("status").textContent.split("\n").filter((l) => !l.startsWith("drew "));
  const iterations = Array.from(sampler.iterations());
  status([...lines, `drew ${n} samples (seed ${seed}, temperature ${temperature}) in ${ms.toFixed(0)} ms; fixed-point iterations per block: ${iterations.join(", ")}`].join("\n"));
  return { points: Array.from(points), ms, iterations };
}

async function main() {
  await init();
  if (!navigator.gpu) throw new Error("this browser has no WebGPU (navigator.gpu is missing)");
  const shipped = await fetch("model.safetensors");
  if (!shipped.ok) throw new Error(`cannot fetch model.safetensors: ${shipped.status}`);
  await load(await shipped.arrayBuffer(), "model.safetensors");
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
