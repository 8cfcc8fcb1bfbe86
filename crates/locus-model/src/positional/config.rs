//! The positional settings of a stack, `[model.positional]` tagged by `kind`, and the one list
//! of kinds ([`PositionalKind`]) derived from them, which the CLI, the lab, scripts
//! (`locus pe list`) and tests iterate over.

use serde::{Deserialize, Serialize};
use strum::{EnumDiscriminants, EnumIter, EnumString, IntoEnumIterator, IntoStaticStr};

use super::{absolute, alibi, fire, kerple, learned, none, relative, rope, sinusoidal, t5, xpos};
use crate::error::{ModelError, Result};
pub use absolute::Combine;
pub use sinusoidal::SinusoidalLayout;

/// Which positional encoding a stack uses, tagged by `kind`.
///
/// [`PositionalKind`], the list of kinds, is derived from these variants: adding one adds a
/// kind everywhere, and every `match` over the kinds stops compiling until it says what the
/// new one does (docs/adding-a-positional-encoding.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EnumDiscriminants)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[strum_discriminants(
    name(PositionalKind),
    derive(EnumIter, EnumString, IntoStaticStr, Hash, PartialOrd, Ord),
    strum(serialize_all = "snake_case")
)]
pub enum PositionalConfig {
    /// No position signal.
    None {},
    /// Fixed sinusoids (Vaswani et al. 2017), added to or concatenated with the embeddings.
    Sinusoidal {
        /// `interleaved` (Vaswani et al.) or `halves` (tensor2tensor, fairseq).
        #[serde(default)]
        layout: SinusoidalLayout,
        /// `add` (default) or `concat`.
        #[serde(default)]
        combine: Combine,
        /// Width of the position vector with `combine = "concat"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        d_pos: Option<usize>,
        /// Add the encoding again at the input of every layer.
        #[serde(default)]
        every_layer: bool,
        /// SHAPE: while training, each sequence's positions start at a random offset in
        /// `0..=position_shift`; 0 (the default) turns it off.
        #[serde(default)]
        position_shift: usize,
        /// Randomized positions (Ruoss et al. 2023): while training, each sequence's positions
        /// are a sorted random sample of distinct positions from `0..random_positions` instead
        /// of `0, 1, …`; plain positions at inference. 0 (the default) turns it off; otherwise
        /// at least the longest training sequence.
        #[serde(default)]
        random_positions: usize,
    },
    /// Trained absolute position vectors.
    Learned {
        /// Number of positions; longer inputs are an error.
        max_len: usize,
        /// `add` (default) or `concat`.
        #[serde(default)]
        combine: Combine,
        /// Width of the position vector with `combine = "concat"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        d_pos: Option<usize>,
        /// Add the encoding again at the input of every layer.
        #[serde(default)]
        every_layer: bool,
        /// SHAPE: while training, each sequence's positions start at a random offset in
        /// `0..=position_shift`; 0 (the default) turns it off. Must be below `max_len`, and a
        /// training sequence of `n` positions needs `max_len >= n + position_shift` (an error
        /// naming both otherwise).
        #[serde(default)]
        position_shift: usize,
        /// Randomized positions (Ruoss et al. 2023): while training, each sequence's positions
        /// are a sorted random sample of distinct positions from `0..random_positions` instead
        /// of `0, 1, …`; plain positions at inference. 0 (the default) turns it off; otherwise
        /// at least the longest training sequence, and at most `max_len`.
        #[serde(default)]
        random_positions: usize,
    },
    /// Relative position representations (Shaw et al. 2018) in every self-attention layer.
    Relative {
        /// Distances are clipped to `[-max_distance, max_distance]`.
        #[serde(default = "relative::default_max_distance")]
        max_distance: usize,
        /// Also add relative vectors to the values (eq. 3 of the paper), not only the keys.
        #[serde(default = "relative::default_values")]
        values: bool,
    },
    /// T5's bucketed relative attention bias (Raffel et al. 2020), one table per stack.
    T5 {
        /// Number of distance buckets.
        #[serde(default = "t5::default_num_buckets")]
        num_buckets: usize,
        /// Distances at or beyond this share the last bucket.
        #[serde(default = "t5::default_max_distance")]
        max_distance: usize,
    },
    /// Rotary position embedding (Su et al. 2021) of queries and keys.
    Rope {
        /// Base of the rotation frequencies.
        #[serde(default = "rope::default_theta")]
        theta: f64,
        /// Randomized positions (Ruoss et al. 2023): while training, each sequence's positions
        /// are a sorted random sample of distinct positions from `0..random_positions` instead
        /// of `0, 1, …`; plain positions at inference. 0 (the default) turns it off; otherwise
        /// at least the longest training sequence.
        #[serde(default)]
        random_positions: usize,
    },
    /// Attention with linear biases (Press et al. 2022).
    Alibi {},
    /// Functional interpolation of relative positions (Li et al. 2024): a learned MLP of the
    /// log distance normalised by the log query position.
    Fire {
        /// Hidden units of the MLP.
        #[serde(default = "fire::default_mlp_width")]
        mlp_width: usize,
        /// Initial value of the learned log scale `c`.
        #[serde(default = "fire::default_init_c")]
        init_c: f64,
        /// Initial value of the learned threshold `L` below which positions are not normalised.
        #[serde(default = "fire::default_init_threshold")]
        init_threshold: f64,
    },
    /// Kernelized relative positional bias, logarithmic kernel (Chi et al. 2022).
    Kerple {},
    /// RoPE with exponential decay (Sun et al. 2023).
    Xpos {
        /// Base of the rotation frequencies.
        #[serde(default = "rope::default_theta")]
        theta: f64,
        /// Positions per power of the decay factor ζ.
        #[serde(default = "xpos::default_scale_base")]
        scale_base: f64,
        /// γ of `ζ_j = (2j / d + γ) / (1 + γ)`.
        #[serde(default = "xpos::default_gamma")]
        gamma: f64,
        /// Randomized positions (Ruoss et al. 2023): while training, each sequence's positions
        /// are a sorted random sample of distinct positions from `0..random_positions` instead
        /// of `0, 1, …`; plain positions at inference. 0 (the default) turns it off; otherwise
        /// at least the longest training sequence.
        #[serde(default)]
        random_positions: usize,
    },
}

