#!/usr/bin/env bash
# One prepared check on a lent GPU machine (no Rust toolchain, no Vulkan loader there).
#
#   scripts/device-check.sh           prepare here: build, copy binaries to .device/bin/, fetch the
#                                     loader packages into .gl/, write .device/run.sh, print the
#                                     remote command and the carry list
#   scripts/device-check.sh --local   run .device/run.sh here (lavapipe), output in .device-local/
#
# The remote run writes at most 8 files under $OUT: summary.txt, info.txt, tests.log,
# bench.jsonl, bench.log, train.log, toy/log.csv, toy/figure.png.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
root="$(pwd)"
die() { echo "device-check: $*" >&2; exit 1; }
say() { echo "device-check: $*"; }

tests=(kernels vjp fusion conv residual image pool random)

write_run_sh() {
  local bin_at_build="$1"
  cat > .device/run.sh <<RUN
#!/usr/bin/env bash
# Written by scripts/device-check.sh. Runs in the repository root; writes under \$OUT.
# Every step runs under \`timeout\`; a step that fails does not stop the next. Total ≤ ~8 minutes.
set -uo pipefail
OUT="\${OUT:?set OUT to the output folder}"
mkdir -p "\$OUT"
bin=.device/bin
local_mode="\${RESFLOW_LOCAL:-0}"
bin_at_build='$bin_at_build'
RUN
  cat >> .device/run.sh <<'RUN'
# Knobs (local mode lightens them so lavapipe finishes in ~10 minutes).
if [[ "$local_mode" == 1 ]]; then
  budget="${DC_BUDGET:-570}" iters="${DC_ITERS:-150}" configs="${DC_CONFIGS:-small}"
  terms="${DC_TERMS:-2}" reps="${DC_REPS:-3}" test_timeout="${DC_TEST_TIMEOUT:-60}"
  train_timeout="${DC_TRAIN_TIMEOUT:-150}"
else
  budget="${DC_BUDGET:-470}" iters="${DC_ITERS:-2000}" configs="${DC_CONFIGS:-small,paper}"
  terms="${DC_TERMS:-2,5,10,20}" reps="${DC_REPS:-7}" test_timeout="${DC_TEST_TIMEOUT:-60}"
  train_timeout="${DC_TRAIN_TIMEOUT:-150}"
fi
start=$SECONDS
summary="$OUT/summary.txt"
: > "$summary"
: > "$OUT/tests.log"; : > "$OUT/bench.jsonl"; : > "$OUT/bench.log"

# step NAME LIMIT_S LOG CMD...: run CMD under timeout (capped by what is left of the budget),
# stdout to LOG (appended), stderr too unless ERRLOG is set; one summary line.
step() {
  local name="$1" limit="$2" log="$3"; shift 3
  local left=$(( budget - (SECONDS - start) ))
  if (( left < 5 )); then echo "$name: skipped (budget spent)" >> "$summary"; return; fi
  (( limit > left )) && limit=$left
  local t0=$SECONDS rc
  echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s)" >> "${ERRLOG:-$log}"
  timeout -k 5 "$limit" "$@" >> "$log" 2>> "${ERRLOG:-$log}"
  rc=$?
  local dt=$(( SECONDS - t0 )) state
  case $rc in 0) state=ok ;; 124|137) state="timed out" ;; *) state="failed (rc $rc)" ;; esac
  echo "$name: $state, ${dt}s" >> "$summary"
  echo "$name: $state, ${dt}s"
}

# 1. Vulkan loader (remote only; idempotent if the remote command already unpacked it).
if [[ "$local_mode" != 1 ]] && compgen -G ".gl/*.deb" > /dev/null; then
  t0=$SECONDS
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  echo "unpack loader: ok, $(( SECONDS - t0 ))s" >> "$summary"
else
  echo "unpack loader: skipped (local or no .gl/*.deb)" >> "$summary"
