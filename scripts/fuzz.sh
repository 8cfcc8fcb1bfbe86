#!/usr/bin/env bash
# The long fuzz campaign (issue 19): every reader of user files (config TOML, corpus files,
# tokenizer.json, checkpoints of format 1 and 2, state.json, metrics.jsonl, prepared datasets)
# gets CASES random or damaged inputs, and each must read them or refuse them with an error,
# never panic (crates/locus-train/tests/fuzz_readers.rs; CI runs the same tests with 256 inputs
# each). Prints each reader's counts; exits non-zero on the first panic, with the smallest input
# that causes it.
#
# usage: scripts/fuzz.sh [CASES]      (default 100000; about 40 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."

export FUZZ_CASES=${1:-100000}
log=$(mktemp -t locus-fuzz-XXXXXX)
trap 'rm -f "$log"' EXIT
echo "fuzzing every reader with $FUZZ_CASES inputs (release build)"
status=0
cargo test --release -p locus-train --test fuzz_readers -- --nocapture --test-threads=2 > "$log" 2>&1 || status=$?
grep -ao 'fuzz .*' "$log" | sort
if [ "$status" != 0 ]; then
  grep -a -A20 'panicked\|minimal failing input' "$log" | head -60 >&2
  echo "fuzz: a reader panicked (full log above)" >&2
fi
exit "$status"
