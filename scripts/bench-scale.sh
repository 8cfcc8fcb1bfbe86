#!/usr/bin/env bash
# The scale benchmark (issue 17): does data preparation and training start-up stay fast and
# bounded as the corpus grows to WMT size?
#
# First a reference: STEPS training updates of CONFIG from Multi30k's raw files (prepared into
# the run directory, as `locus train` does). Then, for each N (default 5,000,000): a synthetic
# corpus of N pairs resampled from Multi30k's training pairs (seeded, so lengths and vocabulary
# are realistic: scripts/resample-corpus.py), `locus prepare` on it, the Python `tokenizers`
# batch encoder on the same text with the same tokenizer.json (the reference rate, measured in
# the same run, on at most REF_PAIRS pairs), and STEPS training updates of CONFIG from the
# prepared dataset. One row per N: prepare wall time, pairs/s and tokens/s; the reference's
# pairs/s; peak RSS of prepare and of training (and training's difference from Multi30k's);
# seconds from the start of training to its first update (`setup_s` in metrics.jsonl).
#
# Last, configs/wmt14-en-de-base.toml in the same synthetic setting: its corpora replaced by
# WMT14_PAIRS (100,000) resampled pairs, prepared, then WMT14_STEPS (2) updates on the CPU in f32.
#
# usage: scripts/bench-scale.sh [N ...]          e.g. scripts/bench-scale.sh 29000 5000000 20000000
# env:   LOCUS (default target/release/locus, built if missing), CONFIG (configs/bench-cpu.toml),
#        STEPS (50), REF_PAIRS (1000000), WORK (a new temporary directory, removed at the end
#        unless KEEP=1). Needs python3 with `tokenizers` (pip install tokenizers) and GNU time.
# A 20M-pair corpus takes about 5.6 GB in WORK (text and prepared dataset).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sizes=("${@:-5000000}")
config=${CONFIG:-configs/bench-cpu.toml}
steps=${STEPS:-50}
ref_pairs=${REF_PAIRS:-1000000}
locus=${LOCUS:-target/release/locus}
work=${WORK:-$(mktemp -d -t locus-bench-scale-XXXXXX)}
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work"

[ -x /usr/bin/time ] || { echo "bench-scale: needs GNU time (apt-get install time)" >&2; exit 1; }
python3 -c 'import tokenizers' 2>/dev/null ||
  { echo "bench-scale: needs the Python tokenizers package (pip install tokenizers)" >&2; exit 1; }
[ -f data/multi30k/train.de.gz ] || scripts/get-multi30k.sh >/dev/null
[ -x "$locus" ] || cargo build --release -p locus-cli

# Runs a command under GNU time; prints "<wall seconds> <peak RSS KiB>" of it on stdout.
measure() {
  local log=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  cat "$work/time"
}

# Arithmetic on decimals: calc '<awk expression>'.
calc() { awk "BEGIN { print $1 }"; }

# `setup_s` of a run's first data record.
setup_seconds() {
  python3 -c 'import json,sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("event") == "data":
        print("%.1f" % r["setup_s"]); break' "$1/metrics.jsonl"
}

# STEPS updates of CONFIG into run directory $1, with extra settings after it; no BLEU, no
# checkpoint before the end.
train_steps() {
  local run=$1; shift
  measure "$run.log" "$locus" train --config "$config" --set "train.out_dir=$run" \
    --set train.max_steps="$steps" --set train.valid_bleu=false \
    --set train.valid_interval=1000000 --set train.save_interval=1000000 "$@"
}

echo "reference: $steps updates of $config from Multi30k's raw files" >&2
read -r _ ref_rss < <(train_steps "$work/run-multi30k")
ref_setup=$(setup_seconds "$work/run-multi30k")
printf 'Multi30k (raw files): training peak RSS %.2f GiB, %s s to the first update\n\n' \
  "$(calc "$ref_rss / 1048576")" "$ref_setup"

