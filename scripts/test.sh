#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh Debian/Ubuntu
# machine (the rocksdb crate's bindgen needs libclang; the FileStore tests format XFS
# and btrfs images), then runs the whole workspace's tests. Extra arguments go to
# `cargo test` (of the workspace run).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(libclang-dev xfsprogs btrfs-progs)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The heavy tests append what they covered (crash states, injection points, kills,
# bit flips) here; cargo hides a passing test's output, so it is printed after them.
coverage=$(mktemp /tmp/ostore-coverage.XXXXXX)
# Most of the heavy tests wait on fsync, child processes and the filesystem, not on the
# CPU (a kill test's profile: 58% idle): twice as many test threads as CPUs took the
# FileStore binary from 355 s to 299 s on a 2-vCPU machine. A caller's setting wins.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$(($(nproc) * 2))}"
trap 'rm -f "$coverage"' EXIT
OSTORE_COVERAGE=$coverage cargo test --workspace "$@"
echo "== what the heavy tests covered"
sort "$coverage"
# The apply scheduler's model checks: its locks become shuttle's, so only these run
# in that build (see os/src/sched.rs).
cargo test -p ostore-os --features shuttle --lib sched:: -- --nocapture
# The same for the journal's group commit (see journal/src/journal/model.rs).
cargo test -p ostore-journal --features shuttle --lib model:: -- --nocapture
