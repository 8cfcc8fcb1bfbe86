#!/usr/bin/env python3
"""A PyTorch reference for `locus train`: fairseq's post-norm Transformer, trained on a Locus
prepared dataset with fairseq's recipe, to tell a recipe's limits from a Locus defect.

It mirrors fairseq 0.12 where Locus's configs do: post-norm layers, ReLU, residual dropout only
(no attention or activation dropout), embeddings drawn from N(0, d^-1/2) and scaled by sqrt(d),
fairseq's sinusoid (sines then cosines), all embeddings tied, q/k/v projections drawn by Xavier
uniform with gain 1/sqrt(2), Adam, the inverse-square-root schedule warming up linearly from 0,
fairseq's label-smoothed cross-entropy summed over target tokens and divided by their count.
Batches follow Locus's `token_budget = "longer"`: sentences × the longer side (specials
included) at most `--max-tokens`, cut from pairs sorted by source then target length and
shuffled every epoch.

It prints one JSON line every `--log-interval` updates with the same fields as Locus's
metrics.jsonl (`loss`, `nll` in nats per target token, averaged over the interval), so the two
curves can be compared update by update:

    python scripts/reference-train-pytorch.py runs/x/prepared --steps 400 --warmup 800
"""

import argparse
import json
import math
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD, BOS, EOS = 0, 1, 2


def read_prepared(d, split="train"):
    """(source ids, target ids) of every pair of a split (docs/prepared-data.md)."""
    m = json.load(open(f"{d}/manifest.json"))
    ids_type = "<u2" if m["token_bytes"] == 2 else "<u4"
    pairs = []
    for shard in m["train" if split == "train" else "valid_split"]["shards"]:
        n, idx = shard["pairs"], np.fromfile(f"{d}/{shard['idx']}", dtype=np.uint8)
        offsets = idx[: 8 * (n + 1)].view("<u8")
        lengths = idx[8 * (n + 1):].view("<u2").reshape(n, 2)
        ids = np.memmap(f"{d}/{shard['bin']}", dtype=ids_type, mode="r")
        for j in range(n):
            middle = offsets[j] + lengths[j, 0]
            pairs.append((ids[offsets[j]:middle].astype(np.int64), ids[middle:offsets[j + 1]].astype(np.int64)))
    return pairs, m["vocab_size"]


def batches(pairs, max_tokens, rng):
    """Batches cut from pairs sorted by (source length, target length), as fairseq and Locus
    order them, whose sentences × longer side stays within max_tokens, shuffled."""
    order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][0]), len(pairs[i][1]), rng.random()))
    out, current, longest = [], [], 0
    for i in order:
        width = max(len(pairs[i][0]), len(pairs[i][1])) + 1
        if current and (len(current) + 1) * max(longest, width) > max_tokens:
            out.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, width)
    if current:
        out.append(current)
    rng.shuffle(out)
    return out


def pad(rows):
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)


