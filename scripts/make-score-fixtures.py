#!/usr/bin/env python3
"""Makes the fixtures of `locus score` (crates/locus-metrics/tests/fixtures/score/) with the
`sacrebleu` command itself, for the Rust scores, signatures and reports to be checked against.

It writes, into that directory:

* three small corpora, each a hypothesis file and two reference streams
  (``<corpus>.hyp``, ``<corpus>.ref``, ``<corpus>.ref2``; UTF-8, one segment per line, every
  line ending in ``\\n``):
  - ``mixed``: English, German, French, Spanish, Russian, Greek, Turkish, Arabic, Hindi,
    Korean, Japanese and Chinese segments; Unicode punctuation, quotes and dashes; numbers,
    prices, dates, URLs; HTML entities; emoji and symbols; fullwidth forms; combining accents;
    tabs, no-break and ideographic spaces; empty hypotheses, empty references, references far
    shorter than their hypothesis and reference streams of different lengths;
  - ``zh``: Chinese with Chinese punctuation, fullwidth forms, Latin and Hangul mixed in,
    CJK Extension B characters and the symbol blocks sacreBLEU's `zh` tokenizer treats as
    Chinese (see `zh_chinese_chars` below);
  - ``empty``: every hypothesis empty, against empty and non-empty references;
* ``expected.json``:
  - ``runs``: for every corpus x BLEU tokenizer (13a, none, intl, char, zh) x BLEU lowercasing
    (``-lc``) x one or two reference files, plus a few runs with chrF++, chrF lowercasing and
    case-sensitive TER, the exact ``sacrebleu`` command line and what it printed with
    ``--width 4 --format json`` and with ``--format text`` (the default width 1), and the
    full-precision scores of the same metrics from sacreBLEU's Python API;
  - ``tokenizers``: what each BLEU tokenizer makes of hand-picked and random strings
    (after BLEU's own preprocessing, ``BLEU(tokenize=...)._preprocess_segment``);
  - ``unicode_categories``: the code point ranges the ``regex`` module puts in ``\\p{P}``,
    ``\\p{S}`` and ``\\p{N}`` (what the `intl` tokenizer splits on);
  - ``zh_chinese_chars``: the code point ranges for which the `zh` tokenizer's
    ``_is_chinese_char`` is true.

Run (the command that made the committed files):

    pip install sacrebleu==2.6.0 regex==2026.5.9
    python3 scripts/make-score-fixtures.py

The Rust tests (crates/locus-metrics/src/sacrebleu_option_fixtures.rs and
crates/locus-cli/tests/score.rs) read these files.
"""

import json
import platform
import random
import subprocess
import sys
from pathlib import Path

import regex
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

OUT = Path(__file__).resolve().parent.parent / "crates/locus-metrics/tests/fixtures/score"
EXPECTED_VERSION = "2.6.0"
TOKENIZERS = ["13a", "none", "intl", "char", "zh"]

# --------------------------------------------------------------------------
# The corpora: (hypothesis, reference 1, reference 2) per segment. Escapes keep
# invisible characters visible.
# --------------------------------------------------------------------------