impl Default for PositionalConfig {
    /// Sinusoids added to the embeddings, as in Vaswani et al. 2017.
    fn default() -> Self {
        Self::default_for(PositionalKind::Sinusoidal, 0)
    }
}

impl PositionalKind {
    /// Every kind, in the order of [`PositionalConfig`]'s variants.
    pub fn all() -> impl Iterator<Item = Self> {
        Self::iter()
    }

    /// The kind's name, as the `kind` key spells it.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for PositionalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl PositionalConfig {
    /// The kind with every key at its default, as `{ kind = "..." }` parses; the same as
    /// [`PositionalConfig::default`] for `sinusoidal`.
    ///
    /// `learned` has no default length: its table gets `max_len` positions, which should be the
    /// longest sequence the caller will feed (tokens plus EOS or BOS). The other kinds ignore it.
    pub fn default_for(kind: PositionalKind, max_len: usize) -> Self {
        match kind {
            PositionalKind::None => Self::None {},
            PositionalKind::Sinusoidal => Self::Sinusoidal {
                layout: SinusoidalLayout::default(),
                combine: Combine::default(),
                d_pos: None,
                every_layer: false,
                position_shift: 0,
                random_positions: 0,
            },
            PositionalKind::Learned => Self::Learned {
                max_len,
                combine: Combine::default(),
                d_pos: None,
                every_layer: false,
                position_shift: 0,
                random_positions: 0,
            },
            PositionalKind::Relative => Self::Relative {
                max_distance: relative::default_max_distance(),
                values: relative::default_values(),
            },
            PositionalKind::T5 => {
                Self::T5 { num_buckets: t5::default_num_buckets(), max_distance: t5::default_max_distance() }
            }
            PositionalKind::Rope => Self::Rope { theta: rope::default_theta(), random_positions: 0 },
            PositionalKind::Alibi => Self::Alibi {},
            PositionalKind::Fire => Self::Fire {
                mlp_width: fire::default_mlp_width(),
                init_c: fire::default_init_c(),
                init_threshold: fire::default_init_threshold(),
            },
            PositionalKind::Kerple => Self::Kerple {},
            PositionalKind::Xpos => Self::Xpos {
                theta: rope::default_theta(),
                scale_base: xpos::default_scale_base(),
                gamma: xpos::default_gamma(),
                random_positions: 0,
            },
        }
    }

