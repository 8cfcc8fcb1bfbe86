#!/usr/bin/env bash
# Reproduces published Multi30k results end to end on this machine and writes README's
# "Results" table: for each config given (default configs/multi30k-en-de-tok.toml), train from
# scratch, average the last 5 checkpoints, translate every test set with beam 5, and score with
# `locus score`:
#   - configs named `*-tok.toml` train on the authors' lower-cased, tokenized text (tok/) and are
#     scored as the papers do: BLEU with sacreBLEU's `--tokenize none` on the tokenized references;
#   - other configs train on raw text and are scored with sacreBLEU's defaults (13a, cased) on the
#     raw references.
# Of the two checkpoints (the best by validation BLEU, and the average of the last 5), the one
# with the higher validation BLEU (beam 5) gives the reported row; both are in the log.
#
# Usage: scripts/reproduce-multi30k.sh [CONFIG ...] [-- LOCUS TRAIN ARGUMENTS]
# (e.g. `-- --set 'model.positional.kind="rope"'`: arguments after `--` go to every `locus train`
# and are the row's "changes"). Environment: LOCUS_BIN, a `locus` binary to use instead of
# building the release one; LOCUS_RESULTS_DIR, where runs go (default runs/reproduce-multi30k);
# LOCUS_README, the file whose table is updated (default README.md).
# A row is keyed by its config and changes: a run trains into its own directory (the config's
# name, then the changes when there are any), a second run with the same key continues (or
# reuses) its training, and its row replaces the table's row with that key; rows with other
# keys stay. CI runs a smoke version with a tiny model (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

