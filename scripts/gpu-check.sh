#!/usr/bin/env bash
# The GPU check: one prepared run of everything a GPU machine must show, in about 8 minutes,
# ending with one Markdown table (stage, result, limit or expectation, pass/fail, seconds).
#
#   (a) parity: `locus bench parity` on configs/tiny.toml, the CPU against the GPU on the same
#       weights and batch: init identical, f32 logits within 1e-4, bf16 loss within 1e-2 of the
#       f32 loss (relative), weights after one f32 update within 1e-5;
#   (a'') the same parity for every positional kind that `locus pe list` names;
#   (a') exact resume on the device: configs/tiny.toml with every dropout at 0.1 (masks drawn
#       by the device's generator, reseeded from the run's dropout stream at every forward
#       pass) trained 20 updates straight, and 10 then resumed to 20: the same final loss and
#       byte-identical weights;
#   (b) learning in bf16: the foundation test (crates/locus-train/tests/learn_copy.rs) as a
#       one-cell lab, configs/gpu-check-copy.toml (500 updates rather than the test's 300):
#       at least 95% exact match copying unseen sequences;
#   (c) `locus bench train` in bf16 on configs/bench-cpu.toml and on configs/bench-base.toml
#       (Transformer-base): tokens/s and MFU against this GPU's own bf16 matmul rate;
#   (d) a short bf16 training of configs/multi30k-de-en.toml, then `locus bench translate` of
#       test_2016_flickr, greedy and beam 4;
#   (e) in a build with `nccl` (scripts/build-cuda.sh --features nccl): `locus bench all-reduce`
#       on the device, world size 1, through NCCL: every sum exact (marked n/a in other builds).
#
# On the GPU machine (no Rust toolchain or network needed) put, in one directory:
#   dist/cuda/          from scripts/build-cuda.sh: the binary and the CUDA libraries it loads
#                       (or only dist/cuda/locus when the machine's own CUDA 13 libraries are on
#                       the loader path: this script adds the binary's directory,
#                       /usr/local/cuda*/lib64 and pip's nvidia/*/lib directories it finds);
#   configs/, scripts/gpu-check.sh, and data/multi30k/*.gz (from scripts/get-multi30k.sh).
# Then, from anywhere:
#   LOCUS=dist/cuda/locus scripts/gpu-check.sh
# It exits non-zero if any check fails. Logs, JSON records and the table go to $LOG_DIR.
#
# Environment (defaults for an H200; smaller values make a CPU smoke test, e.g.
#   DEVICE=cpu THREADS=2 BENCH_STEPS=2 BENCH_WARMUP=1 BENCH_SETS=data.max_tokens=512 \
#   MT_STEPS=10 TRANSLATE_LINES=50 BUDGET_S=900 \
#   MT_SETS="train.valid_bleu=false train.best_metric=nll data.max_tokens=512" \
#   scripts/gpu-check.sh):
#   LOCUS            the binary (default dist/cuda/locus, else target/release/locus)
#   DEVICE           cuda (default), cuda:N, or cpu
#   THREADS          passed as `locus --threads N` (default: locus's own, one per core)
#   LOG_DIR          default runs/gpu-check
#   BUDGET_S         total seconds (default 480); each stage's timeout is cut to what is left
#   BENCH_STEPS, BENCH_WARMUP   timed and untimed steps of each `bench train` (20, 3)
#   BENCH_SETS       extra `--set` values, space-separated, for both `bench train` runs
#   COPY_STEPS       updates of the copy task (500; see configs/gpu-check-copy.toml)
#   COPY_MIN_EXACT   exact match it must reach (0.95)
#   MT_STEPS         updates of the Multi30k training (400)
#   MT_SETS          extra `--set` values for it
#   TRANSLATE_LINES  test sentences translated (default all 1,000)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${LOCUS:-}" ]; then
  LOCUS=$root/dist/cuda/locus
  [ -x "$LOCUS" ] || LOCUS=$root/target/release/locus
