#!/usr/bin/env python3
"""Makes the CTranslate2 fixtures of crates/locus-train/tests/fixtures/ct2-tiny/ with
CTranslate2's own Python spec API, for `locus export ctranslate2` to be checked against.

Each case is a tiny Locus model (width 8, 2 heads, 1+1 layers, 12 tokens) with seeded random
weights. For each, this script writes, into tests/fixtures/ct2-tiny/<case>/:

- locus/model.safetensors: the weights under Locus's variable names (what a checkpoint holds);
- locus/model.json: the `[model]` settings and the position-table length the export is run with;
- ct2/model.bin, ct2/config.json, ct2/shared_vocabulary.json: what CTranslate2's
  TransformerSpec makes of those weights, mapped here by hand (independently of the Rust code).

The Rust test (crates/locus-train/tests/export_ctranslate2.rs) exports locus/ and compares:
model.bin byte for byte, the JSON files by value.

Run (CTranslate2 4.8 and numpy in a venv):
    python3 -m venv /work/venv-ct2 && /work/venv-ct2/bin/pip install ctranslate2 numpy
    /work/venv-ct2/bin/python scripts/make-ct2-fixture.py
"""

import json
import math
import os
import struct
import sys

import numpy as np
from ctranslate2.specs import common_spec, transformer_spec

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "crates",
    "locus-train",
    "tests",
    "fixtures",
    "ct2-tiny",
)
D_MODEL, N_HEADS, D_FF, VOCAB = 8, 2, 16, 12
HEAD_DIM = D_MODEL // N_HEADS
TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "▁a", "▁b", "c", "d", "▁über", "ß", "▁x", "y"]
POSITIONS = 16

# Each case: encoder and decoder positional settings (Locus's `[model.positional]`), and the
# other `[model]` keys that differ from the defaults, and the quantization.
CASES = {
    "sinusoidal": dict(enc={"kind": "sinusoidal"}, dec={"kind": "sinusoidal"}),
    "sinusoidal-int8": dict(
        enc={"kind": "sinusoidal"}, dec={"kind": "sinusoidal"}, quantization="int8"
    ),
    "learned-prenorm-gelu-untied": dict(
        enc={"kind": "learned", "max_len": 12},
        dec={"kind": "learned", "max_len": 12},
        model={"norm": "pre", "activation": "gelu", "tie_embeddings": False},
    ),
    "halves-none": dict(
        enc={"kind": "sinusoidal", "layout": "halves"}, dec={"kind": "none"}
    ),
    "relative": dict(
        enc={"kind": "relative", "max_distance": 3},
        dec={"kind": "relative", "max_distance": 3, "values": False},
    ),
    "t5": dict(
        enc={"kind": "t5", "num_buckets": 8, "max_distance": 16},
        dec={"kind": "t5", "num_buckets": 8, "max_distance": 16},
    ),
    "rope": dict(enc={"kind": "rope", "theta": 10000.0}, dec={"kind": "rope", "theta": 500.0}),
    "none-alibi": dict(enc={"kind": "none"}, dec={"kind": "alibi"}, model={"layer_norm_eps": 1e-6}),
}


