#!/usr/bin/env python3
"""Serves web/dist on 127.0.0.1 (default port 8000): python3 web/serve.py [PORT].

The plain http.server, with the WebAssembly MIME type that streaming compilation wants."""
import functools
import http.server
import pathlib
import sys

DIST = pathlib.Path(__file__).resolve().parent / "dist"


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".js": "text/javascript"}

    def log_message(self, *args):
        pass


def serve(port):
    handler = functools.partial(Handler, directory=str(DIST))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


if __name__ == "__main__":
    if not (DIST / "index.html").exists():
        sys.exit("web/dist is not built: run web/build.sh first")
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = serve(port)
    print(f"serving {DIST} on http://127.0.0.1:{port}/")
    server.serve_forever()
