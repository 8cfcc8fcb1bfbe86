#!/usr/bin/env bash
# Trains configs/pe-compare-de-en.toml once per positional encoding (same data, model, seed and
# step budget), evaluates each best checkpoint on test_2016_flickr, and writes a Markdown table
# to runs/pe-compare/results.md. Finished runs are skipped on a re-run; interrupted ones continue.
# Pass kinds to run a subset, e.g. `scripts/compare-positional.sh rope alibi`.
#
# `--max-train-len N` (first argument) is the length-generalisation study instead: training pairs
# with a side longer than N subword tokens are dropped (`data.max_train_len`), and the test set is
# scored by source length in buckets 1-N, N+1 to N+5, N+6 to N+10 and longer; results go to
# runs/pe-compare-len<N>/results.md. Thread counts come from the environment, e.g. two halves of
# the kinds at once: `RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 scripts/compare-positional.sh ...`.
set -euo pipefail
cd "$(dirname "$0")/.."

max_train_len=""
if [ "${1:-}" = --max-train-len ]; then
  max_train_len=${2:?--max-train-len needs a number of tokens}
  shift 2
fi
scripts/get-multi30k.sh >/dev/null
# LOCUS=path/to/locus uses that binary instead of building one.
locus=${LOCUS:-target/release/locus}
[ -n "${LOCUS:-}" ] || cargo build --release -p locus-cli
out=runs/pe-compare${max_train_len:+-len$max_train_len}
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || mapfile -t kinds < <("$locus" pe list)  # every kind
evaluation=()
if [ -n "$max_train_len" ]; then
  n=$max_train_len
  buckets="1-$n,$((n + 1))-$((n + 5)),$((n + 6))-$((n + 10)),$((n + 11))-"
  evaluation=(--by-length "$buckets")
fi

for kind in "${kinds[@]}"; do
  run="$out/$kind"
  if [ ! -f "$run/test.json" ]; then
    settings=(--set "model.positional.kind=$kind" --set "train.out_dir=$run")
    [ "$kind" = learned ] && settings+=(--set model.positional.max_len=101)
    [ -n "$max_train_len" ] && settings+=(--set "data.max_train_len=$max_train_len")
    [ -e "$run/last" ] && settings+=(--resume)  # an interrupted run continues
    "$locus" train --config configs/pe-compare-de-en.toml "${settings[@]}"
    "$locus" evaluate --checkpoint "$run/best" --json "${evaluation[@]}" \
      --src data/multi30k/test_2016_flickr.de.gz --ref data/multi30k/test_2016_flickr.en.gz > "$run/test.json"
  fi
done

# field NAME FILE: the number after "NAME": in a JSON line, outside its by_length list.
field() { sed 's/"by_length":\[[^]]*\]//' "$2" | grep -o "\"$1\":[-0-9.e]*" | sed -n 1p | cut -d: -f2; }
# buckets FILE: "bucket sentences bleu" per line of the JSON's by_length list (keys come sorted).
buckets() {
  grep -o '{"bleu":[^}]*}' "$1" | sed -E 's/.*"bleu":([^,]*),"bucket":"([^"]*)".*"sentences":([0-9]*).*/\2 \3 \1/'
}
# The median over log windows: robust to the odd window slowed by other work on the machine.
median_rate() {
  grep '"event":"train"' "$1" | grep -o '"tokens_per_s":[0-9.]*' | cut -d: -f2 |
    sort -g | awk '{ v[n++] = $1 } END { if (n) printf "%.0f", v[int(n / 2)] }'
}
finished=()
for run in "$out"/*/; do
  [ -f "$run/test.json" ] && finished+=("$run")
done

if [ -z "$max_train_len" ]; then
  {
    echo "| encoding | parameters | train tokens/s (median) | best valid ppl | BLEU | chrF |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for run in "${finished[@]}"; do
      params=$(grep '"event":"model"' "$run/metrics.jsonl" | tail -n 1 | grep -o '"parameters":[0-9]*' | cut -d: -f2)
      ppl=$(grep '"event":"valid"' "$run/metrics.jsonl" | grep -o '"ppl":[0-9.]*' | cut -d: -f2 | sort -g | sed -n 1p)
      printf '| %s | %s | %s | %.2f | %.2f | %.2f |\n' "$(basename "$run")" "$params" \
        "$(median_rate "$run/metrics.jsonl")" "$ppl" "$(field bleu "$run/test.json")" "$(field chrf "$run/test.json")"
    done
  } | tee "$out/results.md"
  exit 0
fi

[ ${#finished[@]} -gt 0 ] || exit 0
{
  echo "Trained on pairs of at most $max_train_len subword tokens a side; BLEU on test_2016_flickr by"
  echo "source length in tokens (sentences per bucket in the header)."
  echo
  header="| encoding | train pairs kept |"
  rule="| --- | ---: |"
  while read -r bucket sentences _; do
    header+=" BLEU $bucket ($sentences) |"
    rule+=" ---: |"
  done < <(buckets "${finished[0]}/test.json")
  echo "$header BLEU all | chrF all |"
  echo "$rule ---: | ---: |"
  for run in "${finished[@]}"; do
    kept=$(grep -o '"event":"data"[^}]*' "$run/metrics.jsonl" | grep -o '"train_pairs":[0-9]*' | sed -n 1p | cut -d: -f2)
    line="| $(basename "$run") | ${kept:-?} |"
    while read -r _ _ bleu; do
      line+=" $([ "$bleu" = null ] && echo - || printf '%.2f' "$bleu") |"
    done < <(buckets "$run/test.json")
    printf '%s %.2f | %.2f |\n' "$line" "$(field bleu "$run/test.json")" "$(field chrf "$run/test.json")"
  done
} | tee "$out/results.md"
