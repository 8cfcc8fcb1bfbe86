#!/usr/bin/env bash
# int8 against f32 decoding on one checkpoint (issue 21): `locus bench translate` with
# `--quantize none` and `--quantize int8` alternated ROUNDS times, greedy and with beam 4, on
# test_2016_flickr in batches of BATCH; then BLEU of each (`locus evaluate`, sacreBLEU's
# default signature), greedy and beam 4. Prints each run's sentences/s, the ratio of the
# medians (int8 over f32) and the BLEU difference.
#
# usage: scripts/bench-int8.sh [CHECKPOINT]     (default runs/multi30k-de-en/best)
# env:   ROUNDS (2), BATCH (100), SRC/REF (other test files), LOCUS (a locus binary to use
#        instead of building one). Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

checkpoint=${1:-runs/multi30k-de-en/best}
rounds=${ROUNDS:-2}
batch=${BATCH:-100}
src=${SRC:-data/multi30k/test_2016_flickr.de.gz}
ref=${REF:-data/multi30k/test_2016_flickr.en.gz}
locus=${LOCUS:-target/release/locus}
[ -n "${LOCUS:-}" ] || cargo build --release -p locus-cli
[ -f "$src" ] || scripts/get-multi30k.sh > /dev/null

# field KEY FILE: a number from the JSON line a `--json` command prints last.
field() { tail -n 1 "$2" | grep -o "\"$1\":[-0-9.eE+]*" | cut -d: -f2; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

log=$(mktemp -d -t locus-bench-int8-XXXXXX)
trap 'rm -rf "$log"' EXIT
echo "checkpoint $checkpoint, $src, batches of $batch, $(nproc) cores"
for beam in 1 4; do
  f32=() int8=()
  for round in $(seq "$rounds"); do
    for quantize in none int8; do
      "$locus" bench translate --checkpoint "$checkpoint" --input "$src" --batch-size "$batch" \
        --beam "$beam" --quantize "$quantize" --device cpu --json > "$log/$quantize" 2> "$log/err"
    done
    f32+=("$(field sentences_per_s "$log/none")")
    int8+=("$(field sentences_per_s "$log/int8")")
    printf 'beam %d, round %d: f32 %.1f sentences/s, int8 %.1f sentences/s\n' "$beam" "$round" "${f32[-1]}" "${int8[-1]}"
  done
  for quantize in none int8; do
    "$locus" evaluate --checkpoint "$checkpoint" --src "$src" --ref "$ref" --batch-size "$batch" \
      --beam "$beam" --quantize "$quantize" --device cpu --json > "$log/bleu-$quantize" 2> "$log/err"
  done
  awk -v a="$(median "${int8[@]}")" -v b="$(median "${f32[@]}")" -v beam="$beam" \
    -v q="$(field bleu "$log/bleu-int8")" -v f="$(field bleu "$log/bleu-none")" \
    'BEGIN { printf "beam %d: int8 / f32 = %.1f / %.1f sentences/s = %.2fx; BLEU int8 %.2f, f32 %.2f (%+.2f)\n", beam, a, b, a / b, q, f, q - f }'
done