def sinusoid_table(n, d, layout):
    """Locus's table (crates/locus-model/src/positional/sinusoidal.rs), in float64, then f32."""
    table = np.zeros((n, d), dtype=np.float64)
    for pos in range(n):
        for dim in range(d):
            if layout == "interleaved":
                angle = pos / 10000.0 ** ((dim // 2 * 2) / d)
                table[pos, dim] = math.sin(angle) if dim % 2 == 0 else math.cos(angle)
            else:
                half = d // 2
                i = dim % half
                angle = pos / 10000.0 ** (i / max(half - 1.0, 1.0))
                table[pos, dim] = math.sin(angle) if dim < half else math.cos(angle)
    return table.astype(np.float32)


def write_safetensors(path, tensors):
    header = {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], dtype=np.float32)
        blob = array.tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def make_weights(rng, case):
    enc, dec = case["enc"], case["dec"]
    model = case.get("model", {})
    tied = model.get("tie_embeddings", True)
    pre = model.get("norm", "post") == "pre"
    w = {}

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.5

    def linear(name, out_dim, in_dim):
        w[name + ".weight"] = rand(out_dim, in_dim)
        w[name + ".bias"] = rand(out_dim)

    def norm(name):
        w[name + ".weight"] = 1.0 + rand(D_MODEL) * 0.1
        w[name + ".bias"] = rand(D_MODEL) * 0.1

    def attention(name):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(f"{name}.{proj}", D_MODEL, D_MODEL)

    if tied:
        w["embed.weight"] = rand(VOCAB, D_MODEL)
    else:
        w["encoder.embed.weight"] = rand(VOCAB, D_MODEL)
        w["decoder.embed.weight"] = rand(VOCAB, D_MODEL)
        w["output_projection.weight"] = rand(VOCAB, D_MODEL)
    for stack, pos in (("encoder", enc), ("decoder", dec)):
        if pos["kind"] == "learned":
            w[f"{stack}.positional.weight"] = rand(pos["max_len"], D_MODEL)
        if pos["kind"] == "t5":
            w[f"{stack}.positional.weight"] = rand(pos["num_buckets"], N_HEADS)
        layer = f"{stack}.layers.0"
        attention(f"{layer}.self_attn")
        norm(f"{layer}.self_attn_norm")
        if pos["kind"] == "relative":
            rows = 2 * pos["max_distance"] + 1
            w[f"{layer}.self_attn.relative.keys"] = rand(rows, HEAD_DIM)
            if pos.get("values", True):
                w[f"{layer}.self_attn.relative.values"] = rand(rows, HEAD_DIM)
        if stack == "decoder":
            attention(f"{layer}.cross_attn")
            norm(f"{layer}.cross_attn_norm")
        linear(f"{layer}.ffn.fc1", D_FF, D_MODEL)
        linear(f"{layer}.ffn.fc2", D_MODEL, D_FF)
        norm(f"{layer}.ffn_norm")
        if pre:
            norm(f"{stack}.final_norm")
    return w


def position_table(pos, weights, stack):
    """The explicit table CTranslate2 adds to the embeddings, or None (positions inside attention)."""
    kind = pos["kind"]
    if kind == "sinusoidal":
        return sinusoid_table(POSITIONS, D_MODEL, pos.get("layout", "interleaved"))
    if kind == "learned":
        return weights[f"{stack}.positional.weight"]
    if kind == "none":
        return np.zeros((POSITIONS, D_MODEL), dtype=np.float32)
    return None


def set_linear(spec, weight, bias):
    spec.weight = weight
    spec.bias = bias


def set_norm(spec, weights, name):
    spec.gamma = weights[name + ".weight"]
    spec.beta = weights[name + ".bias"]


def set_self_attention(spec, weights, name, pos, stack):
    cat = lambda part: np.concatenate(
        [weights[f"{name}.{p}_proj.{part}"] for p in ("q", "k", "v")]
    )
    set_linear(spec.linear[0], cat("weight"), cat("bias"))
    set_linear(spec.linear[1], weights[f"{name}.out_proj.weight"], weights[f"{name}.out_proj.bias"])
    kind = pos["kind"]
    if kind == "relative":
        keys = weights[f"{name}.relative.keys"]
        spec.relative_position_keys = keys
        spec.relative_position_values = weights.get(
            f"{name}.relative.values", np.zeros_like(keys)
        )
    if kind == "t5":
        spec.relative_attention_bias = weights[f"{stack}.positional.weight"]
        spec.relative_attention_max_distance = np.dtype("int32").type(pos["max_distance"])


def set_cross_attention(spec, weights, name):
    set_linear(spec.linear[0], weights[f"{name}.q_proj.weight"], weights[f"{name}.q_proj.bias"])
    kv = lambda part: np.concatenate([weights[f"{name}.{p}_proj.{part}"] for p in ("k", "v")])
    set_linear(spec.linear[1], kv("weight"), kv("bias"))
    set_linear(spec.linear[2], weights[f"{name}.out_proj.weight"], weights[f"{name}.out_proj.bias"])


def set_ffn(spec, weights, name):
    set_linear(spec.linear_0, weights[f"{name}.fc1.weight"], weights[f"{name}.fc1.bias"])
    set_linear(spec.linear_1, weights[f"{name}.fc2.weight"], weights[f"{name}.fc2.bias"])


def rope_kwargs(pos):
    if pos["kind"] != "rope":
        return {}
    return dict(rotary_dim=0, rotary_interleave=True, rotary_base=pos.get("theta", 10000.0))


def build_spec(case, weights):
    enc, dec = case["enc"], case["dec"]
    model = case.get("model", {})
    pre = model.get("norm", "post") == "pre"
    activation = {
        "relu": common_spec.Activation.RELU,
        "gelu": common_spec.Activation.GELU,
    }[model.get("activation", "relu")]
    tied = model.get("tie_embeddings", True)
    encoder = transformer_spec.TransformerEncoderSpec(
        1,
        N_HEADS,
        pre_norm=pre,
        activation=activation,
        relative_position=enc["kind"] == "relative",
        relative_attention_bias=enc["kind"] == "t5",
        **rope_kwargs(enc),
    )
    decoder = transformer_spec.TransformerDecoderSpec(
        1,
        N_HEADS,
        pre_norm=pre,
        activation=activation,
        relative_position=dec["kind"] == "relative",
        relative_attention_bias=dec["kind"] == "t5",
        alibi=dec["kind"] == "alibi",
        **rope_kwargs(dec),
    )
    spec = transformer_spec.TransformerSpec(encoder, decoder)
    scale = model.get("scale_embeddings", True)
    encoder.scale_embeddings = scale
    decoder.scale_embeddings = scale
    encoder.embeddings[0].weight = weights["embed.weight" if tied else "encoder.embed.weight"]
    decoder.embeddings.weight = weights["embed.weight" if tied else "decoder.embed.weight"]
    decoder.projection.weight = weights["embed.weight" if tied else "output_projection.weight"]
    for stack_spec, stack, pos in ((encoder, "encoder", enc), (decoder, "decoder", dec)):
        table = position_table(pos, weights, stack)
        if table is not None:
            stack_spec.position_encodings.encodings = table
        if pre:
            set_norm(stack_spec.layer_norm, weights, f"{stack}.final_norm")
        layer_spec = stack_spec.layer[0]
        layer = f"{stack}.layers.0"
        set_self_attention(layer_spec.self_attention, weights, f"{layer}.self_attn", pos, stack)
        set_norm(layer_spec.self_attention.layer_norm, weights, f"{layer}.self_attn_norm")
        if stack == "decoder":
            set_cross_attention(layer_spec.attention, weights, f"{layer}.cross_attn")
            set_norm(layer_spec.attention.layer_norm, weights, f"{layer}.cross_attn_norm")
        set_ffn(layer_spec.ffn, weights, f"{layer}.ffn")
        set_norm(layer_spec.ffn.layer_norm, weights, f"{layer}.ffn_norm")
    if dec["kind"] == "alibi":
        decoder.alibi_use_positive_positions = False
        decoder.scale_alibi = False
    spec.config.add_source_eos = True
    spec.config.layer_norm_epsilon = model.get("layer_norm_eps", 1e-5)
    spec.register_source_vocabulary(TOKENS)
    spec.register_target_vocabulary(TOKENS)
    return spec


def main():
    for index, (name, case) in enumerate(sorted(CASES.items())):
        rng = np.random.default_rng(20 + index)
        weights = make_weights(rng, case)
        locus_dir = os.path.join(OUT, name, "locus")
        ct2_dir = os.path.join(OUT, name, "ct2")
        os.makedirs(locus_dir, exist_ok=True)
        os.makedirs(ct2_dir, exist_ok=True)
        for old in os.listdir(ct2_dir):
            os.remove(os.path.join(ct2_dir, old))
        write_safetensors(os.path.join(locus_dir, "model.safetensors"), weights)
        model = {
            "d_model": D_MODEL,
            "n_heads": N_HEADS,
            "d_ff": D_FF,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "dropout": 0.0,
            **case.get("model", {}),
            "encoder": {"positional": case["enc"]},
            "decoder": {"positional": case["dec"]},
        }
        with open(os.path.join(locus_dir, "model.json"), "w", encoding="utf-8") as f:
            json.dump(
                {
                    "model": model,
                    "vocabulary": TOKENS,
                    "positions": POSITIONS,
                    "quantization": case.get("quantization"),
                },
                f,
                indent=2,
                ensure_ascii=False,
            )
            f.write("\n")
        spec = build_spec(case, weights)
        spec.validate()
        spec.optimize(quantization=case.get("quantization"))
        spec.save(ct2_dir)
        print(name, os.path.getsize(os.path.join(ct2_dir, "model.bin")), "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
