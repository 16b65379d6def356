#!/usr/bin/env bash
# Builds the web page into web/dist: the wasm module (wasm32-unknown-unknown, then
# wasm-bindgen's JavaScript glue), the page and the model it ships with.
# Needs: rustup target add wasm32-unknown-unknown; cargo install wasm-bindgen-cli --version
# 0.2.130 (the version of the wasm-bindgen crate in web/Cargo.toml). WASM_BINDGEN may name the
# CLI if it is not on PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bindgen="${WASM_BINDGEN:-wasm-bindgen}"
want="$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' "$here/Cargo.toml")"
have="$("$bindgen" --version 2>/dev/null | awk '{print $2}')" || true
if [ "$have" != "$want" ]; then
    echo "build.sh: wasm-bindgen-cli $want is needed (found: ${have:-none}); cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
cargo build --release --target wasm32-unknown-unknown --manifest-path "$here/Cargo.toml"
rm -rf "$here/dist"
mkdir -p "$here/dist"
"$bindgen" --target web --no-typescript --out-dir "$here/dist" \
    "$here/target/wasm32-unknown-unknown/release/resflow_web.wasm"
cp "$here/index.html" "$here/main.js" "$here/model.safetensors" "$here/dist/"
echo "built $here/dist ($(du -sh "$here/dist" | cut -f1))"