fi
[ -x "$LOCUS" ] || { echo "error: no locus binary at $LOCUS (set LOCUS)" >&2; exit 2; }
LOCUS=$(cd "$(dirname "$LOCUS")" && pwd)/$(basename "$LOCUS")
cd "$root"

DEVICE=${DEVICE:-cuda}
LOG_DIR=${LOG_DIR:-runs/gpu-check}
BUDGET_S=${BUDGET_S:-480}
BENCH_STEPS=${BENCH_STEPS:-20}
BENCH_WARMUP=${BENCH_WARMUP:-3}
BENCH_SETS=${BENCH_SETS:-}
COPY_STEPS=${COPY_STEPS:-500}
COPY_MIN_EXACT=${COPY_MIN_EXACT:-0.95}
MT_STEPS=${MT_STEPS:-400}
MT_SETS=${MT_SETS:-}
TRANSLATE_LINES=${TRANSLATE_LINES:-}

# The loader path: the binary's own directory first (dist/cuda/ ships the CUDA libraries), then
# the usual system and pip locations of CUDA 13 libraries.
lib_dirs=("$(dirname "$LOCUS")")
for dir in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
  /usr/local/lib/python3*/dist-packages/nvidia/*/lib /usr/lib/python3/dist-packages/nvidia/*/lib \
  "$HOME"/.local/lib/python3*/site-packages/nvidia/*/lib /opt/conda/lib/python3*/site-packages/nvidia/*/lib; do
  if [ -d "$dir" ]; then lib_dirs+=("$dir"); fi
done
if command -v python3 > /dev/null; then
  while IFS= read -r dir; do
    if [ -d "$dir" ]; then lib_dirs+=("$dir"); fi
  done < <(python3 -c 'import glob, nvidia; [print(d) for p in nvidia.__path__ for d in glob.glob(p + "/*/lib")]' 2> /dev/null || true)
fi
# An nccl build links Open MPI; dist/cuda/openmpi/ holds a copy for machines without one.
if [ -d "$(dirname "$LOCUS")/openmpi" ] && ! ldconfig -p 2> /dev/null | grep -q 'libmpi\.so\.40 '; then
  lib_dirs+=("$(dirname "$LOCUS")/openmpi")
fi
LD_LIBRARY_PATH=$(IFS=:; echo "${lib_dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH

locus=("$LOCUS")
if [ -n "${THREADS:-}" ]; then locus+=(--threads "$THREADS"); fi

# A previous check's log directory is replaced; any other non-empty directory is left alone.
if [ -n "$(ls -A "$LOG_DIR" 2> /dev/null)" ]; then
  [ -f "$LOG_DIR/parity.log" ] || { echo "error: $LOG_DIR is not empty and holds no earlier check" >&2; exit 2; }
  rm -rf "$LOG_DIR"
fi
mkdir -p "$LOG_DIR"
data=data/multi30k
for file in train.de.gz train.en.gz val.de.gz val.en.gz test_2016_flickr.de.gz; do
  [ -f "$data/$file" ] || { echo "error: $data/$file missing (scripts/get-multi30k.sh)" >&2; exit 2; }
done

started=$EPOCHREALTIME
rows=()
failed=0

# row STAGE RESULT LIMIT VERDICT SECONDS: one line of the final table; a FAIL fails the run (n/a:
# a stage this binary cannot run).
row() {
  rows+=("| $1 | $2 | $3 | $4 | $5 |")
  [ "$4" = pass ] || [ "$4" = n/a ] || failed=1
  echo "== $1: $2 ($3) $4" >&2
}

since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }'; }

