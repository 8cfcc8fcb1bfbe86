#!/usr/bin/env bash
# Trains the short checkpoints that scripts/check-ct2-export.sh was run on for the README: one
# small German→English Multi30k model per positional encoding CTranslate2 can represent
# (configs/multi30k-de-en.toml made smaller with --set: width 128, 2+2 layers, a 4,000-token
# vocabulary, STEPS updates, default 500), each a few minutes on 2 CPU cores. Runs go to runs/ct2-parity/<name>;
# finished ones are skipped, stopped ones resumed. Pass names to train a subset, e.g. `scripts/train-ct2-parity.sh rope`.
set -euo pipefail
cd "$(dirname "$0")/.."
locus=${LOCUS:-target/release/locus}
[ -n "${LOCUS:-}" ] || cargo build --release -p locus-cli
out=runs/ct2-parity
common=(
  --set data.vocab_size=4000 --set model.d_model=128 --set model.n_heads=4 --set model.d_ff=512
  --set model.encoder_layers=2 --set model.decoder_layers=2 --set train.max_steps=${STEPS:-500}
  --set train.warmup_steps=150 --set train.valid_interval=100000 --set train.save_interval=${STEPS:-500}
)
if [ ! -e "$out/prepared" ]; then
  "$locus" prepare --config configs/multi30k-de-en.toml "${common[@]:0:2}" --out "$out/prepared"
fi
# name: the --set overrides of its encoding (both stacks unless a stack is named).
declare -A encodings=(
  [sinusoidal]="model.positional.kind=sinusoidal"
  [learned]="model.positional.kind=learned model.positional.max_len=128"
  [none]="model.positional.kind=none"
  [relative]="model.positional.kind=relative"
  [t5]="model.positional.kind=t5"
  [rope]="model.positional.kind=rope"
  [rope-alibi]="model.encoder.positional.kind=rope model.decoder.positional.kind=alibi"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(sinusoidal learned none relative t5 rope rope-alibi)
for name in "${names[@]}"; do
  run="$out/$name"
  # Validation (and so `best`) comes only at the end here: a run stopped before has `last`
  # only, and `locus train` resumes it.
  [ -e "$run/best" ] && continue
  settings=("${common[@]}" --set "data.prepared=$out/prepared" --set "train.out_dir=$run")
  for s in ${encodings[$name]}; do settings+=(--set "$s"); done
  "$locus" train --config configs/multi30k-de-en.toml "${settings[@]}"
done