def sinusoid(length, d):
    """fairseq's table: sin of the first half of the channels, cos of the second."""
    half = d // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000.0) / (half - 1)))
    angles = torch.arange(length, dtype=torch.float)[:, None] * freq[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        for proj in (self.q, self.k, self.v):
            nn.init.xavier_uniform_(proj.weight, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.o.weight)
        nn.init.zeros_(self.o.bias)

    def forward(self, x, memory, mask):
        b, tq, d = x.shape
        split = lambda t: t.view(b, -1, self.heads, d // self.heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(memory)), split(self.v(memory)), attn_mask=mask)
        return self.o(out.transpose(1, 2).reshape(b, tq, d))


class Layer(nn.Module):
    def __init__(self, d, heads, ff, dropout, cross):
        super().__init__()
        self.self_attn, self.self_norm = Attention(d, heads), nn.LayerNorm(d)
        self.cross = Attention(d, heads) if cross else None
        self.cross_norm = nn.LayerNorm(d) if cross else None
        self.fc1, self.fc2, self.ff_norm = nn.Linear(d, ff), nn.Linear(ff, d), nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, self_mask, memory=None, memory_mask=None):
        x = self.self_norm(x + self.dropout(self.self_attn(x, x, self_mask)))
        if self.cross is not None:
            x = self.cross_norm(x + self.dropout(self.cross(x, memory, memory_mask)))
        return self.ff_norm(x + self.dropout(self.fc2(F.relu(self.fc1(x)))))


class Transformer(nn.Module):
    def __init__(self, vocab, d, heads, ff, layers, dropout):
        super().__init__()
        self.embed = nn.Embedding(vocab, d, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, 0, d ** -0.5)
        nn.init.zeros_(self.embed.weight[PAD])
        self.register_buffer("positions", sinusoid(1024, d), persistent=False)
        self.scale, self.dropout = math.sqrt(d), nn.Dropout(dropout)
        self.encoder = nn.ModuleList(Layer(d, heads, ff, dropout, False) for _ in range(layers))
        self.decoder = nn.ModuleList(Layer(d, heads, ff, dropout, True) for _ in range(layers))

    def embed_tokens(self, tokens):
        return self.dropout(self.embed(tokens) * self.scale + self.positions[: tokens.shape[1]])

    def forward(self, src, tgt_in):
        src_mask = (src == PAD)[:, None, None, :]
        src_bias = torch.zeros(src_mask.shape).masked_fill(src_mask, float("-inf"))
        t = tgt_in.shape[1]
        causal = torch.full((t, t), float("-inf")).triu(1)[None, None]
        x = self.embed_tokens(src)
        for layer in self.encoder:
            x = layer(x, src_bias)
        y = self.embed_tokens(tgt_in)
        for layer in self.decoder:
            y = layer(y, causal, x, src_bias)
        return y @ self.embed.weight.t()


def smoothed_loss(logits, target, eps):
    """fairseq's label_smoothed_nll_loss, summed over non-padding tokens: (loss, nll)."""
    lprobs = F.log_softmax(logits, dim=-1).view(-1, logits.shape[-1])
    target = target.view(-1, 1)
    keep = target != PAD
    nll = -lprobs.gather(1, target)[keep].sum()
    smooth = -lprobs.sum(dim=-1, keepdim=True)[keep].sum()
    eps_i = eps / (lprobs.shape[-1] - 1)
    return (1 - eps - eps_i) * nll + eps_i * smooth, nll


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("prepared")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--warmup", type=int, default=800)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--max-tokens", type=int, default=8192)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ff", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--log-interval", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    pairs, vocab = read_prepared(args.prepared)
    model = Transformer(vocab, args.d_model, args.heads, args.ff, args.layers, args.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    step, sums, start = 0, [0.0, 0.0, 0], time.time()
    while step < args.steps:
        for batch in batches(pairs, args.max_tokens, rng):
            step += 1
            lr = args.lr * min(step / args.warmup, math.sqrt(args.warmup / step))
            for group in opt.param_groups:
                group["lr"] = lr
            src = pad([np.append(pairs[i][0], EOS) for i in batch])
            tgt_in = pad([np.insert(pairs[i][1], 0, BOS) for i in batch])
            tgt_out = pad([np.append(pairs[i][1], EOS) for i in batch])
            ntokens = int((tgt_out != PAD).sum())
            loss, nll = smoothed_loss(model(src, tgt_in), tgt_out, args.label_smoothing)
            opt.zero_grad()
            (loss / ntokens).backward()
            opt.step()
            sums[0] += loss.item()
            sums[1] += nll.item()
            sums[2] += ntokens
            if step % args.log_interval == 0:
                print(json.dumps({"event": "train", "step": step, "loss": sums[0] / sums[2], "nll": sums[1] / sums[2],
                                  "lr": lr, "wall_s": round(time.time() - start, 1)}), flush=True)
                sums = [0.0, 0.0, 0]
            if step == args.steps:
                break


if __name__ == "__main__":
    sys.exit(main())
