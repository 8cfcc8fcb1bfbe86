#!/usr/bin/env bash
# Checks `locus export ctranslate2` on a checkpoint: exports it, translates Multi30k's
# test_2016_flickr (German→English) with CTranslate2 (Python API, tokenized with the
# checkpoint's tokenizer.json through the `tokenizers` package) and with Locus, greedy and with
# beam 4 (Locus both with its own stopping rule and with `--early-stop`, CTranslate2's), on the
# same number of threads, and prints the share of identical output lines, BLEU of
# each (sacreBLEU) and sentences/s of each; then the same for Locus's int8 decoding
# (`--quantize int8`) against the int8 export (`--quantization int8`). Locus runs with
# its default workers (one per thread); CTranslate2 is timed both ways it splits threads: one
# translator on all of them (inter_threads 1, intra_threads THREADS) and one translator per thread
# (inter_threads THREADS, intra_threads 1, the batches submitted at once).
#
#   scripts/check-ct2-export.sh CHECKPOINT            e.g. runs/ct2-parity/rope/last
#
# Environment: THREADS (default: nproc), CT2_VENV (a venv to create or reuse; default
# runs/venv-ct2), LOCUS (a locus binary to use instead of building one), SRC/REF (other test
# files). Both sides use Locus's output limit, floor(1.5 × source tokens + 10) tokens (CTranslate2's
# max_decoding_length, per group of sources of one length), EOS allowed from the first step.
# Beam search ranks finished hypotheses differently in the two (Locus: GNMT length penalty with
# alpha 1; CTranslate2: log-prob / length^1), so beam outputs are compared, not expected equal.
set -euo pipefail
cd "$(dirname "$0")/.."
checkpoint=${1:?usage: scripts/check-ct2-export.sh CHECKPOINT}
threads=${THREADS:-$(nproc)}
venv=${CT2_VENV:-runs/venv-ct2}
src=${SRC:-data/multi30k/test_2016_flickr.de.gz}
ref=${REF:-data/multi30k/test_2016_flickr.en.gz}
locus=${LOCUS:-target/release/locus}
[ -n "${LOCUS:-}" ] || cargo build --release -p locus-cli
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import ctranslate2, tokenizers, sacrebleu, numpy" 2>/dev/null ||
  "$venv/bin/pip" install --quiet ctranslate2 tokenizers sacrebleu numpy

work=$(mktemp -d "${TMPDIR:-/tmp}/ct2-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$locus" export ctranslate2 --checkpoint "$checkpoint" --out "$work/ct2"
"$locus" export ctranslate2 --checkpoint "$checkpoint" --out "$work/ct2-int8" --quantization int8 2>/dev/null
zcat -f "$src" > "$work/src.txt"
zcat -f "$ref" > "$work/ref.txt"

now() { date +%s.%N; }
for quantize in none int8; do
  for search in 1 4 4e; do
    stopping=()
    [ "$search" != 4e ] || stopping=(--early-stop)
    start=$(now)
    "$locus" --threads "$threads" translate --checkpoint "$checkpoint" --beam "${search%e}" "${stopping[@]}" \
      --quantize "$quantize" --input "$work/src.txt" --output "$work/locus.$quantize.beam$search.txt"
    echo "$(now) - $start" | bc > "$work/locus.$quantize.beam$search.seconds"
  done
done

"$venv/bin/python" - "$checkpoint" "$work" "$threads" <<'PY'
import collections, math, sys, time
import ctranslate2, sacrebleu, tokenizers

checkpoint, work, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
tok = tokenizers.Tokenizer.from_file(f"{checkpoint}/tokenizer.json")
lines = open(f"{work}/src.txt", encoding="utf-8").read().split("\n")[:-1]
refs = open(f"{work}/ref.txt", encoding="utf-8").read().split("\n")[:-1]


def translate(model_dir, beam, inter_threads=1):
    start = time.perf_counter()
    translator = ctranslate2.Translator(
        model_dir, device="cpu", intra_threads=threads // inter_threads, inter_threads=inter_threads
    )
    sources = [tok.encode(line, add_special_tokens=False).tokens if line.strip() else [] for line in lines]
    by_length = collections.defaultdict(list)
    for i, tokens in enumerate(sources):
        if tokens:
            by_length[len(tokens)].append(i)
    out = [""] * len(lines)
    pending = []
    for length, ids in sorted(by_length.items()):
        # Asynchronous: the translator's inter_threads workers take the batches as they come.
        results = translator.translate_batch(
            [sources[i] for i in ids],
            beam_size=beam,
            max_decoding_length=math.floor(1.5 * length + 10),
            min_decoding_length=0,
            length_penalty=1.0,
            max_batch_size=64,
            asynchronous=True,
        )
        pending.append((ids, results))
    for ids, results in pending:
        for i, result in zip(ids, results):
            out[i] = tok.decode([tok.token_to_id(t) for t in result.result().hypotheses[0]])
    return out, time.perf_counter() - start


def bleu(hyps):
    return sacrebleu.corpus_bleu(hyps, [refs]).score


print(f"checkpoint {checkpoint}: {len(lines)} sentences, {threads} threads, CTranslate2 {ctranslate2.__version__}")
print(f"| weights | search | identical lines | BLEU Locus | BLEU CTranslate2 | sent/s Locus | sent/s CTranslate2 1×{threads} | sent/s CTranslate2 {threads}×1 |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for quantize, model, weights in (("none", "ct2", "f32"), ("int8", "ct2-int8", "int8")):
    for search in ("1", "4", "4e"):
        beam = int(search.rstrip("e"))
        locus = open(f"{work}/locus.{quantize}.beam{search}.txt", encoding="utf-8").read().split("\n")[: len(lines)]
        locus_s = float(open(f"{work}/locus.{quantize}.beam{search}.seconds").read())
        ct2, ct2_s = translate(f"{work}/{model}", beam)
        ct2_workers, ct2_workers_s = translate(f"{work}/{model}", beam, inter_threads=threads)
        assert ct2_workers == ct2, "CTranslate2's output depends on its threads"
        same = sum(a == b for a, b in zip(locus, ct2)) / len(lines)
        name = "greedy" if beam == 1 else f"beam {beam}" + (", Locus --early-stop" if search.endswith("e") else "")
        print(f"| {weights} | {name} | {100 * same:.1f}% | {bleu(locus):.2f} | {bleu(ct2):.2f} | "
              f"{len(lines) / locus_s:.1f} | {len(lines) / ct2_s:.1f} | {len(lines) / ct2_workers_s:.1f} |")
PY
