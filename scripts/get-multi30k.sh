#!/usr/bin/env bash
# Puts the Multi30k corpus (task 1: raw text, and the authors' lower-cased tokenized version in
# tok/) into data/multi30k/. Copies from ../shared/data/multi30k when that exists beside the
# project, otherwise downloads from the dataset's public repository. Then checks line counts.
# The later test sets (test_2017_flickr, test_2017_mscoco; En, De, Fr) are optional: they are
# downloaded when missing, and a machine without internet goes on without them (the results of
# scripts/reproduce-multi30k.sh then lack their rows).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/data/multi30k"
shared="$root/../shared/data/multi30k"
upstream="https://raw.githubusercontent.com/multi30k/dataset/master/data/task1"
splits=(train val test_2016_flickr)
langs=(de en fr cs)

mkdir -p "$dest/tok"
if [ -d "$shared" ]; then
  echo "copying Multi30k from $shared"
  cp "$shared"/*.gz "$dest/"
  cp "$shared"/tok/*.gz "$dest/tok/"
else
  echo "downloading Multi30k from $upstream"
  for split in "${splits[@]}"; do
    for lang in "${langs[@]}"; do
      curl -fsSL --retry 3 -o "$dest/$split.$lang.gz" "$upstream/raw/$split.$lang.gz"
      curl -fsSL --retry 3 -o "$dest/tok/$split.lc.norm.tok.$lang.gz" \
        "$upstream/tok/$split.lc.norm.tok.$lang.gz"
    done
  done
fi

# Counts lines the way readers see them: a last line without a newline still counts.
count() { gzip -dc "$1" | awk 'END { print NR }'; }

declare -A expected=([train]=29000 [val]=1014 [test_2016_flickr]=1000)
status=0
for split in "${splits[@]}"; do
  for lang in "${langs[@]}"; do
    for file in "$dest/$split.$lang.gz" "$dest/tok/$split.lc.norm.tok.$lang.gz"; do
      if [ ! -f "$file" ]; then
        echo "error: missing $file" >&2
        status=1
        continue
      fi
      n=$(count "$file")
      if [ "$n" != "${expected[$split]}" ]; then
        echo "error: $file has $n lines, expected ${expected[$split]}" >&2
        status=1
      fi
    done
  done
done
[ "$status" = 0 ] || { echo "error: Multi30k in $dest is incomplete or corrupt" >&2; exit 1; }
echo "Multi30k ready in $dest (train 29,000, val 1,014, test_2016_flickr 1,000 lines per language)"

# The optional later test sets. Upstream keeps their tokenized files uncompressed; they are
# stored gzipped here like the others.
declare -A optional=([test_2017_flickr]=1000 [test_2017_mscoco]=461)
for split in "${!optional[@]}"; do
  for lang in de en fr; do
    raw="$dest/$split.$lang.gz"
    tok="$dest/tok/$split.lc.norm.tok.$lang.gz"
    if [ ! -f "$raw" ] && [ -f "$shared/$split.$lang.gz" ]; then cp "$shared/$split.$lang.gz" "$raw"; fi
    if [ ! -f "$tok" ] && [ -f "$shared/tok/$split.lc.norm.tok.$lang.gz" ]; then
      cp "$shared/tok/$split.lc.norm.tok.$lang.gz" "$tok"
    fi
    if [ ! -f "$raw" ]; then
      curl -fsSL --retry 2 -o "$raw.part" "$upstream/raw/$split.$lang.gz" 2>/dev/null && mv "$raw.part" "$raw" || rm -f "$raw.part"
    fi
    if [ ! -f "$tok" ]; then
      { curl -fsSL --retry 2 "$upstream/tok/$split.lc.norm.tok.$lang" | gzip > "$tok.part"; } 2>/dev/null &&
        mv "$tok.part" "$tok" || rm -f "$tok.part"
    fi
    for file in "$raw" "$tok"; do
      if [ ! -f "$file" ]; then
        echo "note: $file is not available (no copy in $shared and no download); going on without it"
      elif [ "$(count "$file")" != "${optional[$split]}" ]; then
        echo "error: $file has $(count "$file") lines, expected ${optional[$split]}" >&2
        exit 1
      fi
    done
  done
done
