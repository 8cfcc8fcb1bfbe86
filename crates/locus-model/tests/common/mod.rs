//! Model configurations covering every positional encoding and option, shared by the tests.

use locus_model::positional::{Combine, SinusoidalLayout};
use locus_model::{ModelConfig, NormPosition, PositionalConfig, StackConfig};

fn sinusoidal(
    layout: SinusoidalLayout,
    combine: Combine,
    d_pos: Option<usize>,
    every_layer: bool,
) -> PositionalConfig {
    PositionalConfig::Sinusoidal { layout, combine, d_pos, every_layer, position_shift: 0 }
}

/// A tiny model for each variant, named for failure messages.
pub fn variants() -> Vec<(&'static str, ModelConfig)> {
    let tiny = ModelConfig::tiny_with;
    vec![
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
        ("rope", tiny(PositionalConfig::Rope { theta: 10000.0 })),
        ("alibi", tiny(PositionalConfig::Alibi {})),
        (
            "relative encoder, rope decoder",
            ModelConfig {
                encoder: StackConfig {
                    positional: Some(PositionalConfig::Relative { max_distance: 4, values: true }),
                },
                decoder: StackConfig { positional: Some(PositionalConfig::Rope { theta: 100.0 }) },
                ..ModelConfig::tiny()
            },
        ),
    ]
}
