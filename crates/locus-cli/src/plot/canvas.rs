//! What the plots share: the output format, the SVG or PNG canvas, text labels, frames and value
//! formatting.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::colormap::Rgb;
use super::text::{self, HAlign, VAlign};

/// Font sizes: the em in pixels.
pub(super) const TITLE_SIZE: f32 = 15.0;
pub(super) const LABEL_SIZE: f32 = 13.0;
pub(super) const TICK_SIZE: f32 = 11.0;
/// The smallest size that long titles and labels are shrunk to before they are cut short.
pub(super) const MIN_SIZE: f32 = 10.0;
/// Font family written into SVG files.
const SVG_FONT_FAMILY: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

const TEXT_COLOR: RGBColor = RGBColor(30, 30, 30);
const FRAME_COLOR: RGBColor = RGBColor(90, 90, 90);

/// The output format, from the file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Svg,
    Png,
}

impl Format {
    /// The format of `path` (.svg or .png, in any case); `what` names the plot in the error.
    pub(super) fn from_path(path: &Path, what: &str) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => bail!(
                "cannot draw {what} to '{}': unsupported file extension (expected .svg or .png)",
                path.display()
            ),
        }
    }
}

/// Something drawn on a canvas of either backend.
pub(super) trait Figure {
    /// The canvas size in pixels.
    fn size(&self) -> (u32, u32);

    /// Draws the whole figure, text set as `format` needs it.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, format: Format) -> Result<()>
    where
        DB::ErrorType: 'static;
}

/// Draws `figure` into `out`, as SVG or PNG by the extension; `what` names the figure in errors.
pub(super) fn render(figure: &impl Figure, out: &Path, what: &str) -> Result<()> {
    let format = Format::from_path(out, what)?;
    text::font()?;
    let drawing = || format!("drawing {what} for '{}'", out.display());
    match format {
        Format::Png => {
            let root = BitMapBackend::new(out, figure.size()).into_drawing_area();
            figure.draw(&root, format).with_context(drawing)?;
            root.present().with_context(|| format!("writing '{}'", out.display()))?;
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, figure.size()).into_drawing_area();
                figure.draw(&root, format).with_context(drawing)?;
                root.present().with_context(drawing)?;
            }
            // plotters-svg labels embedded images "data:png", which browsers do not all accept, and
            // leaves them to be smoothed when zoomed; heatmap cells should stay sharp.
            let svg = svg.replace(
                "href=\"data:png;base64,",
                "style=\"image-rendering:pixelated\" href=\"data:image/png;base64,",
            );
            std::fs::write(out, svg).with_context(|| format!("writing '{}'", out.display()))?;
        }
    }
    Ok(())
}

/// A pixel rectangle, `x0..x1` by `y0..y1` (ends exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rect {
    pub(super) x0: i32,
    pub(super) y0: i32,
    pub(super) x1: i32,
    pub(super) y1: i32,
}

/// The size in pixels of a grid of `n` panels of `panel` pixels each, in (at most) `columns`
/// columns.
pub(super) fn grid_size(n: usize, columns: usize, (width, height): (u32, u32)) -> (u32, u32) {
    let columns = columns.clamp(1, n.max(1));
    let rows = n.div_ceil(columns).max(1);
    (columns as u32 * width, rows as u32 * height)
}

/// Where panel `index` of a grid of `columns` columns of `panel`-pixel panels goes.
pub(super) fn grid_cell(index: usize, columns: usize, (width, height): (u32, u32)) -> Rect {
    let (w, h) = (width as i32, height as i32);
    let (x, y) = ((index % columns) as i32 * w, (index / columns) as i32 * h);
    Rect { x0: x, y0: y, x1: x + w, y1: y + h }
}

/// `c` as a plotters colour.
pub(super) fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

impl Rect {
    pub(super) fn width(&self) -> i32 {
        self.x1 - self.x0
    }

    pub(super) fn height(&self) -> i32 {
        self.y1 - self.y0
    }
}

/// A short label for a value: three significant digits, whole numbers without decimals,
/// scientific notation for very small or large magnitudes, and a real minus sign (U+2212), which
/// reads better next to a tick mark than a hyphen.
pub(super) fn format_value(v: f64) -> String {
    let a = v.abs();
    let s = if v == 0.0 {
        "0".to_string()
    } else if !(1e-4..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let decimals = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
        s.to_string()
    };
    real_minus(s)
}

/// `s` with a leading hyphen replaced by a minus sign (U+2212).
pub(super) fn real_minus(s: String) -> String {
    match s.strip_prefix('-') {
        Some(rest) => format!("\u{2212}{rest}"),
        None => s,
    }
}

/// A piece of text and how it sits relative to its anchor point.
#[derive(Clone, Debug)]
pub(super) struct Label<'a> {
    pub(super) text: Cow<'a, str>,
    /// The em size in pixels.
    pub(super) size: f32,
    pub(super) h: HAlign,
    pub(super) v: VAlign,
    /// Reads upwards (a quarter turn anticlockwise about the anchor).
    pub(super) rotate: bool,
}

impl<'a> Label<'a> {
    pub(super) fn new(text: &'a str, size: f32, h: HAlign, v: VAlign) -> Self {
        Label { text: Cow::Borrowed(text), size, h, v, rotate: false }
    }