printf '| pairs | prepare | pairs/s | tokens/s | Python tokenizers pairs/s | prepare peak RSS | train peak RSS (vs Multi30k) | start to first update |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for n in "${sizes[@]}"; do
  dir="$work/n$n"
  mkdir -p "$dir"
  echo "N = $n: building the corpus" >&2
  python3 scripts/resample-corpus.py "$n" data/multi30k/train.de.gz data/multi30k/train.en.gz \
    "$dir/train.de" "$dir/train.en" --seed 1
  echo "N = $n: locus prepare" >&2
  read -r prep_s prep_rss < <(measure "$dir/prepare.log" "$locus" prepare --config "$config" \
    --set "data.train_src=$dir/train.de" --set "data.train_tgt=$dir/train.en" --out "$dir/prepared")
  tokens=$(python3 -c 'import json,sys
m = json.load(open(sys.argv[1]))
print(sum(c["src_tokens"] + c["tgt_tokens"] for c in m["corpora"]))' "$dir/prepared/manifest.json")
  echo "N = $n: Python tokenizers on the same text" >&2
  ref_rate=$(python3 - "$dir" "$ref_pairs" <<'EOF'
import itertools, sys, time
from tokenizers import Tokenizer
d, limit = sys.argv[1], int(sys.argv[2])
tok = Tokenizer.from_file(f"{d}/prepared/tokenizer.json")
with open(f"{d}/train.de", encoding="utf-8") as s, open(f"{d}/train.en", encoding="utf-8") as t:
    src = [l.rstrip("\n") for l in itertools.islice(s, limit)]
    tgt = [l.rstrip("\n") for l in itertools.islice(t, limit)]
encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # without offsets, where it exists
start = time.perf_counter()
encode(src, add_special_tokens=False)
encode(tgt, add_special_tokens=False)
print(round(len(src) / (time.perf_counter() - start)))
EOF
)
  echo "N = $n: $steps training updates from the prepared dataset" >&2
  read -r _ train_rss < <(train_steps "$dir/run" --set "data.prepared=$dir/prepared")
  setup=$(setup_seconds "$dir/run")
  printf '| %s | %.1f s | %.0f | %.0f | %s | %.2f GiB | %.2f GiB (%+.2f) | %s s |\n' \
    "$n" "$prep_s" "$(calc "$n / $prep_s")" "$(calc "$tokens / $prep_s")" "$ref_rate" \
    "$(calc "$prep_rss / 1048576")" "$(calc "$train_rss / 1048576")" \
    "$(calc "($train_rss - $ref_rss) / 1048576")" "$setup"
  rm -rf "$dir"
done

echo >&2
n=${WMT14_PAIRS:-100000}
dir="$work/wmt14"
mkdir -p "$dir"
echo "configs/wmt14-en-de-base.toml on $n resampled pairs: prepare, then ${WMT14_STEPS:-2} updates" >&2
python3 scripts/resample-corpus.py "$n" data/multi30k/train.en.gz data/multi30k/train.de.gz \
  "$dir/train.en" "$dir/train.de" --seed 2
wmt14=(--config configs/wmt14-en-de-base.toml
  --set "data.corpora=[{ src = \"$dir/train.en\", tgt = \"$dir/train.de\" }]"
  --set data.valid_src=data/multi30k/val.en.gz --set data.valid_tgt=data/multi30k/val.de.gz
  --set "data.prepared=$dir/prepared")
read -r prep_s prep_rss < <(measure "$dir/prepare.log" "$locus" prepare "${wmt14[@]}")
read -r train_s train_rss < <(measure "$dir/train.log" "$locus" train "${wmt14[@]}" --device cpu \
  --set train.precision=f32 --set "train.max_steps=${WMT14_STEPS:-2}" --set "train.out_dir=$dir/run" \
  --set train.valid_bleu=false)
grep -E "^(train|valid):|parameters" "$dir/train.log" >&2 || true
printf '\nwmt14-en-de-base on %s synthetic pairs: prepared in %.1f s (peak %.2f GiB); %s updates in %.0f s (peak %.2f GiB)\n' \
  "$n" "$prep_s" "$(calc "$prep_rss / 1048576")" "${WMT14_STEPS:-2}" "$train_s" "$(calc "$train_rss / 1048576")"