MIXED = [
    ("The quick brown fox jumped over the lazy dog.",
     "The quick brown fox jumps over the lazy dog.",
     "A fast brown fox leaps over a lazy dog."),
    ("", "It's raining cats and dogs.", "It is pouring."),
    ("Everybody agreed the meeting was much too long, really, in my opinion.",
     "Everyone agreed.",
     "All agreed that the meeting was too long."),
    ("\u201eIch habe keine Ahnung\u201c, sagte er.",
     "\u201eIch habe keine Ahnung\u201c, sagte er \u2013 leise.",
     "\u00bbKeine Ahnung\u00ab, sagte er."),
    ("Ein Mann f\u00e4hrt Fahrrad die Strasse entlang.",
     "Ein Mann f\u00e4hrt mit dem Fahrrad die Stra\u00dfe entlang.",
     "Ein Mann radelt die Stra\u00dfe hinunter."),
    ("The company was founded in 1990.",
     "The company was founded in 1990.",
     "Founded in 1990, the company grew."),
    ("Er ist 1,85 m gro\u00df und wiegt 80,5 kg.",
     "Er ist 1,85 m gro\u00df und wiegt 80.5 kg.",
     "Er misst 1,85 m."),
    ("It costs $1,299.99 (about \u20ac1.200,00) \u2014 a bargain!",
     "It costs $1,299.99, roughly 1.200 \u20ac \u2014 a bargain.",
     "The price is $1299.99."),
    ("Tom &amp; Jerry said &quot;hi&quot; &lt;3",
     "Tom & Jerry said \"hi\" <3",
     "Tom &amp; Jerry: &quot;hello&quot;"),
    ("THE CAT SAT ON THE MAT.", "The cat sat on the mat.", "the Cat sat on the Mat ."),
    ("\u6211\u4eec\u4eca\u5929\u53bb\u5317\u4eac\u3002",
     "\u6211\u4eec\u660e\u5929\u53bb\u5317\u4eac\u3002",
     "\u4eca\u5929\u6211\u4eec\u53bb\u5317\u4eac\uff0c\u597d\u5417\uff1f"),
    ("\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002",
     "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3042\u308b\u3002",
     ""),
    ("Wait\u2026 what\u2014really?!", "Wait... what \u2014 really?!", "Wait\u2026 what?"),
    ("\u00bfD\u00f3nde est\u00e1 la biblioteca? \u00a1All\u00ed!",
     "\u00bfD\u00f3nde est\u00e1 la biblioteca? \u00a1Ah\u00ed!",
     "\u00bfLa biblioteca?"),
    ("I \u2764 Paris \U0001F600 \u00a92024 \u2122 \u00b15 \u00b0C",
     "I love Paris \U0001F600 \u00a9 2024 \u00b15\u00b0C",
     "I \u2764 Paris"),
    ("L'homme qu'on voit \u00ab ici \u00bb n'est pas l\u00e0.",
     "L\u2019homme qu\u2019on voit \u00ab\u00a0ici\u00a0\u00bb n\u2019est pas l\u00e0.",
     "L'homme n'est pas l\u00e0."),
    ("A well-known e-mail address: john.doe@example.com.",
     "A well known e-mail address: john.doe@example.com",
     "A well-known address."),
    ("See pages 10-12 and 3.14, 2.5%.",
     "See pages 10\u201312 and 3.14; 2.5 %.",
     "See p. 10-12."),
    ("  multiple\tinternal   spaces  here\u00a0ok  ",
     "multiple internal spaces here ok",
     "multiple  spaces"),
    ("He said , \" no \" .", "He said, \"no\".", "He said no."),
    ("", "", "Nothing."),
    ("the the the the the the the", "the cat", "the cat is on the mat"),
    ("\ub098\ub294 \ud559\uc0dd\uc785\ub2c8\ub2e4.",
     "\uc800\ub294 \ud559\uc0dd\uc785\ub2c8\ub2e4.",
     "\ub098\ub294 \ud559\uc0dd\uc774\ub2e4."),
    ("\u041f\u0420\u0418\u0412\u0415\u0422, \u041c\u0418\u0420! \u041a\u0430\u043a \u0434\u0435\u043b\u0430?",
     "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041a\u0430\u043a \u0434\u0435\u043b\u0430?",
     "\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439, \u043c\u0438\u0440."),
    ("\u039f\u0394\u039f\u03a3 \u03a3\u0391\u03a3", "\u03bf\u03b4\u03bf\u03c2 \u03c3\u03b1\u03c2",
     "\u0397 \u039f\u0394\u039f\u03a3"),
    ("\u0130stanbul'da KI\u015e", "istanbul'da k\u0131\u015f", "\u0130STANBUL"),
    ("I don't think it's a good idea.",
     "I do not think that's a good idea.",
     "I don\u2019t think it\u2019s wise."),
    ("\uff21\uff22\uff23\uff11\uff12\uff13\uff01", "ABC123!",
     "\uff21\uff22\uff23\u3000\uff11\uff12\uff13\uff01"),
    ("x\u00b2 + y\u00b2 = z\u00b2 \u2264 10 \u2192 \u221e",
     "x^2 + y^2 = z^2 <= 10 -> \u221e",
     "x\u00b2 + y\u00b2 = z\u00b2"),
    ("\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645!",
     "\u0645\u0631\u062d\u0628\u064b\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645!",
     "\u0623\u0647\u0644\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645"),
    ("\u092e\u0948\u0902 \u0918\u0930 \u091c\u093e \u0930\u0939\u093e \u0939\u0942\u0901\u0964",
     "\u092e\u0948\u0902 \u0918\u0930 \u091c\u093e \u0930\u0939\u093e \u0939\u0942\u0902\u0964",
     "\u092e\u0948\u0902 \u0918\u0930 \u091c\u093e\u0924\u093e \u0939\u0942\u0901\u0964"),
    ("", "Short.", "A somewhat longer reference sentence here."),
    ("Meet at 14:30 on 2024-05-17 at https://example.org/a?b=c&d=e.",
     "Meet at 14.30 on 17.05.2024 at https://example.org/a?b=c&d=e",
     "Meeting 2:30 pm."),
    ("Cafe\u0301 cr\u00e8me br\u00fbl\u00e9e", "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e", "Cafe creme brulee"),
    ("Yes.", "Yes.", "Yes, indeed."),
    ("\u201cHello,\u201d she said, \u2018goodbye.\u2019",
     "\"Hello,\" she said, 'goodbye.'",
     "\u201cHi,\u201d she said."),
]