    /// A centred label of at most `size`, smaller if needed (down to [`MIN_SIZE`]) to fit in
    /// `max_width` pixels, and cut short with an ellipsis if even that is too wide.
    pub(super) fn fitted(text: &'a str, size: f32, max_width: i32) -> Result<Self> {
        let max_width = max_width as f32;
        let mut size = size;
        while size > MIN_SIZE && text::text_width(text, size)? > max_width {
            size -= 0.5;
        }
        let mut label = Label::new(text, size, HAlign::Center, VAlign::Center);
        if text::text_width(text, size)? > max_width {
            let mut chars: Vec<char> = text.chars().collect();
            let mut short = String::new();
            while !chars.is_empty() {
                chars.pop();
                short = chars.iter().collect::<String>().trim_end().to_string() + "\u{2026}";
                if text::text_width(&short, size)? <= max_width {
                    break;
                }
            }
            label.text = Cow::Owned(short);
        }
        Ok(label)
    }

    /// Draws the label anchored at `pos`: PNG text is rasterised with the bundled font; SVG text is
    /// a `<text>` element for the viewer to set.
    pub(super) fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        pos: (i32, i32),
        format: Format,
    ) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let text = self.text.as_ref();
        if text.is_empty() {
            return Ok(());
        }
        match format {
            Format::Png => {
                for (dx, dy, alpha) in text::rasterize_text(text, self.size, self.h, self.v, self.rotate)? {
                    root.draw_pixel((pos.0 + dx, pos.1 + dy), &TEXT_COLOR.mix(f64::from(alpha)))?;
                }
            }
            Format::Svg => {
                let h = match self.h {
                    HAlign::Left => HPos::Left,
                    HAlign::Center => HPos::Center,
                    HAlign::Right => HPos::Right,
                };
                // plotters puts the baseline 0.76 em below a top anchor; move the anchor up by half
                // the cap height (left, for upward text) to centre the capitals on it instead.
                let shift = match self.v {
                    VAlign::Top => 0,
                    VAlign::Center => (0.36 * self.size).round() as i32,
                };
                let (pos, transform) = if self.rotate {
                    ((pos.0 - shift, pos.1), FontTransform::Rotate270)
                } else {
                    ((pos.0, pos.1 - shift), FontTransform::None)
                };
                // plotters writes font-size = size / 1.24.
                let font = (SVG_FONT_FAMILY, f64::from(self.size) * 1.24).into_font().transform(transform);
                let style = TextStyle::from(font).color(&TEXT_COLOR).pos(Pos::new(h, VPos::Top));
                root.draw_text(text, &style, pos)?;
            }
        }
        Ok(())
    }
}

/// A one-pixel line in the frame colour (tick marks).
pub(super) fn line<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    from: (i32, i32),
    to: (i32, i32),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.draw(&PathElement::new(vec![from, to], FRAME_COLOR))?;
    Ok(())
}

/// A one-pixel frame just outside `rect`.
pub(super) fn frame<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, rect: Rect) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.draw(&Rectangle::new([(rect.x0 - 1, rect.y0 - 1), (rect.x1, rect.y1)], FRAME_COLOR))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_the_extension_in_any_case() {
        assert_eq!(Format::from_path(Path::new("a/b.Svg"), "x").unwrap(), Format::Svg);
        assert_eq!(Format::from_path(Path::new("UPPER.PNG"), "x").unwrap(), Format::Png);
        let err = format!("{:#}", Format::from_path(Path::new("out/plot.jpg"), "the chart").unwrap_err());
        assert!(err.contains("cannot draw the chart to 'out/plot.jpg'"), "{err}");
        assert!(err.contains("expected .svg or .png"), "{err}");
    }

    #[test]
    fn long_labels_shrink_then_get_cut_short() {
        let short = Label::fitted("position", LABEL_SIZE, 200).unwrap();
        assert_eq!((short.text.as_ref(), short.size), ("position", LABEL_SIZE));
        let long = "attention weights of layer 3, head 5, for the first sentence of the validation set";
        let shrunk = Label::fitted(long, TITLE_SIZE, 500).unwrap();
        assert_eq!(shrunk.text, long);
        assert!(shrunk.size < TITLE_SIZE && shrunk.size >= MIN_SIZE);
        let cut = Label::fitted(long, TITLE_SIZE, 300).unwrap();
        assert_eq!(cut.size, MIN_SIZE);
        assert!(cut.text.ends_with('\u{2026}') && long.starts_with(cut.text.trim_end_matches('\u{2026}')));
        assert!(text::text_width(&cut.text, MIN_SIZE).unwrap() <= 300.0);
        assert!(text::text_width(&cut.text, MIN_SIZE).unwrap() > 250.0);
    }

    #[test]
    fn values_are_formatted_compactly() {
        for (v, s) in [
            (0.0, "0"),
            (1.0, "1"),
            (-1.0, "\u{2212}1"),
            (31.0, "31"),
            (0.999_999, "1"),
            (0.5, "0.5"),
            (-0.123_456, "\u{2212}0.123"),
            (12.345, "12.3"),
            (0.001_234, "0.00123"),
            (9.99e-4, "0.000999"),
            (1.5e-5, "1.50e-5"),
            (-2.5e7, "\u{2212}2.50e7"),
            (-0.0, "0"),
        ] {
            assert_eq!(format_value(v), s, "{v}");
        }
    }
}
