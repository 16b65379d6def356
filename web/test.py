#!/usr/bin/env python3
"""The web page in a real browser: serves web/dist on 127.0.0.1, opens it in headless Chromium
on its software WebGPU adapter (SwiftShader), draws samples with a fixed seed through the page,
and checks they equal what the native `resflow-sample draw` writes for the same checkpoint and
seed, to 1e-4. Saves a screenshot of the page.

    python3 web/test.py --sampler target/release/resflow-sample [--screenshot docs/web_sampler.png]

Chromium is driven over the DevTools protocol (a WebSocket on 127.0.0.1), with no packages
beyond Python's standard library."""
import argparse
import base64
import json
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import serve  # noqa: E402  (web/serve.py)

WEB = pathlib.Path(__file__).resolve().parent
N, SEED, TEMPERATURE, TOLERANCE = 2000, 7, 1.0, 1e-4
# The density grid the page is asked for: RES × RES over [−EXTENT, EXTENT]², rows from the top.
RES, EXTENT = 24, 4.0
# Images the image model's check draws.
IMAGES = 16


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevTools:
    """The smallest WebSocket client the DevTools protocol needs: text frames, masked."""

    def __init__(self, url):
        host, rest = url.removeprefix("ws://").split("/", 1)
        addr, port = host.split(":")
        self.sock = socket.create_connection((addr, int(port)), timeout=120)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(4096)
        if b" 101 " not in response.split(b"\r\n")[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {response[:200]!r}")
        self.buffer = response.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0
        # What the page printed (console, log entries, uncaught exceptions), for failures.
        self.console = []

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _frame(self):
        head = self._read(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read(8))[0]
        return head[0] & 0x0F, self._read(length)

    def _message(self):
        text = b""
        while True:
            opcode, payload = self._frame()
            if opcode == 8:
                raise RuntimeError("DevTools closed the connection")
            if opcode in (0, 1):
                text += payload
                if opcode == 1 or opcode == 0:
                    return json.loads(text)

    def call(self, method, **params):
        self.next_id += 1
        data = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        while True:
            message = self._message()
            method_name = message.get("method", "")
            if method_name == "Runtime.consoleAPICalled":
                args = message["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif method_name == "Log.entryAdded":
                self.console.append(message["params"]["entry"].get("text", ""))
            elif method_name == "Runtime.exceptionThrown":
                self.console.append(str(message["params"]["exceptionDetails"]))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


def native_samples(sampler, checkpoint):
    out = subprocess.run([sampler, "draw", "--checkpoint", str(checkpoint), "--n", str(N), "--seed", str(SEED),
                          "--temperature", str(TEMPERATURE), "--out", "-"], capture_output=True, text=True, check=True)
    return [float(v) for line in out.stdout.splitlines()[1:] for v in line.split(",")]


def wait_ready(tools):
    deadline = time.time() + 300
    while True:
        state = tools.evaluate("JSON.stringify(window.resflow || {})")
        state = json.loads(state) if state else {}
        if state.get("ready"):
            return
        if state.get("error"):
            sys.exit(f"web test: the page failed: {state['error']}")
        if time.time() > deadline:
            sys.exit(f"web test: the page was not ready within 300 s: {tools.evaluate('document.body.innerText')}")
        time.sleep(1)


def make_image_checkpoint(sampler):
    """A small 8×8-digits model trained a few steps by the training program beside `sampler`."""
    out = pathlib.Path(tempfile.mkdtemp(prefix="resflow-web-image-"))
    resflow = pathlib.Path(sampler).with_name("resflow")
    subprocess.run([str(resflow), "train", "--dataset", "digits", "--iters", "3", "--blocks", "1", "--scales", "1",
                    "--width", "8", "--batch", "16", "--out", str(out), "--quiet"], check=True, capture_output=True)
    return out / "checkpoint.safetensors"


def native_density(sampler, checkpoint):
    """log p on the page's grid, scored by the native program (the grid's points as the page's
    wasm computes them, in f32)."""
    f32 = lambda x: struct.unpack("f", struct.pack("f", x))[0]
    step = f32(f32(2 * EXTENT) / RES)
    lines = ["x,y"]
    for row in range(RES):
        for col in range(RES):
            x = f32(-EXTENT + f32(f32(col + 0.5) * step))
            y = f32(EXTENT - f32(f32(row + 0.5) * step))
            lines.append(f"{x!r},{y!r}")
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        out = subprocess.run([sampler, "score", "--checkpoint", str(checkpoint), "--points", f.name, "--out", "-"],
                             capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    return [float(v) for v in out.stdout.splitlines()[1:]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sampler", required=True, help="the native resflow-sample to compare with")
    ap.add_argument("--screenshot", default=None, help="where to save a PNG of the page")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args()
    if not (WEB / "dist" / "index.html").exists():
        sys.exit("web test: web/dist is not built (run web/build.sh)")

    server = serve.serve(free_port())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page_url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    debug_port = free_port()
    profile = tempfile.mkdtemp(prefix="resflow-chromium-")
    browser = subprocess.Popen(
        [args.chromium, "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader",
         "--disable-gpu-sandbox", "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-quic", f"--user-data-dir={profile}", "--window-size=860,720",
         f"--remote-debugging-address=127.0.0.1", f"--remote-debugging-port={debug_port}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/list", timeout=5) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("web test: Chromium's DevTools did not answer within 60 s")
            time.sleep(0.5)
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        tools.call("Page.enable")
        tools.call("Emulation.setDeviceMetricsOverride", width=820, height=660, deviceScaleFactor=1, mobile=False)
        tools.call("Runtime.enable")
        tools.call("Log.enable")
        tools.call("Page.navigate", url=page_url)
        wait_ready(tools)
        # The page as it opens: the shipped model's density and its first draw.
        if args.screenshot:
            shot = tools.call("Page.captureScreenshot", format="png")
            pathlib.Path(args.screenshot).write_bytes(base64.b64decode(shot["data"]))
            print(f"screenshot: {args.screenshot}")
        drawn = tools.evaluate(f"window.resflow.draw({N}, {SEED}, {TEMPERATURE})")
        density = tools.evaluate(f"window.resflow.sampler.density({RES}, {EXTENT}).then(Array.from)")
        # An image model: the page draws a grid of it.
        image_ck = make_image_checkpoint(args.sampler)
        shutil.copy(image_ck, WEB / "dist" / "image-test.safetensors")
        tools.call("Page.navigate", url=page_url + "?model=image-test.safetensors")
        wait_ready(tools)
        images = tools.evaluate(f"window.resflow.draw({IMAGES}, {SEED}, 1.0)")
        if args.screenshot:
            shot = tools.call("Page.captureScreenshot", format="png")
            image_shot = pathlib.Path(args.screenshot).with_name(pathlib.Path(args.screenshot).stem + "_images.png")
            image_shot.write_bytes(base64.b64decode(shot["data"]))
        page_text = tools.evaluate("document.getElementById('status').innerText")
        print(page_text)
        for line in tools.console:
            print(f"page console: {line}")
    finally:
        browser.kill()
        browser.wait()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)

    web_points = drawn["points"]
    native = native_samples(args.sampler, WEB / "model.safetensors")
    if len(web_points) != len(native):
        sys.exit(f"web test: the page drew {len(web_points) // 2} points, the native sampler {len(native) // 2}")
    diffs = sorted(((abs(a - b), i) for i, (a, b) in enumerate(zip(web_points, native))), reverse=True)
    worst = diffs[0][0]
    over = [d for d in diffs if d[0] > TOLERANCE]
    if over:
        print(f"{len(over)} of {len(diffs)} coordinates differ by more than {TOLERANCE:g}; the largest:")
        for d, i in over[:5]:
            print(f"  point {i // 2}: page {web_points[i]:.6f}, native {native[i]:.6f}")
    print(f"{N} samples, seed {SEED}: largest |page − native| = {worst:.2e} (tolerance {TOLERANCE:g}); "
          f"the page took {drawn['ms']:.0f} ms")
    if not worst <= TOLERANCE:
        sys.exit("web test: the page's samples differ from the native sampler's")
    pixels, iterations = images["points"], images["iterations"]
    print(f"image model: {IMAGES} images of 8×8 drawn in {images['ms']:.0f} ms, fixed-point iterations {iterations}")
    if len(pixels) != IMAGES * 64 or not all(0.0 <= v <= 1.0 for v in pixels) or not iterations:
        sys.exit("web test: the page's image samples are not 16 images of 8×8 pixels in [0, 1]")
    native_lp = native_density(args.sampler, WEB / "model.safetensors")
    worst_lp = max(abs(a - b) for a, b in zip(density, native_lp))
    print(f"log p on a {RES}×{RES} grid: largest |page − native| = {worst_lp:.2e}")
    if len(density) != RES * RES or not worst_lp <= TOLERANCE:
        sys.exit("web test: the page's density differs from the native score")


if __name__ == "__main__":
    main()
