#!/usr/bin/env bash
# The whole gate: formatting, lints, every test (unit, integration with real droverd and real
# containers, the lxc 5.0.2 and pylxd compatibility tests) and the doc tests. Needs root.
set -euo pipefail
# Root is needed (packages, containers, mounts): re-run through sudo when not root.
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo -E "$0" "$@"
  fi
  echo "$(basename "$0"): run it as root (it installs packages and runs containers)" >&2
  exit 1
fi
cd "$(dirname "$0")/.."

# Disk: a CI machine once ran out of space linking the ~40 test binaries. Line tables (not
# full debug info) keep panics' file:line backtraces; incremental caches only help repeated
# local builds. With both, target/ ends near 4 GB (fresh clone, session 11).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
echo "--- disk before the build: $(df -h --output=avail . | tail -1 | tr -d ' ') free" >&2

scripts/install-deps.sh
if ! command -v cargo-nextest >/dev/null 2>&1 && ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing: cargo-nextest (crates.io)" >&2
  cargo install --locked cargo-nextest
fi

echo "--- cargo fmt --check" >&2
cargo fmt --all --check
echo "--- cargo clippy -D warnings" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "--- build the binaries the integration tests run" >&2
cargo build --workspace --bins --locked
echo "--- tests (nextest)" >&2
cargo nextest run --workspace --locked --no-fail-fast
echo "--- doc tests" >&2
cargo test --workspace --doc --locked
echo "--- disk after the tests: target/ $(du -sh target 2>/dev/null | cut -f1), $(df -h --output=avail . | tail -1 | tr -d ' ') free" >&2
