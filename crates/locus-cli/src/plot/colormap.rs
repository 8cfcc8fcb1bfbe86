//! Colour maps and per-panel colour scales for heatmaps.
//!
//! A panel whose finite values have both signs uses a diverging blue-white-red map centred on 0
//! (symmetric: the scale runs from `-m` to `m` with `m` the largest magnitude, so equal magnitudes get
//! equally strong colours); any other panel uses the sequential viridis map from its minimum to its
//! maximum. Non-finite values (NaN, ±inf, e.g. masked attention positions) are left out of the scale
//! and drawn in [`NON_FINITE`].

/// An RGB colour.
pub type Rgb = [u8; 3];

/// Colour of non-finite cells: a light neutral grey that neither map contains.
pub const NON_FINITE: Rgb = [190, 190, 190];

/// ColorBrewer's RdBu, reversed so that low is blue and high is red; its middle entry is near-white.
const DIVERGING: [Rgb; 11] = [
    [5, 48, 97],
    [33, 102, 172],
    [67, 147, 195],
    [146, 197, 222],
    [209, 229, 240],
    [247, 247, 247],
    [253, 219, 199],
    [244, 165, 130],
    [214, 96, 77],
    [178, 24, 43],
    [103, 0, 31],
];

/// Matplotlib's viridis, sampled at nine evenly spaced points.
const SEQUENTIAL: [Rgb; 9] = [
    [68, 1, 84],
    [72, 40, 120],
    [62, 73, 137],
    [49, 104, 142],
    [38, 130, 142],
    [31, 158, 137],
    [53, 183, 121],
    [110, 206, 88],
    [253, 231, 37],
];

/// A colour map: a function from a position in `[0, 1]` to a colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMap {
    /// Blue (0) - white (0.5) - red (1), for data with both signs.
    Diverging,
    /// Viridis: dark purple (0) to yellow (1), for data of one sign.
    Sequential,
}

impl ColorMap {
    fn anchors(self) -> &'static [Rgb] {
        match self {
            ColorMap::Diverging => &DIVERGING,
            ColorMap::Sequential => &SEQUENTIAL,
        }
    }

    /// The colour at position `t` (clamped to `[0, 1]`; NaN counts as 0), interpolated linearly
    /// between the map's anchor colours.
    pub fn at(self, t: f64) -> Rgb {
        let anchors = self.anchors();
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let pos = t * (anchors.len() - 1) as f64;
        let i = (pos.floor() as usize).min(anchors.len() - 2);
        let frac = pos - i as f64;
        let (a, b) = (anchors[i], anchors[i + 1]);
        let mix = |k: usize| (a[k] as f64 + (b[k] as f64 - a[k] as f64) * frac).round() as u8;
        [mix(0), mix(1), mix(2)]
    }

    /// The colour at the top of the map (position 1), given to the largest values.
    #[cfg(test)]
    pub fn top(self) -> Rgb {
        self.at(1.0)
    }

    /// The colour at the bottom of the map (position 0), given to the smallest values.
    #[cfg(test)]
    pub fn bottom(self) -> Rgb {
        self.at(0.0)
    }
}

/// How one panel's values map to colours.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorScale {
    /// The colour map.
    pub map: ColorMap,
    /// The value at the bottom of the map (position 0).
    pub lo: f64,
    /// The value at the top of the map (position 1).
    pub hi: f64,
    /// The smallest finite value of the panel.
    pub data_min: f64,
    /// The largest finite value of the panel.
    pub data_max: f64,
}

impl ColorScale {
    /// The scale for a panel with these values, or `None` when none of them is finite.
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a f32>) -> Option<Self> {
        let mut range: Option<(f64, f64)> = None;
        for &v in values {
            if v.is_finite() {
                let v = f64::from(v);
                range = Some(match range {
                    None => (v, v),
                    Some((lo, hi)) => (lo.min(v), hi.max(v)),
                });
            }
        }
        let (data_min, data_max) = range?;
        Some(if data_min < 0.0 && data_max > 0.0 {
            let m = data_min.abs().max(data_max);
            ColorScale { map: ColorMap::Diverging, lo: -m, hi: m, data_min, data_max }
        } else {
            ColorScale { map: ColorMap::Sequential, lo: data_min, hi: data_max, data_min, data_max }
        })
    }

    /// The position of `v` on the map, in `[0, 1]`; 0.5 for every value when the scale is a single
    /// value (a constant panel).
    pub fn position(&self, v: f64) -> f64 {
        if self.hi > self.lo {
            ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
        } else {
            0.5
        }
    }

    /// The colour of a cell with value `v`: [`NON_FINITE`] when `v` is not finite.
    pub fn color(&self, v: f32) -> Rgb {
        if v.is_finite() {
            self.map.at(self.position(f64::from(v)))
        } else {
            NON_FINITE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_interpolate_between_their_ends() {
        assert_eq!(ColorMap::Diverging.at(0.5), [247, 247, 247]);
        assert_eq!(ColorMap::Diverging.top(), [103, 0, 31]);
        assert_eq!(ColorMap::Diverging.bottom(), [5, 48, 97]);
        assert_eq!(ColorMap::Sequential.top(), [253, 231, 37]);
        assert_eq!(ColorMap::Sequential.at(2.0), ColorMap::Sequential.top());
        assert_eq!(ColorMap::Sequential.at(f64::NAN), ColorMap::Sequential.bottom());
        let mid = ColorMap::Sequential.at(1.0 / 16.0);
        assert_eq!(mid, [70, 21, 102]);
    }

    #[test]
    fn scale_choice_follows_the_signs() {
        let signed = ColorScale::from_values(&[-0.5, 2.0, f32::NEG_INFINITY]).unwrap();
        assert_eq!(signed.map, ColorMap::Diverging);
        assert_eq!((signed.lo, signed.hi, signed.data_min, signed.data_max), (-2.0, 2.0, -0.5, 2.0));
        assert_eq!(signed.color(0.0), [247, 247, 247]);
        assert_eq!(signed.color(2.0), ColorMap::Diverging.top());
        assert_eq!(signed.color(f32::NAN), NON_FINITE);

        let positive = ColorScale::from_values(&[0.0, 3.0, f32::INFINITY]).unwrap();
        assert_eq!(positive.map, ColorMap::Sequential);
        assert_eq!((positive.lo, positive.hi), (0.0, 3.0));
        assert_eq!(positive.color(3.0), ColorMap::Sequential.top());

        let constant = ColorScale::from_values(&[-1.0, -1.0]).unwrap();
        assert_eq!(constant.map, ColorMap::Sequential);
        assert_eq!(constant.position(-1.0), 0.5);

        assert_eq!(ColorScale::from_values(&[f32::NAN, f32::NEG_INFINITY]), None);
    }

    #[test]
    fn non_finite_colour_is_not_in_either_map() {
        for map in [ColorMap::Diverging, ColorMap::Sequential] {
            for i in 0..=1000 {
                let c = map.at(f64::from(i) / 1000.0);
                let dist: i32 = (0..3).map(|k| (i32::from(c[k]) - i32::from(NON_FINITE[k])).abs()).sum();
                assert!(dist > 30, "{map:?} at {i}/1000 is {c:?}, too close to the non-finite grey");
            }
        }
    }
}
