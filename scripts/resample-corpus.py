#!/usr/bin/env python3
"""Writes a synthetic parallel corpus of N pairs by resampling the pairs of a real one (seeded),
so that sentence lengths and vocabulary are realistic: what scripts/bench-scale.sh prepares.

usage: resample-corpus.py N SRC TGT OUT_SRC OUT_TGT [--seed S]   (inputs plain or .gz)
"""
import argparse
import gzip
import random


def read_lines(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("src")
    parser.add_argument("tgt")
    parser.add_argument("out_src")
    parser.add_argument("out_tgt")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    src, tgt = read_lines(args.src), read_lines(args.tgt)
    assert len(src) == len(tgt), f"{args.src} and {args.tgt} differ in line count"
    rng = random.Random(args.seed)
    block = 100_000
    with open(args.out_src, "w", encoding="utf-8") as out_src, open(args.out_tgt, "w", encoding="utf-8") as out_tgt:
        for start in range(0, args.n, block):
            picks = rng.choices(range(len(src)), k=min(block, args.n - start))
            out_src.write("\n".join(src[i] for i in picks) + "\n")
            out_tgt.write("\n".join(tgt[i] for i in picks) + "\n")


if __name__ == "__main__":
    main()