    /// Which kind this is.
    pub fn kind(&self) -> PositionalKind {
        self.into()
    }

    /// The settings shared by the absolute kinds, `None` for the others.
    fn absolute(&self, d_model: usize) -> Option<absolute::Absolute> {
        match *self {
            Self::Sinusoidal { combine, d_pos, every_layer, position_shift, .. }
            | Self::Learned { combine, d_pos, every_layer, position_shift, .. } => {
                Some(absolute::Absolute::new(d_model, combine, d_pos, every_layer, position_shift))
            }
            Self::None {}
            | Self::Relative { .. }
            | Self::T5 { .. }
            | Self::Rope { .. }
            | Self::Alibi {}
            | Self::Fire { .. }
            | Self::Kerple {}
            | Self::Xpos { .. } => None,
        }
    }

    /// The most positions a sequence may have under this encoding: a `learned` table's
    /// `max_len`; `None` (no limit) for the other kinds, which compute any position.
    pub fn max_positions(&self) -> Option<usize> {
        match *self {
            Self::Learned { max_len, .. } => Some(max_len),
            Self::None {}
            | Self::Sinusoidal { .. }
            | Self::Relative { .. }
            | Self::T5 { .. }
            | Self::Rope { .. }
            | Self::Alibi {}
            | Self::Fire { .. }
            | Self::Kerple {}
            | Self::Xpos { .. } => None,
        }
    }

    /// The range `0..n` randomized training positions are drawn from; 0 when off or for kinds
    /// that do not read absolute positions.
    pub fn random_positions(&self) -> usize {
        match *self {
            Self::Sinusoidal { random_positions, .. }
            | Self::Learned { random_positions, .. }
            | Self::Rope { random_positions, .. }
            | Self::Xpos { random_positions, .. } => random_positions,
            Self::None {}
            | Self::Relative { .. }
            | Self::T5 { .. }
            | Self::Alibi {}
            | Self::Fire { .. }
            | Self::Kerple {} => 0,
        }
    }

    /// Width of the token embeddings of a stack of width `d_model` using this encoding.
    pub fn token_width(&self, d_model: usize) -> usize {
        self.absolute(d_model).map_or(d_model, |absolute| absolute.token_width(d_model))
    }

    /// Checks the encoding's rules; `field` names it in messages (e.g. `model.encoder.positional`).
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field, the value and the rule.
    pub fn validate(&self, field: &str, d_model: usize, n_heads: usize, tie_embeddings: bool) -> Result<()> {
        if let Some(message) = self.random_positions_rule(field) {
            return Err(ModelError::Config(message));
        }
        let message = match *self {
            Self::None {} => none::validate(),
            Self::Sinusoidal { layout, combine, d_pos, every_layer, .. } => absolute::validate(
                field,
                combine,
                d_pos,
                every_layer,
                d_model,
                tie_embeddings,
            )
            .or_else(|| {
                sinusoidal::validate(field, layout, d_pos.filter(|_| combine == Combine::Concat), d_model)
            }),
            Self::Learned { max_len, combine, d_pos, every_layer, position_shift, .. } => {
                absolute::validate(field, combine, d_pos, every_layer, d_model, tie_embeddings)
                    .or_else(|| learned::validate(field, max_len, position_shift))
            }
            Self::Relative { max_distance, .. } => relative::validate(field, max_distance),
            Self::T5 { num_buckets, max_distance } => t5::validate(field, num_buckets, max_distance),
            Self::Rope { theta, .. } => rope::validate(field, theta, d_model, n_heads),
            Self::Alibi {} => alibi::validate(),
            Self::Fire { mlp_width, init_c, init_threshold } => {
                fire::validate(field, mlp_width, init_c, init_threshold)
            }
            Self::Kerple {} => kerple::validate(),
            Self::Xpos { theta, scale_base, gamma, .. } => rope::validate(field, theta, d_model, n_heads)
                .or_else(|| xpos::validate(field, scale_base, gamma)),
        };
        message.map_or(Ok(()), |message| Err(ModelError::Config(message)))
    }