# stage NAME CAP_S COMMAND...: runs COMMAND with its output in $LOG_DIR/NAME.log, under a timeout
# of CAP_S or what is left of the budget; sets rc (124 on timeout, 125 when no time was left)
# and secs, and stage_log to the log's path.
stage() {
  local name=$1 cap=$2
  shift 2
  local left=$((BUDGET_S - $(since "$started")))
  local limit=$((cap < left ? cap : left))
  local t0=$EPOCHREALTIME
  stage_log=$LOG_DIR/$name.log
  echo "== $name (timeout ${limit} s): $*" >&2
  rc=0
  if [ "$limit" -lt 5 ]; then
    rc=125
    echo "no time left in the budget" > "$stage_log"
  else
    timeout --kill-after=15 "$limit" "$@" > "$stage_log" 2>&1 || rc=$?
  fi
  secs=$(since "$t0")
}

# json KEY FILE: a top-level scalar of the last JSON object line of FILE ("" if absent); an error
# message may follow it (a failed parity check prints its record, then the error).
json() { grep '^{' "$2" | tail -n 1 | grep -o "\"$1\":[^,}]*" | sed -n 1p | cut -d: -f2- | tr -d '"' || true; }

# holds VALUE OP LIMIT: whether VALUE is a number (not null, not empty) with VALUE OP LIMIT, OP
# one of <=, >=, >.
holds() {
  [[ $1 =~ ^-?[0-9.]+([eE][-+]?[0-9]+)?$ ]] &&
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { exit !(op == "<=" ? v <= l : op == ">=" ? v >= l : v > l) }'
}

verdict() { if "$@"; then echo pass; else echo FAIL; fi; }

# why RC: what went wrong with the last stage, if anything, as the start of its result.
why() {
  case $1 in
    0) echo "" ;;
    124) echo "timed out (${stage_log}); " ;;
    125) echo "skipped, budget spent; " ;;
    *) echo "exit $1 (${stage_log}); " ;;
  esac
}

# --set arguments from a space-separated list.
sets() { local item; for item in $1; do printf -- '--set\n%s\n' "$item"; done; }

if [ "$DEVICE" != cpu ] && command -v nvidia-smi > /dev/null; then
  nvidia-smi > "$LOG_DIR/nvidia-smi.log" 2>&1 || true
fi

# (a) Parity of the CPU and the device.
stage parity 90 "${locus[@]}" bench parity --config configs/tiny.toml --device "$DEVICE" --json
for check in "init init_max_abs_diff 0" "logits logits_max_abs_diff 1e-4" \
  "bf16_loss loss_rel_diff 1e-2" "step step_max_abs_diff 1e-5"; do
  read -r name key limit <<< "$check"
  value=$(json "$key" "$LOG_DIR/parity.log")
  shown=$(holds "$value" ">=" 0 && awk -v v="$value" 'BEGIN { printf "%.3g", v }' || echo "${value:-none}")
  row "parity $name" "$(why $rc)$shown" "≤ $limit" "$(verdict holds "$value" "<=" "$limit")" "$secs"
  secs=""
done

# (a'') The same parity for every positional kind (`locus pe list`): each kind's frame, built
# from tables cached per device, on the device against the CPU.
kinds_t0=$EPOCHREALTIME
kinds_ok=() kinds_bad=()
for kind in $("${locus[@]}" pe list); do
  case $kind in
    learned) positional='{kind="learned",max_len=65}' ;; # tiny.toml: data.max_len = 64, plus BOS/EOS
    *) positional="{kind=\"$kind\"}" ;;
  esac
  stage "parity-$kind" 60 "${locus[@]}" bench parity --config configs/tiny.toml --device "$DEVICE" \
    --set "model.positional=$positional" --json
  if [ "$rc" = 0 ]; then kinds_ok+=("$kind"); else kinds_bad+=("$kind"); fi # exits 1 on a failed check
done
row "parity of every positional kind" "${#kinds_ok[@]} passed${kinds_bad[*]:+, failed: ${kinds_bad[*]}}" \
  "all pass" "$(verdict test ${#kinds_bad[@]} = 0 -a ${#kinds_ok[@]} -gt 0)" "$(since "$kinds_t0")"