ZH = [
    ("\u6211\u4eec\u4eca\u5929\u53bb\u5317\u4eac\u3002",
     "\u6211\u4eec\u660e\u5929\u53bb\u5317\u4eac\u3002",
     "\u4eca\u5929\u6211\u4eec\u53bb\u5317\u4eac\u3002"),
    ("\u4ed6\u8bf4\uff1a\u201c\u8fd9\u662f\u4e00\u4e2a\u597d\u4e3b\u610f\uff01\u201d",
     "\u4ed6\u8bf4\uff1a\u201c\u8fd9\u662f\u4e2a\u597d\u4e3b\u610f\u3002\u201d",
     "\u4ed6\u8bf4\u8fd9\u4e2a\u4e3b\u610f\u5f88\u597d\u3002"),
    ("\u4eca\u5e74\u7684GDP\u589e\u957f\u4e866.5%\u3002",
     "\u4eca\u5e74GDP\u589e\u957f6.5%\u3002",
     "\u4eca\u5e74\u7684\u56fd\u5185\u751f\u4ea7\u603b\u503c\u589e\u957f\u4e86\u767e\u5206\u4e4b\u516d\u70b9\u4e94\u3002"),
    ("\u4e2d\u534e\u4eba\u6c11\u5171\u548c\u56fd\u6210\u7acb\u4e8e1949\u5e7410\u67081\u65e5\u3002",
     "\u4e2d\u534e\u4eba\u6c11\u5171\u548c\u56fd\u4e8e1949\u5e7410\u67081\u65e5\u6210\u7acb\u3002",
     "\u65b0\u4e2d\u56fd\u6210\u7acb\u4e8e1949\u5e74\u3002"),
    ("", "\u6ca1\u6709\u7ffb\u8bd1\u3002", "\u7a7a\u3002"),
    ("\u8bf7\u8bbf\u95eewww.example.com\u4e86\u89e3\u66f4\u591a\u4fe1\u606f\u2026\u2026",
     "\u66f4\u591a\u4fe1\u606f\u8bf7\u8bbf\u95ee www.example.com\u3002",
     "\u8bf7\u8bbf\u95ee\u7f51\u7ad9\u3002"),
    ("\uff21\uff22\uff23\u516c\u53f8\u7684\u80a1\u4ef7\u4e0a\u6da8\u4e86\uff13\uff05\u3002",
     "ABC\u516c\u53f8\u80a1\u4ef7\u4e0a\u6da83%\u3002",
     "\uff21\uff22\uff23\u516c\u53f8\u80a1\u4ef7\u6da8\u4e86\uff13\uff05\u3002"),
    ("\u300a\u7ea2\u697c\u68a6\u300b\u662f\u4e2d\u56fd\u53e4\u5178\u5c0f\u8bf4\u2014\u2014\u975e\u5e38\u6709\u540d\u3002",
     "\u300a\u7ea2\u697c\u68a6\u300b\u662f\u4e00\u90e8\u8457\u540d\u7684\u4e2d\u56fd\u53e4\u5178\u5c0f\u8bf4\u3002",
     "\u7ea2\u697c\u68a6\u5f88\u6709\u540d\u3002"),
    ("\u4ed6\u4e70\u4e86\u82f9\u679c\u3001\u9999\u8549\u548c\u6a59\u5b50\uff1b\u5979\u4e70\u4e86\u725b\u5976\u3002",
     "\u4ed6\u4e70\u4e86\u82f9\u679c\u3001\u9999\u8549\u548c\u6a58\u5b50\uff0c\u5979\u4e70\u4e86\u725b\u5976\u3002",
     "\u4ed6\u4eec\u4e70\u4e86\u6c34\u679c\u548c\u725b\u5976\u3002"),
    ("\U00020000\U00020001 \u662f\u6269\u5c55B\u533a\u7684\u5b57\u3002",
     "\U00020000\U00020001\u662f\u6269\u5c55B\u533a\u7684\u6c49\u5b57\u3002",
     "\u6269\u5c55B\u533a"),
    # blocks `_is_chinese_char` accepts, the U+2001..U+2A6D and U+2F81..U+2FA1 ranges among them
    ("\u2e80\u2e81 \u2f00\u2f01 \u3105\u3106 \u3220\u3221 \u3300 \u2600\u2601 \u2702\u2708 "
     "\u2460\u2461 \u2192\u21d2 \u2200\u2203 \u2260 \u2318 \u2f81\u2fa1 \u2001x\u2a6d",
     "\u2e80\u2e81\u2f00\u2f01\u3105\u3106\u3220\u3221\u3300\u2600\u2601\u2702\u2708"
     "\u2460\u2461\u2192\u21d2\u2200\u2203\u2260\u2318",
     "\u2600 \u2708 \u2460 \u2192"),
    ("Hello \u4e16\u754c, this is \u6df7\u5408 text.",
     "Hello\u4e16\u754c\uff0cthis is \u6df7\u5408\u7684 text\u3002",
     "\u4f60\u597d world."),
    ("\u4e1c\u4eac\u662f\u65e5\u672c\u7684\u9996\u90fd\u3002",
     "\u6771\u4eac\u662f\u65e5\u672c\u7684\u9996\u90fd\u3002",
     "\u4e1c\u4eac\u662f\u9996\u90fd"),
    ("\u6211\u5f88\u9ad8\u5174\u89c1\u5230\u4f60\uff01",
     "\u5f88\u9ad8\u5174\u8ba4\u8bc6\u4f60\uff01",
     "\u89c1\u5230\u4f60\u6211\u5f88\u9ad8\u5174\u3002"),
    ("\u97e9\u56fd\u8bed\uff1a\uc548\ub155\ud558\uc138\uc694\uff08\u4f60\u597d\uff09",
     "\u97e9\u8bed\uff1a\uc548\ub155\ud558\uc138\uc694 (\u4f60\u597d)",
     "\uc548\ub155\ud558\uc138\uc694"),
    ("\u3000\u5168\u89d2\u7a7a\u683c\u3000\u5728\u8fd9\u91cc\u3000",
     "\u5168\u89d2\u7a7a\u683c\u5728\u8fd9\u91cc",
     "\u5168\u89d2 \u7a7a\u683c"),
]

