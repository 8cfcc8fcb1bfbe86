#!/usr/bin/env bash
# The main job, end to end: get Multi30k, train configs/multi30k-de-en.toml (1,200 updates,
# about 50 minutes on 2 CPU cores), translate a few test sentences, and evaluate on
# test_2016_flickr. Extra arguments go to `locus train` (e.g. --set train.max_steps=200).
#
# Environment: LOCUS_RUN_DIR, the run directory (default runs/multi30k-de-en; it becomes the
# config's train.out_dir); LOCUS_BIN, a `locus` binary to use instead of building the release
# one. CI runs a smoke version into a temporary directory with the binary its tests already
# built (a release build of the workspace would cost CI about 5 minutes more):
#   LOCUS_BIN=target/debug/locus LOCUS_RUN_DIR=$(mktemp -d)/run scripts/quickstart.sh --set train.max_steps=20
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/get-multi30k.sh
locus=${LOCUS_BIN:-target/release/locus}
if [[ -z ${LOCUS_BIN:-} ]]; then
  cargo build --release -p locus-cli
fi
run=${LOCUS_RUN_DIR:-runs/multi30k-de-en}
test_de=data/multi30k/test_2016_flickr.de.gz
test_en=data/multi30k/test_2016_flickr.en.gz

# A second run of this script continues (or, if finished, just reuses) the first one's training.
resume=()
if [[ -e "$run/last" ]]; then
  resume=(--resume)
fi
"$locus" train --config configs/multi30k-de-en.toml "${resume[@]}" --set "train.out_dir=\"$run\"" "$@"

echo
echo "== A few test sentences (source, then translation) =="
# sed reads its whole input: `head` would exit early and, under pipefail, fail the script when
# gzip is killed by SIGPIPE (issue 16).
gzip -dc "$test_de" | sed -n '1,5p' > "$run/sample.de"
"$locus" translate --checkpoint "$run/best" --input "$run/sample.de" --output "$run/sample.en"
paste -d '\n' "$run/sample.de" "$run/sample.en" /dev/null

echo "== test_2016_flickr (1,000 sentences, beam 4) =="
"$locus" evaluate --checkpoint "$run/best" --src "$test_de" --ref "$test_en" --beam 4 \
  --hypotheses "$run/test_2016_flickr.hyp.en"