# (a') Exact resume on the device, dropout included.
tiny=("${locus[@]}" train --config configs/tiny.toml --device "$DEVICE" --set model.dropout=0.1
  --set model.attention_dropout=0.1 --set model.activation_dropout=0.1)
resume_t0=$EPOCHREALTIME
stage resume-whole 60 "${tiny[@]}" --set "train.out_dir=\"$LOG_DIR/resume-whole\"" --set train.max_steps=20
resume_rc=$rc
stage resume-first 60 "${tiny[@]}" --set "train.out_dir=\"$LOG_DIR/resume-split\"" --set train.max_steps=10
[ "$rc" = 0 ] || resume_rc=$rc
stage resume-rest 60 "${tiny[@]}" --set "train.out_dir=\"$LOG_DIR/resume-split\"" --set train.max_steps=20 \
  --resume
[ "$rc" = 0 ] || resume_rc=$rc
last_loss() { grep '"event":"train"' "$LOG_DIR/$1/metrics.jsonl" 2> /dev/null | tail -n 1 | grep -o '"loss":[^,}]*' | cut -d: -f2 || true; }
whole_loss=$(last_loss resume-whole)
split_loss=$(last_loss resume-split)
same_weights=no
if cmp -s "$LOG_DIR/resume-whole/last/model.safetensors" "$LOG_DIR/resume-split/last/model.safetensors"; then
  same_weights=yes
fi
ok=$(verdict test "$resume_rc" = 0 -a -n "$whole_loss" -a "$whole_loss" = "$split_loss" -a "$same_weights" = yes)
row "resume 10 + 10 vs 20 updates, dropout on the device" \
  "$(why "$resume_rc")loss ${whole_loss:-none} vs ${split_loss:-none}, weights identical: $same_weights" \
  "equal" "$ok" "$(since "$resume_t0")"

# (b) The foundation test's accuracy, trained in bf16.
stage copy 150 "${locus[@]}" lab --config configs/gpu-check-copy.toml --device "$DEVICE" \
  --set "out_dir=\"$LOG_DIR/copy\"" --set 'run.train.precision="bf16"' \
  --set "run.train.max_steps=$COPY_STEPS"
exact=$(grep -o '"exact_match": [0-9.eE+-]*' "$LOG_DIR/copy/results.json" 2> /dev/null | sed -n 1p | cut -d' ' -f2 || true)
ok=$(verdict holds "$exact" ">=" "$COPY_MIN_EXACT")
[ "$rc" = 0 ] || ok=FAIL
row "copy task, bf16, $COPY_STEPS updates" "$(why $rc)exact match ${exact:-none}" "≥ $COPY_MIN_EXACT" "$ok" "$secs"

# (c) Training throughput in bf16, MFU against the bf16 matmul.
mapfile -t bench_sets < <(sets "$BENCH_SETS")
for config in bench-cpu bench-base; do
  stage "$config" 150 "${locus[@]}" bench train --config "configs/$config.toml" \
    --set 'train.precision="bf16"' "${bench_sets[@]}" --device "$DEVICE" \
    --steps "$BENCH_STEPS" --warmup "$BENCH_WARMUP" --json
  log=$LOG_DIR/$config.log
  tokens=$(json tokens_per_s "$log")
  mfu=$(json mfu "$log")
  dtype=$(json matmul_dtype "$log")
  matmul=$(json matmul_flops_per_s "$log")
  result="$(why $rc)${tokens%.*} tokens/s, MFU ${mfu:0:5} ($dtype matmul $(awk -v f="${matmul:-0}" 'BEGIN { printf "%.3g", f / 1e12 }') TFLOP/s)"
  ok=$(verdict holds "$mfu" ">" 0)
  { [ "$rc" = 0 ] && [ "$dtype" = bf16 ]; } || ok=FAIL
  row "bench train $config, bf16" "$result" "runs; MFU against the bf16 matmul" "$ok" "$secs"
