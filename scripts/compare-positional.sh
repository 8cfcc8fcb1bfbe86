#!/usr/bin/env bash
# Trains configs/pe-compare-de-en.toml once per positional encoding (same data, model, seed and
# step budget), evaluates each best checkpoint on test_2016_flickr, and writes a Markdown table
# to runs/pe-compare/results.md. Finished runs are skipped on a re-run; interrupted ones continue. Pass kinds to run a
# subset, e.g. `scripts/compare-positional.sh rope alibi`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/get-multi30k.sh >/dev/null
cargo build --release -p locus-cli
locus=target/release/locus
out=runs/pe-compare
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(none sinusoidal learned relative t5 rope alibi)

for kind in "${kinds[@]}"; do
  run="$out/$kind"
  if [ ! -f "$run/test.json" ]; then
    settings=(--set "model.positional.kind=$kind" --set "train.out_dir=$run")
    [ "$kind" = learned ] && settings+=(--set model.positional.max_len=101)
    [ -e "$run/last" ] && settings+=(--resume)  # an interrupted run continues
    "$locus" train --config configs/pe-compare-de-en.toml "${settings[@]}"
    "$locus" evaluate --checkpoint "$run/best" --json \
      --src data/multi30k/test_2016_flickr.de.gz --ref data/multi30k/test_2016_flickr.en.gz > "$run/test.json"
  fi
done

# field NAME FILE: the first number after "NAME": in a JSON line.
field() { grep -o "\"$1\":[-0-9.e]*" "$2" | head -n 1 | cut -d: -f2; }
{
  echo "| encoding | parameters | train tokens/s (median) | best valid ppl | BLEU | chrF |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for run in "$out"/*/; do
    kind=$(basename "$run")
    [ -f "$run/test.json" ] || continue
    params=$(grep '"event":"model"' "$run/metrics.jsonl" | tail -n 1 | grep -o '"parameters":[0-9]*' | cut -d: -f2)
    # The median over log windows: robust to the odd window slowed by other work on the machine.
    rate=$(grep '"event":"train"' "$run/metrics.jsonl" | grep -o '"tokens_per_s":[0-9.]*' | cut -d: -f2 |
      sort -g | awk '{ v[n++] = $1 } END { if (n) printf "%.0f", v[int(n / 2)] }')
    ppl=$(grep '"event":"valid"' "$run/metrics.jsonl" | grep -o '"ppl":[0-9.]*' | cut -d: -f2 | sort -g | head -n 1)
    printf '| %s | %s | %s | %.2f | %.2f | %.2f |\n' "$kind" "$params" "$rate" "$ppl" \
      "$(field bleu "$run/test.json")" "$(field chrf "$run/test.json")"
  done
} | tee "$out/results.md"
