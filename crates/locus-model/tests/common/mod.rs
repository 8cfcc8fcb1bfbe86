//! Model configurations covering every positional encoding and option, and a padded source
//! batch, shared by the tests.
#![allow(dead_code)] // Each test file uses its own subset.

use candle_core::{Device, Tensor};
use locus_model::positional::{Combine, PositionalKind, SinusoidalLayout};
use locus_model::{ModelConfig, NormPosition, PositionalConfig, StackConfig};

fn sinusoidal(
    layout: SinusoidalLayout,
    combine: Combine,
    d_pos: Option<usize>,
    every_layer: bool,
) -> PositionalConfig {
    PositionalConfig::Sinusoidal {
        layout,
        combine,
        d_pos,
        every_layer,
        position_shift: 0,
        random_positions: 0,
    }
}

/// A tiny model for each variant, named for failure messages: chosen options of every kind,
/// then every kind of the list with its defaults (a learned table of 64 positions) where the
/// chosen ones do not have them already, so a new kind is tested without a line here.
pub fn variants() -> Vec<(&'static str, ModelConfig)> {
    let tiny = ModelConfig::tiny_with;
    let mut variants = vec![
        ("none", tiny(PositionalConfig::None {})),
        ("sinusoidal", tiny(PositionalConfig::default())),
        (
            "sinusoidal halves every_layer",
            tiny(sinusoidal(SinusoidalLayout::Halves, Combine::Add, None, true)),
        ),
        (
            "sinusoidal concat",
            ModelConfig {
                tie_embeddings: false,
                ..tiny(sinusoidal(SinusoidalLayout::Interleaved, Combine::Concat, Some(8), false))
            },
        ),
        (
            "learned",
            tiny(PositionalConfig::Learned {
                max_len: 64,
                combine: Combine::Add,
                d_pos: None,
                every_layer: false,
                position_shift: 0,
                random_positions: 0,
            }),
        ),
        (
            "learned concat pre-norm",
            ModelConfig {
                tie_embeddings: false,
                norm: NormPosition::Pre,
                ..tiny(PositionalConfig::Learned {
                    max_len: 64,
                    combine: Combine::Concat,
                    d_pos: Some(12),
                    every_layer: false,
                    position_shift: 0,
                    random_positions: 0,
                })
            },
        ),
        ("relative", tiny(PositionalConfig::Relative { max_distance: 3, values: true })),
        (
            "relative keys only pre-norm",
            ModelConfig {
                norm: NormPosition::Pre,
                ..tiny(PositionalConfig::Relative { max_distance: 2, values: false })
            },
        ),
        ("t5", tiny(PositionalConfig::T5 { num_buckets: 8, max_distance: 12 })),
        ("rope", tiny(PositionalConfig::Rope { theta: 10000.0, random_positions: 0 })),
        ("alibi", tiny(PositionalConfig::Alibi {})),
        // A threshold the test sentences pass, so that FIRE's bias depends on query positions.
        ("fire threshold 3", tiny(PositionalConfig::Fire { mlp_width: 8, init_c: 0.5, init_threshold: 3.0 })),
        // Decay fast enough to matter within the test sentences.
        (
            "xpos scale_base 4",
            tiny(PositionalConfig::Xpos { theta: 10000.0, scale_base: 4.0, gamma: 0.4, random_positions: 0 }),
        ),
        (
            "relative encoder, rope decoder",
            ModelConfig {
                encoder: StackConfig {
                    positional: Some(PositionalConfig::Relative { max_distance: 4, values: true }),
                },
                decoder: StackConfig {
                    positional: Some(PositionalConfig::Rope { theta: 100.0, random_positions: 0 }),
                },
                ..ModelConfig::tiny()
            },
        ),
    ];
    for kind in PositionalKind::all() {
        let defaults = tiny(PositionalConfig::default_for(kind, 64));
        if !variants.iter().any(|(_, cfg)| *cfg == defaults) {
            variants.push((kind.name(), defaults));
        }
    }
    variants
}

/// A padded batch of sources: 9, 3 and 1 real tokens, each followed by EOS (2); padding is 0.
pub fn padded_sources() -> (Tensor, Vec<usize>) {
    let src = Tensor::new(
        &[
            [5u32, 9, 12, 7, 20, 4, 4, 17, 9, 2],
            [15, 3, 8, 2, 0, 0, 0, 0, 0, 0],
            [11, 2, 0, 0, 0, 0, 0, 0, 0, 0],
        ],
        &Device::Cpu,
    )
    .unwrap();
    (src, vec![9, 3, 1])
}
