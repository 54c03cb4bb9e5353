#!/usr/bin/env bash
# Runs every cargo-fuzz target for a while (default 60 s each) from its committed seed
# corpus, and prints how many inputs each executed. Installs cargo-fuzz if missing.
# libFuzzer needs unstable compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# (the only one on our machines) provide them.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

run() { # dir target
  local dir="$1" target="$2"
  # A scratch copy of the corpus: new inputs the run finds do not dirty the clone.
  mkdir -p "$work/$target"
  cp -r "$dir/corpus/$target/." "$work/$target/" 2>/dev/null || true
  echo "== fuzz $target for ${secs}s"
  (cd "$dir" && cargo fuzz run "$target" "$work/$target" -- -max_total_time="$secs" \
      -rss_limit_mb=2048 -timeout=10 2>&1) | grep -E "^Done|ERROR|panicked|deadly signal" || true
  # cargo fuzz exits non-zero on a crash; run again without the filter to fail loudly.
  if [ -n "$(ls "$dir"/artifacts/"$target" 2>/dev/null)" ]; then
    echo "fuzz target $target found a crash: $dir/artifacts/$target" >&2
    exit 1
  fi
}

for t in transaction_decode transaction_json export_read; do run fuzz "$t"; done
run journal/fuzz scan