done

# (d) A short bf16 training on Multi30k, then decoding speed, greedy and beam 4.
mapfile -t mt_sets < <(sets "$MT_SETS")
stage mt-train 150 "${locus[@]}" train --config configs/multi30k-de-en.toml --device "$DEVICE" \
  --set 'train.precision="bf16"' --set "train.max_steps=$MT_STEPS" \
  --set "train.valid_interval=$MT_STEPS" --set "train.save_interval=$MT_STEPS" \
  --set "train.out_dir=\"$LOG_DIR/mt\"" "${mt_sets[@]}"
metrics=$LOG_DIR/mt/metrics.jsonl
loss=$(grep '"event":"train"' "$metrics" 2> /dev/null | tail -n 1 | grep -o '"loss":[^,}]*' | cut -d: -f2 || true)
bleu=$(grep '"event":"valid"' "$metrics" 2> /dev/null | tail -n 1 | grep -o '"bleu":[^,}]*' | cut -d: -f2 || true)
ok=$(verdict test -e "$LOG_DIR/mt/best/model.safetensors")
[ "$rc" = 0 ] || ok=FAIL
[ "${bleu:-null}" = null ] && bleu=none
row "train multi30k-de-en, bf16, $MT_STEPS updates" "$(why $rc)loss ${loss:0:6}, valid BLEU ${bleu:0:5}" \
  "finishes; checkpoint written" "$ok" "$secs"

input=$data/test_2016_flickr.de.gz
if [ -n "$TRANSLATE_LINES" ]; then
  input=$LOG_DIR/test.de
  gzip -dc "$data/test_2016_flickr.de.gz" | awk -v n="$TRANSLATE_LINES" 'NR <= n' > "$input"
fi
for beam in 1 4; do
  stage "translate-beam$beam" 120 "${locus[@]}" bench translate --checkpoint "$LOG_DIR/mt/best" \
    --input "$input" --beam "$beam" --batch-size 100 --device "$DEVICE" --json
  log=$LOG_DIR/translate-beam$beam.log
  sentences=$(json sentences "$log")
  rate=$(json sentences_per_s "$log")
  ok=$(verdict holds "$rate" ">" 0)
  [ "$rc" = 0 ] || ok=FAIL
  search=$([ "$beam" = 1 ] && echo greedy || echo "beam $beam")
  row "bench translate $search" "$(why $rc)${sentences:-0} sentences, ${rate:0:6} sentences/s" "runs" "$ok" "$secs"
done

# (e) NCCL on one rank: the gradient sum's path through NCCL on the device, each sum exact.
if grep -q 'libnccl\.so' "$LOCUS"; then
  stage all-reduce 60 "${locus[@]}" bench all-reduce --device "$DEVICE" --repeats 10 --json
  log=$LOG_DIR/all-reduce.log
  engine=$(json engine "$log")
  bucket_ms=$(awk '$1 == 1048576 { print $3 }' "$log")
  ok=$(verdict test "$rc" = 0 -a "$engine" = NCCL)
  row "NCCL sum, world size 1" "$(why $rc)engine ${engine:-none}, 1Mi floats in ${bucket_ms:-?} ms, exact"     "NCCL; every sum exact" "$ok" "$secs"
else
  row "NCCL sum, world size 1" "binary built without --features nccl" "nccl build" n/a ""
fi

total=$(since "$started")
row total "$total s" "≤ $BUDGET_S s" "$(verdict holds "$total" "<=" "$BUDGET_S")" "$total"

{
  echo "GPU check of $LOCUS on --device $DEVICE ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  echo "| stage | result | limit / expectation | pass/fail | seconds |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
} | tee "$LOG_DIR/summary.md"
exit "$failed"
