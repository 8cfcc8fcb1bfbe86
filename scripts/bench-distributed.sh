#!/usr/bin/env bash
# The CPU scaling benchmark (issue 18): RANKS ranks of cores/RANKS threads each (`mpirun`)
# against 1 rank of all the cores, `locus bench train` on CONFIG, alternated ROUNDS times so
# that both see the same machine. Prints each run's tokens/s and the share of its steps spent
# summing gradients over the ranks, then the ratio of the medians (RANKS ranks over 1 rank).
#
# usage: scripts/bench-distributed.sh
# env:   CONFIG (configs/bench-cpu.toml), RANKS (2), ROUNDS (2), STEPS (10), WARMUP (2),
#        LOCUS (default target/release/locus, built with `--features mpi` if it lacks MPI).
# Needs Open MPI (scripts/test-distributed.sh installs it). Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

config=${CONFIG:-configs/bench-cpu.toml}
ranks=${RANKS:-2}
rounds=${ROUNDS:-2}
steps=${STEPS:-10}
warmup=${WARMUP:-2}
locus=${LOCUS:-target/release/locus}
cores=$(nproc)
threads=$((cores / ranks > 0 ? cores / ranks : 1))
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

command -v mpirun > /dev/null || { echo "bench-distributed: needs Open MPI (mpirun)" >&2; exit 1; }
if [ ! -x "$locus" ] || ! grep -q 'libmpi\.so' "$locus"; then
  cargo build --release -p locus-cli --features mpi
fi
[ -f data/multi30k/train.de.gz ] || scripts/get-multi30k.sh > /dev/null

# field KEY FILE: a number from the JSON line `bench train --json` prints last.
field() { tail -n 1 "$2" | grep -o "\"$1\":[-0-9.eE+]*" | cut -d: -f2; }

bench=(bench train --config "$config" --steps "$steps" --warmup "$warmup" --device cpu --json)
log=$(mktemp -d -t locus-bench-distributed-XXXXXX)
trap 'rm -rf "$log"' EXIT
one=() many=()
for round in $(seq "$rounds"); do
  "$locus" --threads "$cores" "${bench[@]}" > "$log/one" 2> "$log/one.err"
  mpirun --oversubscribe -np "$ranks" "$locus" --threads "$threads" "${bench[@]}" > "$log/many" 2> "$log/many.err"
  one+=("$(field tokens_per_s "$log/one")")
  many+=("$(field tokens_per_s "$log/many")")
  printf 'round %d: 1 rank x %d threads %.0f tokens/s; %d ranks x %d threads %.0f tokens/s, %.1f%% of each step summing gradients (%s)\n' \
    "$round" "$cores" "${one[-1]}" "$ranks" "$threads" "${many[-1]}" \
    "$(awk -v f="$(field communication_fraction "$log/many")" 'BEGIN { print 100 * f }')" \
    "$(grep -o 'summing gradients over the ranks: [0-9.]* ms per step' "$log/many" | grep -o '[0-9.]* ms per step')"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
awk -v a="$(median "${many[@]}")" -v b="$(median "${one[@]}")" -v r="$ranks" -v t="$threads" -v c="$cores" \
  'BEGIN { printf "median: %d ranks x %d threads / 1 rank x %d threads = %.0f / %.0f tokens/s = %.2fx\n", r, t, c, a, b, a / b }'