    /// The rule randomized positions break, if any: a learned table must hold the range, and
    /// SHAPE's shifts are the other way of moving positions while training.
    fn random_positions_rule(&self, field: &str) -> Option<String> {
        let range = self.random_positions();
        match *self {
            _ if range == 0 => None,
            Self::Learned { max_len, .. } if range > max_len => Some(format!(
                "{field}.random_positions ({range}) must be at most {field}.max_len ({max_len}): \
                 positions are drawn from 0..random_positions"
            )),
            Self::Sinusoidal { position_shift, .. } | Self::Learned { position_shift, .. }
                if position_shift > 0 =>
            {
                Some(format!(
                    "{field}.random_positions ({range}) and {field}.position_shift ({position_shift}) \
                     both move positions while training: set one of them"
                ))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<PositionalConfig, toml::de::Error> {
        #[derive(Deserialize)]
        struct Wrapper {
            positional: PositionalConfig,
        }
        toml::from_str::<Wrapper>(text).map(|wrapper| wrapper.positional)
    }

    #[test]
    fn every_kind_parses_with_its_defaults() {
        assert_eq!(parse("positional = { kind = \"none\" }").unwrap(), PositionalConfig::None {});
        assert_eq!(parse("positional = { kind = \"sinusoidal\" }").unwrap(), PositionalConfig::default());
        assert_eq!(
            parse("positional = { kind = \"relative\" }").unwrap(),
            PositionalConfig::Relative { max_distance: 16, values: true }
        );
        assert_eq!(
            parse("positional = { kind = \"t5\" }").unwrap(),
            PositionalConfig::T5 { num_buckets: 32, max_distance: 128 }
        );
        assert_eq!(
            parse("positional = { kind = \"rope\" }").unwrap(),
            PositionalConfig::Rope { theta: 10000.0, random_positions: 0 }
        );
        assert_eq!(parse("positional = { kind = \"alibi\" }").unwrap(), PositionalConfig::Alibi {});
        assert_eq!(
            parse("positional = { kind = \"fire\" }").unwrap(),
            PositionalConfig::Fire { mlp_width: 32, init_c: 0.1, init_threshold: 512.0 }
        );
        assert_eq!(parse("positional = { kind = \"kerple\" }").unwrap(), PositionalConfig::Kerple {});
        assert_eq!(
            parse("positional = { kind = \"xpos\", scale_base = 64 }").unwrap(),
            PositionalConfig::Xpos { theta: 10000.0, scale_base: 64.0, gamma: 0.4, random_positions: 0 }
        );
        assert_eq!(
            parse("positional = { kind = \"learned\", max_len = 9, combine = \"concat\", d_pos = 4 }")
                .unwrap(),
            PositionalConfig::Learned {
                max_len: 9,
                combine: Combine::Concat,
                d_pos: Some(4),
                every_layer: false,
                position_shift: 0,
                random_positions: 0
            }
        );
    }

    /// The list: every kind's name parses back to it, `{ kind = NAME }` parses to
    /// `default_for` (a learned table also needs its `max_len`), and the defaults validate.
    #[test]
    fn every_kind_of_the_list_parses_with_its_defaults() {
        let kinds: Vec<PositionalKind> = PositionalKind::all().collect();
        assert_eq!(kinds.len(), 10);
        assert_eq!(kinds.first(), Some(&PositionalKind::None));
        for kind in kinds {
            assert_eq!(kind.name().parse::<PositionalKind>().unwrap(), kind);
            let defaults = PositionalConfig::default_for(kind, 9);
            assert_eq!(defaults.kind(), kind);
            let minimal = format!("positional = {{ kind = \"{kind}\" }}");
            let parsed = match parse(&minimal) {
                Ok(parsed) => parsed,
                Err(err) => {
                    assert!(err.to_string().contains("missing field `max_len`"), "{kind}: {err}");
                    parse(&format!("positional = {{ kind = \"{kind}\", max_len = 9 }}")).unwrap()
                }
            };
            assert_eq!(parsed, defaults, "{kind}");
            defaults.validate("p", 32, 4, true).unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
        assert!("sinusoids".parse::<PositionalKind>().is_err());
    }

    #[test]
    fn unknown_keys_of_a_kind_are_rejected() {
        let err = parse("positional = { kind = \"alibi\", slope = 2 }").unwrap_err();
        assert!(err.to_string().contains("slope"), "{err}");
    }

    #[test]
    fn rules_name_the_field() {
        let check = |cfg: PositionalConfig, tie: bool| {
            cfg.validate("model.encoder.positional", 32, 4, tie).unwrap_err().to_string()
        };
        let concat = |d_pos| PositionalConfig::Sinusoidal {
            layout: SinusoidalLayout::Interleaved,
            combine: Combine::Concat,
            d_pos,
            every_layer: false,
            position_shift: 0,
            random_positions: 0,
        };
        assert!(check(concat(None), false).contains("model.encoder.positional.combine = \"concat\" needs"));
        assert!(check(concat(Some(32)), false).contains("d_pos (32) must be between 1 and"));
        assert!(check(concat(Some(8)), true).contains("needs model.tie_embeddings = false"));
        assert!(
            check(PositionalConfig::Rope { theta: 0.5, random_positions: 0 }, true).contains("theta (0.5)")
        );
        assert!(check(PositionalConfig::Fire { mlp_width: 0, init_c: 0.1, init_threshold: 512.0 }, true)
            .contains("model.encoder.positional.mlp_width (0)"));
        assert!(check(PositionalConfig::Fire { mlp_width: 8, init_c: 0.0, init_threshold: 512.0 }, true)
            .contains("init_c (0)"));
        assert!(check(
            PositionalConfig::Xpos { theta: 10000.0, scale_base: -1.0, gamma: 0.4, random_positions: 0 },
            true
        )
        .contains("model.encoder.positional.scale_base (-1)"));
        assert!(PositionalConfig::Xpos {
            theta: 10000.0,
            scale_base: 512.0,
            gamma: 0.4,
            random_positions: 0
        }
        .validate("p", 36, 4, true)
        .unwrap_err()
        .to_string()
        .contains("(9) must be even"));
        assert!(check(PositionalConfig::Relative { max_distance: 0, values: true }, true)
            .contains("max_distance (0)"));
        assert!(concat(Some(8)).validate("p", 32, 4, false).is_ok());
        let odd_heads = PositionalConfig::Rope { theta: 10000.0, random_positions: 0 }
            .validate("p", 36, 4, true)
            .unwrap_err();
        assert!(odd_heads.to_string().contains("head width d_model / n_heads (9) must be even"));
        let learned = |max_len, position_shift, random_positions| PositionalConfig::Learned {
            max_len,
            combine: Combine::Add,
            d_pos: None,
            every_layer: false,
            position_shift,
            random_positions,
        };
        assert!(check(learned(64, 0, 65), true)
            .contains("model.encoder.positional.random_positions (65) must be at most model.encoder.positional.max_len (64)"));
        assert!(check(learned(64, 4, 32), true)
            .contains("random_positions (32) and model.encoder.positional.position_shift (4)"));
        assert!(learned(64, 0, 64).validate("p", 32, 4, true).is_ok());
        assert_eq!(learned(64, 0, 48).random_positions(), 48);
        let random_rope = parse("positional = { kind = \"rope\", random_positions = 256 }").unwrap();
        assert_eq!(random_rope, PositionalConfig::Rope { theta: 10000.0, random_positions: 256 });
        assert_eq!(random_rope.random_positions(), 256);
        assert!(parse("positional = { kind = \"t5\", random_positions = 256 }").is_err());
    }
}