fi
if [[ "$local_mode" != 1 && -z "${VK_DRIVER_FILES:-}" ]] \
   && ! compgen -G "/usr/share/vulkan/icd.d/*.json" > /dev/null \
   && ! compgen -G "/etc/vulkan/icd.d/*.json" > /dev/null \
   && [[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  echo "driver: VK_DRIVER_FILES=$VK_DRIVER_FILES" >> "$summary"
fi
# tests/image.rs runs the binary at the path cargo compiled in; give it one there.
if [[ ! -x "$bin_at_build" ]] && mkdir -p "$(dirname "$bin_at_build")" 2>/dev/null; then
  ln -sf "$(pwd)/$bin/resflow" "$bin_at_build" 2>/dev/null || true
fi

# 2. Adapter.
{ uname -a; nvidia-smi -L 2>/dev/null; } > "$OUT/info.txt" 2>&1
step info 30 "$OUT/info.txt" "$bin/resflow" info

# 3. Test binaries (default profile: the gpu profile on a discrete GPU).
for t in kernels vjp fusion conv residual image pool random; do
  if [[ -x "$bin/$t" ]]; then
    step "test $t" "$test_timeout" "$OUT/tests.log" "$bin/$t" --test-threads=2
  else
    echo "test $t: missing binary" >> "$summary"
  fi
done

# 4. Benches: JSON rows to bench.jsonl, everything else to bench.log.
export ERRLOG="$OUT/bench.log"
step "bench kernels" 60 "$OUT/bench.jsonl" "$bin/resflow" bench --json --reps "$reps"
step "bench toy" 45 "$OUT/bench.jsonl" "$bin/resflow" bench toy --json --reps "$reps"
step "bench image $configs" 90 "$OUT/bench.jsonl" "$bin/resflow" bench image --configs "$configs" --json
step "bench memory conv $terms" 60 "$OUT/bench.jsonl" "$bin/resflow" bench memory --models conv --terms "$terms" --json
unset ERRLOG

# 5. Toy training (evaluations halfway and at the end, so a timeout still leaves a log).
half=$(( iters / 2 )); (( half < 1 )) && half=1
step "train toy $iters iters" "$train_timeout" "$OUT/train.log" \
  "$bin/resflow" train --iters "$iters" --eval-every "$half" --quiet --out "$OUT/toy"

# Keep only log.csv and figure.png from the run (8 files in all under $OUT).
if [[ -d "$OUT/toy" ]]; then
  find "$OUT/toy" -mindepth 1 ! -name log.csv ! -name figure.png -exec rm -rf {} + 2>/dev/null
fi
echo "total: $(( SECONDS - start ))s" >> "$summary"
cat "$summary"
RUN
  chmod +x .device/run.sh
}

prepare() {
  command -v cargo > /dev/null || die "needs cargo"
  command -v python3 > /dev/null || die "needs python3 (reads cargo's JSON messages)"
  say "cargo build --release"
  cargo build --release || die "cargo build --release failed"
  say "cargo test --release --no-run"
  local json
  json="$(cargo test --release --no-run --message-format=json 2> /dev/null)" || die "building the test binaries failed"
  rm -rf .device/bin && mkdir -p .device/bin
  cp target/release/resflow .device/bin/resflow || die "no target/release/resflow"
  local t path
  for t in "${tests[@]}"; do
    path="$(printf '%s\n' "$json" | python3 -c '
import json, sys
want = sys.argv[1]
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == want and "test" in m["target"]["kind"]:
        print(m["executable"])' "$t" | tail -n1)"
    [[ -n "$path" && -x "$path" ]] || die "no test binary for '$t'"
    cp "$path" ".device/bin/$t"
  done
  strip .device/bin/* || die "strip failed"

  if compgen -G ".gl/*.deb" > /dev/null; then
    say "loader packages already in .gl/"
  else
    say "downloading the Vulkan loader packages into .gl/"
    mkdir -p .gl /tmp/amd64/partial
    local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update > /dev/null || die "apt-get update failed"
    (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2) \
      || die "apt-get download failed"
  fi

  write_run_sh "$root/target/release/resflow"

  local kib
  kib="$(du -sk .device .gl | awk '{s += $1} END {print s}')"
  say "sizes: $(du -sh .device/bin | cut -f1) binaries, .device + .gl = $(( kib / 1024 )) MiB"
  (( kib < 60 * 1024 )) || die "carried folders are $(( kib / 1024 )) MiB, over 60 MiB"
  ls -l .device/bin .gl
  echo
  echo "remote command:"
  # shellcheck disable=SC2016  # printed for the remote shell, not expanded here
  echo 'for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; bash .device/run.sh'
  echo "carry: [\".gl\", \".device\"]"
}

local_run() {
  [[ -x .device/run.sh ]] || die "no .device/run.sh: run scripts/device-check.sh first"
  rm -rf .device-local && mkdir -p .device-local
  say "running .device/run.sh here, OUT=.device-local"
  OUT="$root/.device-local" RESFLOW_LOCAL=1 bash .device/run.sh
}

case "${1:-}" in
  "") prepare ;;
  --local) local_run ;;
  -h|--help) sed -n 2,11p "$0" ;;
  *) die "unknown argument '$1' (none, --local or --help)" ;;
esac