configs=()
train_args=()
while [[ $# -gt 0 ]]; do
  if [[ $1 == -- ]]; then
    shift
    train_args=("$@")
    break
  fi
  configs+=("$1")
  shift
done
if [[ ${#configs[@]} -eq 0 ]]; then
  configs=(configs/multi30k-en-de-tok.toml)
fi
results=${LOCUS_RESULTS_DIR:-runs/reproduce-multi30k}
readme=${LOCUS_README:-README.md}
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT

# The row's "changes" cell: each argument after `--` but `--set` in backquotes (a `|` in a
# Markdown table cell is written `\|`), or "—" for the config as committed.
changes="—"
if [[ ${#train_args[@]} -gt 0 ]]; then
  changes=$(printf '%s\n' "${train_args[@]}" | grep -vx -- --set | sed 's/|/\\|/g; s/.*/`&`/' | paste -sd ' ')
fi
# The run directory's suffix: the changes in characters safe in a file name, or their hash
# when that would make the name too long.
suffix=""
if [[ ${#train_args[@]} -gt 0 ]]; then
  suffix=$(printf '%s ' "${train_args[@]}" | sed 's/--set //g; s/ *$//; s/[^A-Za-z0-9._=-]/_/g')
  if [[ ${#suffix} -gt 120 ]]; then
    suffix=$(printf '%s\n' "${train_args[@]}" | sha1sum | cut -c1-12)
  fi
  suffix="+$suffix"
fi

scripts/get-multi30k.sh
locus=${LOCUS_BIN:-target/release/locus}
if [[ -z ${LOCUS_BIN:-} ]]; then
  cargo build --release -p locus-cli
fi

# Published figures the rows are compared with: config name → "BLEU (source)".
declare -A published=(
  [multi30k-en-de-tok]="41.02 (Wu et al., ACL 2021, fairseq transformer_tiny)"
)

# Prints the value of the JSON number field $2 in the last line of $1 that contains $3.
json_field() { grep -- "$3" "$1" | tail -n 1 | sed -n "s/.*\"$2\":\([-0-9.e]*\).*/\1/p"; }

for config in "${configs[@]}"; do
  name=$(basename "$config" .toml)
  run="$results/$name$suffix"
  # multi30k-<src>-<tgt>[-tok]
  pair=${name#multi30k-}
  src=${pair%%-*}
  rest=${pair#*-}
  tgt=${rest%%-*}
  if [[ $name == *-tok ]]; then
    data() { echo "data/multi30k/tok/$1.lc.norm.tok.$2.gz"; }
    score_args=(--tokenize none)
  else
    data() { echo "data/multi30k/$1.$2.gz"; }
    score_args=()
  fi

  started=$(date +%s)
  resume=()
  if [[ -e "$run/last" ]]; then
    resume=(--resume)
  fi
  echo "== $name: training into $run =="
  "$locus" train --config "$config" "${resume[@]}" --set "train.out_dir=\"$run\"" \
    "${train_args[@]}"

  echo "== $name: averaging the last 5 checkpoints =="
  rm -rf "$run/averaged"
  "$locus" average --last 5 --out "$run/averaged" "$run"

  # BLEU (score only) of checkpoint $1 on split $2, beam 5; the translation and the full
  # report go to $run/eval/.
  bleu() {
    local checkpoint=$1 split=$2
    local hyp="$run/eval/$(basename "$checkpoint").$split.$tgt"
    "$locus" translate --checkpoint "$checkpoint" --beam 5 --input "$(data "$split" "$src")" \
      --output "$hyp"
    "$locus" score --hyp "$hyp" --ref "$(data "$split" "$tgt")" "${score_args[@]}" \
      --metrics bleu --width 2 > "$hyp.score"
    cat "$hyp.score" >&2
    sed -n 's/^BLEU|[^ ]* = \([0-9.]*\) .*/\1/p' "$hyp.score"
  }
  mkdir -p "$run/eval"
  echo "== $name: validation BLEU, beam 5 =="
  best_valid=$(bleu "$run/best" val)
  averaged_valid=$(bleu "$run/averaged" val)
  chosen="$run/best"
  chosen_label="best (validation BLEU)"
  if awk -v a="$averaged_valid" -v b="$best_valid" 'BEGIN { exit !(a > b) }'; then
    chosen="$run/averaged"
    chosen_label="average of last 5"
  fi
  echo "validation BLEU: best $best_valid, average of last 5 $averaged_valid; testing $chosen_label"

  cells=()
  signature=""
  for split in test_2016_flickr test_2017_flickr test_2017_mscoco; do
    if [[ -f $(data "$split" "$src") && -f $(data "$split" "$tgt") ]]; then
      echo "== $name: $split, beam 5 =="
      cells+=("$(bleu "$chosen" "$split")")
      # A `|` inside a Markdown table cell is written `\|`.
      signature=$(sed -n 's/^BLEU|\([^ ]*\) = .*/\1/p' "$run/eval/$(basename "$chosen").$split.$tgt.score" |
        sed 's/|/\\|/g')
    else
      cells+=("n/a")
    fi
  done
  finished=$(date +%s)

  metrics="$run/metrics.jsonl"
  steps=$(json_field "$metrics" step '"event":"stop"')
  train_s=$(json_field "$metrics" wall_s '"event":"stop"')
  tokens_per_s=$(json_field "$metrics" tokens_per_s '"event":"train"')
  # As trained: `--set` may have changed the config's encoding.
  positional=$(sed -n '/^\[model.positional\]/,/^\[/s/^kind = "\(.*\)"/\1/p' "$run/config.toml")
  row=$(printf '| `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f min | %.0f | `%s` |' \
    "$name" "$changes" "$src→$tgt" "$positional" "$chosen_label" "${cells[0]}" "${cells[1]}" \
    "${cells[2]}" "${published[$name]:-}" "$steps" \
    "$(awk -v s="$train_s" 'BEGIN { print s / 60 }')" "$tokens_per_s" "$signature")
  echo "$row" >> "$rows"
  echo "== $name: done in $(awk -v s=$((finished - started)) 'BEGIN { printf "%.0f", s / 60 }') min (training $(awk -v s="$train_s" 'BEGIN { printf "%.0f", s / 60 }') min) =="
  echo "$row"
done

# The table in $readme, between its markers: each new row replaces the row with its config and
# changes (the first two cells), or is added at the end; the other rows stay.
header='| config | changes | pair | PE | checkpoint | test2016 | test2017 | mscoco2017 | published test2016 | updates | training | tokens/s | BLEU signature |'
awk -v rows="$rows" -v header="$header" '
  function key(line, cells) { split(line, cells, " \\| "); return cells[1] " | " cells[2] }
  BEGIN { while ((getline line < rows) > 0) { fresh[key(line)] = line; order[++n] = key(line) } }
  /^<!-- results: written by/ {
    print; print header
    print "| --- | --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |"
    inside = 1; next
  }
  inside && /^<!-- results: end -->/ {
    for (i = 1; i <= n; i++) if (!(order[i] in written)) { print fresh[order[i]]; written[order[i]] = 1 }
    inside = 0; print; next
  }
  inside && /^\| `/ {
    k = key($0)
    if (k in fresh) { if (!(k in written)) print fresh[k]; written[k] = 1 } else print
    next
  }
  inside { next }
  { print }
' "$readme" > "$readme.new"
mv "$readme.new" "$readme"
echo "$readme: Results table updated with $(wc -l < "$rows") row(s)"