EMPTY = [
    ("", "A reference.", "Another, much longer reference sentence."),
    ("", "", "Only the second stream."),
    ("", "Ein Satz.", ""),
    ("", "\u4e2d\u6587\u53e5\u5b50\u3002", "\u53e6\u4e00\u4e2a\u53e5\u5b50"),
]

CORPORA = {"mixed": MIXED, "zh": ZH, "empty": EMPTY}

# Strings for the tokenizer cases, besides every segment of the corpora.
TOKENIZER_CASES = [
    "",
    " ",
    "Hello, world!",
    "It's 3.14, not 3,14.",
    "in 1990.",
    "in 1990. Then",
    "1990.5 and .5 and 5. and ,5",
    "a.b,c",
    "(a) [b] {c} <d>",
    "\u201cquoted\u201d \u2018single\u2019 \u00abguillemets\u00bb",
    "em\u2014dash en\u2013dash hyphen-ated",
    "\u00bfQu\u00e9? \u00a1S\u00ed!",
    "$5 \u20ac5 \u00a35 \u00a55 5% \u00b0C \u00a9 \u00ae \u2122",
    "x\u00b2+y\u00b2=z\u00b2 \u00bd \u2153 \u2460 \u216b",
    "emoji \U0001F600\U0001F44D\U0001F3FD",
    "\u0661\u0662\u0663.\u0664 \u0968\u0969",
    "Caf\u00e9 Cafe\u0301",
    "\u6211\u4eec\u4eca\u5929\u53bb\u5317\u4eac\u3002",
    "\u4ed6\u8bf4\uff1a\u201c\u597d\uff01\u201d",
    "GDP\u589e\u957f\u4e866.5%",
    "\U00020000\U0002A6D6\U0002A6D7\U0002F800\U0002FA1D",
    "\u2000\u2001\u2002\u200a\u2026\u2a6d\u2a6e\u2f80\u2f81\u2fa1\u2fa2",
    "\u3400\u4db5\u4db6\u9fa5\u9fa6\u9fbb\u9fbc\uf900\ufa2d\ufa2e\ufa30\ufa6a\ufa70\ufad9\ufada",
    "\uff00\uff01\uffef\ufff0\ufe10\ufe1f\ufe30\ufe4f\ufe50",
    "\u3000\u303f\u31c0\u31ef\u2f00\u2fdf\u2ff0\u2fff\u3100\u312f\u31a0\u31bf",
    "\u2600\u26ff\u2700\u27bf\u3200\u32ff\u3300\u33ff\u2e80\u2eff",
    "&quot;a&quot; &amp; &lt;b&gt; <skipped>",
    "  leading and trailing  ",
    "tab\there\u00a0nbsp\u2009thin\u3000ideographic",
    "\u00a0\u3000\u4e2d\u00a0",
    "a\x1cb\x1dc\x1ed\x1fe",
    "new\nline and hyphen-\nation",
    "trailing\t\x0b\x0c\r",
    "___ --- ... ,,, ;;; ::",
    "C++ C# F# .NET node.js",
    "e-mail: a.b@c.de, http://x.y/z?q=1&r=2",
    "\u05e9\u05dc\u05d5\u05dd, \u05e2\u05d5\u05dc\u05dd!",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
    "\U00010ED0\U00010ED1\U00011DE0\U00016FF4\u20c1\u2b96",
    "\u0130I\u0131i \u1e9e\u00df \u01c5\u01c4\u01c6",
]

