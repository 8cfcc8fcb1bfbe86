//! Linear axes for line charts: a range that covers the data and ends on ticks, ticks at 1, 2 or 5
//! times a power of ten, and tick labels that print exactly (`0.25`, `2e-4`, `1.5e6`).

use super::canvas::real_minus;

/// Tick labels are plain decimals while the largest tick magnitude is in this range, and
/// scientific (`2e-4`, `1.5e6`) outside it.
const PLAIN: std::ops::Range<f64> = 1e-2..1e6;

/// A linear axis from `lo` to `hi` with labelled ticks.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Axis {
    /// The value at the start of the axis.
    pub(super) lo: f64,
    /// The value at the end of the axis (greater than `lo`).
    pub(super) hi: f64,
    /// The ticks, ascending: value and label.
    pub(super) ticks: Vec<(f64, String)>,
}

impl Axis {
    /// An axis covering the values `min..=max` with at most `max_ticks` ticks (at least 3), its
    /// ends on ticks. A single value gets a little room around it (at least 1 with `integer`); with
    /// `integer`, ticks are whole numbers (training steps). Non-finite bounds give the axis 0..1.
    pub(super) fn fit(min: f64, max: f64, max_ticks: usize, integer: bool) -> Self {
        let (mut min, mut max) =
            if min.is_finite() && max.is_finite() { (min.min(max), min.max(max)) } else { (0.0, 1.0) };
        if max - min <= max.abs().max(min.abs()) * 1e-12 {
            let pad = if max == 0.0 { 1.0 } else { max.abs() * 0.05 };
            let pad = if integer { pad.max(1.0) } else { pad };
            (min, max) = (min - pad, max + pad);
        }
        let intervals = max_ticks.max(3) as f64 - 1.0;
        // max / n - min / n rather than (max - min) / n, which overflows for huge ranges.
        let raw = max / intervals - min / intervals;
        let mut exp = raw.log10().floor() as i32;
        // Ticks are at k * step; a little slack for rounding keeps data that ends on a tick from
        // getting an extra, empty one.
        let k_range = |step: f64| ((min / step + 1e-9).floor(), (max / step - 1e-9).ceil());
        let mantissa = loop {
            let fits = [1, 2, 5].into_iter().find(|&m| {
                let (k_lo, k_hi) = k_range(step_value(m, exp));
                k_hi - k_lo <= intervals + 0.5
            });
            match fits {
                Some(m) => break m,
                None => exp += 1,
            }
        };
        let (mantissa, exp) = if integer && exp < 0 { (1, 0) } else { (mantissa, exp) };
        let step = step_value(mantissa, exp);
        let (k_lo, k_hi) = k_range(step);
        let (k_lo, k_hi) = (k_lo as i64, (k_hi as i64).max(k_lo as i64 + 1));
        let magnitude = k_lo.unsigned_abs().max(k_hi.unsigned_abs()) as f64 * step;
        let scientific = !PLAIN.contains(&magnitude);
        let ticks = (k_lo..=k_hi).map(|k| (k as f64 * step, label(k * mantissa, exp, scientific))).collect();
        Axis { lo: k_lo as f64 * step, hi: k_hi as f64 * step, ticks }
    }

    /// Where `v` lies along the axis: 0 at `lo`, 1 at `hi`.
    pub(super) fn position(&self, v: f64) -> f64 {
        // Halved first, so that huge ranges do not overflow.
        (v / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0)
    }
}

fn step_value(mantissa: i64, exp: i32) -> f64 {
    mantissa as f64 * 10f64.powi(exp)
}

