#!/usr/bin/env bash
# Kept benchmark for issue 4: builds the engine in release mode, creates a
# virtual environment with vigipy 3.5.1 from PyPI (once), then runs
# `signal bench`, which generates the synthetic FAERS files (once), times
# trellis end to end and vigipy on the same pair table, and prints ratios.
#   usage: crates/trellis-signal/reference/run_bench.sh [REPORTS] [extra bench args]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
reports="${1:-1000000}"; shift || true
venv="${VIGIPY_VENV:-/tmp/trellis-vigipy-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import vigipy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "vigipy==3.5.1"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build --release -q -p trellis-signal --example signal
"$CARGO_TARGET_DIR/release/examples/signal" bench --reports "$reports" \
  --vigipy-python "$venv/bin/python" --vigipy-script "$here/vigipy_bench.py" "$@"