RANDOM_PIECES = [
    "a", "Z", "0", "9", ".", ",", "-", "&", ";", ":", "'", "\"", "/", " ", "\t", "\n", "<", ">",
    "?", "!", "(", ")", "[", "]", "{", "}", "_", "`", "~", "^", "|", "+", "=", "*", "%", "$",
    "#", "@", "\\", "&quot;", "&amp;", "<skipped>", "-\n", "\u00a0", "\u2009", "\u3000", "\u2026",
    "\u2014", "\u201c", "\u201d", "\u00ab", "\u00e9", "\u0301", "\x1c", "\u2028", "\u00b2",
    "\u00bd", "\u0663", "\u20ac", "\u00a9", "\U0001F600", "\u4e2d", "\u6587", "\u3002",
    "\uff0c", "\uff01", "\uff21", "\uff13", "\U00020000", "\u2001", "\u2a6d", "\u2a6e",
    "\u2f81", "\u2600", "\u2460", "\uac00", "\u3042", "\u0130", "\u03a3", "1,000", "3.14",
]


def write_lines(path: Path, lines):
    for line in lines:
        assert "\n" not in line and "\r" not in line, line
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")


def read_segments(path: Path):
    """Reads a file exactly as the `sacrebleu` command does (utils.smart_open, then rstrip)."""
    with open(path, encoding="utf-8", newline="\n") as f:
        return [line.rstrip() for line in f]