/// The label of the tick `n * 10^exp`: plain (`0.25`, `1200`) or scientific (`2e-4`, `1.5e6`),
/// printed from the integers so that no rounding error shows.
fn label(n: i64, exp: i32, scientific: bool) -> String {
    if n == 0 {
        return "0".to_string();
    }
    let s = if scientific {
        let (mut digits, mut exp) = (n.unsigned_abs(), exp);
        while digits.is_multiple_of(10) {
            digits /= 10;
            exp += 1;
        }
        let digits = digits.to_string();
        let (first, rest) = digits.split_at(1);
        let exp = exp + rest.len() as i32;
        let sign = if n < 0 { "-" } else { "" };
        if rest.is_empty() {
            format!("{sign}{first}e{exp}")
        } else {
            format!("{sign}{first}.{rest}e{exp}")
        }
    } else {
        let decimals = (-exp).max(0) as usize;
        format!("{:.decimals$}", n as f64 * 10f64.powi(exp))
    };
    real_minus(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(axis: &Axis) -> Vec<&str> {
        axis.ticks.iter().map(|(_, l)| l.as_str()).collect()
    }

    #[test]
    fn ranges_end_on_round_ticks() {
        let loss = Axis::fit(2.1, 9.8, 6, false);
        assert_eq!((loss.lo, loss.hi), (2.0, 10.0));
        assert_eq!(labels(&loss), ["2", "4", "6", "8", "10"]);
        let steps = Axis::fit(0.0, 1200.0, 7, true);
        assert_eq!(labels(&steps), ["0", "200", "400", "600", "800", "1000", "1200"]);
        let signed = Axis::fit(-2.5, 3.0, 7, false);
        assert_eq!(labels(&signed), ["\u{2212}3", "\u{2212}2", "\u{2212}1", "0", "1", "2", "3"]);
        let fine = Axis::fit(0.12, 0.37, 8, false);
        assert_eq!(labels(&fine), ["0.10", "0.15", "0.20", "0.25", "0.30", "0.35", "0.40"]);
        assert_eq!(labels(&Axis::fit(0.12, 0.37, 6, false)), ["0.1", "0.2", "0.3", "0.4"]);
    }

    #[test]
    fn learning_rates_are_labelled_in_scientific_notation() {
        let warmup = Axis::fit(2.5e-6, 7e-4, 6, false);
        assert_eq!(labels(&warmup), ["0", "2e-4", "4e-4", "6e-4", "8e-4"]);
        let small = Axis::fit(0.0, 1.5e-4, 4, false);
        assert_eq!(labels(&small), ["0", "5e-5", "1e-4", "1.5e-4"]);
        let big = Axis::fit(0.0, 2.5e6, 6, true);
        assert_eq!(labels(&big), ["0", "5e5", "1e6", "1.5e6", "2e6", "2.5e6"]);
    }

    #[test]
    fn a_single_value_gets_room_around_it() {
        let one = Axis::fit(3.0, 3.0, 6, false);
        assert_eq!(labels(&one), ["2.8", "2.9", "3.0", "3.1", "3.2"]);
        assert!((one.position(3.0) - 0.5).abs() < 1e-9);
        let lr = Axis::fit(1e-4, 1e-4, 6, false);
        assert!(lr.lo < 1e-4 && lr.hi > 1e-4 && lr.lo > 0.0, "{lr:?}");
        let step = Axis::fit(0.0, 0.0, 6, true);
        assert_eq!(labels(&step), ["\u{2212}1", "0", "1"]);
        let few_steps = Axis::fit(0.0, 3.0, 7, true);
        assert_eq!(labels(&few_steps), ["0", "1", "2", "3"]);
    }

    #[test]
    fn huge_and_non_finite_ranges_stay_finite() {
        let huge = Axis::fit(-1e308, 1e308, 5, false);
        assert!(huge.lo.is_finite() && huge.hi.is_finite() && huge.ticks.len() <= 5, "{huge:?}");
        assert!(huge.ticks.iter().all(|(v, _)| v.is_finite()));
        assert_eq!(huge.position(huge.lo), 0.0);
        assert_eq!(huge.position(huge.hi), 1.0);
        let wide = Axis::fit(2.0, 1e12, 6, false);
        assert_eq!(labels(&wide), ["0", "2e11", "4e11", "6e11", "8e11", "1e12"]);
        let tight = Axis::fit(1000.0001, 1000.0002, 6, false);
        assert_eq!(labels(&tight), ["1000.00010", "1000.00015", "1000.00020"]);
        assert!(tight.position(1000.0001).abs() < 1e-6 && (tight.position(1000.0002) - 1.0).abs() < 1e-6);
        assert_eq!(Axis::fit(f64::NAN, 1.0, 6, false), Axis::fit(0.0, 1.0, 6, false));
    }
}