def ranges(code_points):
    """Sorted code points as inclusive [first, last] ranges."""
    out = []
    for c in sorted(code_points):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def all_code_points():
    return (c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)


def sacrebleu_args(corpus, nrefs, options):
    """The arguments of the `sacrebleu` command for one run, and the equivalent `locus score` ones."""
    refs = [f"{corpus}.ref", f"{corpus}.ref2"][:nrefs]
    args = [*refs, "-i", f"{corpus}.hyp", "-m", "bleu", "chrf", "ter", "-tok", options["tokenize"]]
    locus = ["--hyp", f"{corpus}.hyp"]
    for ref in refs:
        locus += ["--ref", ref]
    locus += ["--metrics", "bleu,chrf,ter", "--tokenize", options["tokenize"]]
    if options["lowercase"]:
        args.append("-lc")
        locus.append("--lowercase")
    if options["chrf_lowercase"]:
        args.append("--chrf-lowercase")
        locus.append("--chrf-lowercase")
    if options["chrf_word_order"]:
        args += ["-cw", str(options["chrf_word_order"])]
        locus += ["--chrf-word-order", str(options["chrf_word_order"])]
    if options["ter_case_sensitive"]:
        args.append("--ter-case-sensitive")
        locus.append("--ter-case-sensitive")
    return args, locus


def run_sacrebleu(args):
    """Runs the `sacrebleu` command in OUT and returns its standard output."""
    cmd = [sys.executable, "-m", "sacrebleu", *args, "--no-color", "--quiet"]
    done = subprocess.run(cmd, cwd=OUT, capture_output=True, text=True, encoding="utf-8", check=True)
    return done.stdout


def api_scores(hyps, refs, options):
    bleu = BLEU(tokenize=options["tokenize"], lowercase=options["lowercase"]).corpus_score(hyps, refs)
    chrf = CHRF(word_order=options["chrf_word_order"], lowercase=options["chrf_lowercase"]).corpus_score(hyps, refs)
    ter = TER(case_sensitive=options["ter_case_sensitive"]).corpus_score(hyps, refs)
    return {
        "bleu": {"score": bleu.score, "counts": bleu.counts, "totals": bleu.totals,
                 "sys_len": bleu.sys_len, "ref_len": bleu.ref_len},
        "chrf": {"score": chrf.score},
        "ter": {"score": ter.score, "num_edits": ter.num_edits, "ref_length": ter.ref_length},
    }


def make_run(corpus, nrefs, options):
    args, locus = sacrebleu_args(corpus, nrefs, options)
    json_args = [*args, "-w", "4", "-f", "json"]
    text_args = [*args, "-f", "text"]
    hyps = read_segments(OUT / f"{corpus}.hyp")
    refs = [read_segments(OUT / r) for r in [f"{corpus}.ref", f"{corpus}.ref2"][:nrefs]]
    api = api_scores(hyps, refs, options)
    json_out = run_sacrebleu(json_args)
    # The command's rounded scores agree with the API's.
    for entry, key in zip(json.loads(json_out), ["bleu", "chrf", "ter"]):
        assert entry["score"] == float(f"{api[key]['score']:.4f}"), (entry, api[key])
    return {
        "corpus": corpus,
        "nrefs": nrefs,
        "options": options,
        "locus_args": locus,
        "sacrebleu_json_command": "sacrebleu " + " ".join(json_args),
        "sacrebleu_json": json_out,
        "sacrebleu_text_command": "sacrebleu " + " ".join(text_args),
        "sacrebleu_text": run_sacrebleu(text_args),
        "api": api,
    }


def options(tokenize="13a", lowercase=False, chrf_lowercase=False, chrf_word_order=0,
            ter_case_sensitive=False):
    return {"tokenize": tokenize, "lowercase": lowercase, "chrf_lowercase": chrf_lowercase,
            "chrf_word_order": chrf_word_order, "ter_case_sensitive": ter_case_sensitive}


def main():
    assert sacrebleu.__version__ == EXPECTED_VERSION, sacrebleu.__version__
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in CORPORA.items():
        for suffix, column in [("hyp", 0), ("ref", 1), ("ref2", 2)]:
            write_lines(OUT / f"{name}.{suffix}", [row[column] for row in rows])

    runs = []
    for corpus in CORPORA:
        for tokenize in TOKENIZERS:
            for lowercase in (False, True):
                for nrefs in (1, 2):
                    runs.append(make_run(corpus, nrefs, options(tokenize, lowercase)))
    for corpus in ("mixed", "zh"):
        for nrefs in (1, 2):
            runs.append(make_run(corpus, nrefs, options(
                "intl", lowercase=True, chrf_lowercase=True, chrf_word_order=2, ter_case_sensitive=True)))
            runs.append(make_run(corpus, nrefs, options("13a", chrf_lowercase=True)))
            runs.append(make_run(corpus, nrefs, options("zh", chrf_word_order=2, ter_case_sensitive=True)))

    rng = random.Random(20240522)
    strings = list(TOKENIZER_CASES)
    for rows in CORPORA.values():
        for row in rows:
            strings.extend(row)
    strings += ["".join(rng.choice(RANDOM_PIECES) for _ in range(rng.randrange(0, 24))) for _ in range(150)]
    strings = list(dict.fromkeys(strings))
    tokenizers = {}
    for tokenize in TOKENIZERS:
        bleu = BLEU(tokenize=tokenize)
        tokenizers[tokenize] = [[s, bleu._preprocess_segment(s)] for s in strings]

    categories = {}
    for cls in ("P", "S", "N"):
        pattern = regex.compile(r"\p{%s}" % cls)
        categories[cls] = ranges(c for c in all_code_points() if pattern.match(chr(c)))
    chinese = ranges(c for c in all_code_points() if TokenizerZh._is_chinese_char(chr(c)))

    expected = {
        "generator": "scripts/make-score-fixtures.py",
        "how": "pip install sacrebleu==2.6.0 regex==2026.5.9; python3 scripts/make-score-fixtures.py",
        "sacrebleu_version": sacrebleu.__version__,
        "regex_version": regex.__version__,
        "python_version": platform.python_version(),
        "runs": runs,
        "tokenizers": tokenizers,
        "unicode_categories": categories,
        "zh_chinese_chars": chinese,
    }
    with open(OUT / "expected.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(expected, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"{len(runs)} runs, {len(strings)} tokenizer strings, written to {OUT}")


if __name__ == "__main__":
    main()
