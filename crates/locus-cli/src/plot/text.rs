//! Text layout with the bundled font: measuring labels, and rasterising them for PNG output.
//!
//! plotters' own `ab_glyph` text drops each glyph's left side bearing (so that e.g. "|j" overlaps)
//! and puts the baseline off the anchor; this module lays glyphs out with `ab_glyph` directly and
//! hands back anti-aliased coverage for the caller to blend onto the bitmap.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use anyhow::{anyhow, Result};

/// DejaVu Sans, reduced to Latin-1, Greek and a few symbols (about 33 KB); see
/// `assets/DejaVuSans-LICENSE.txt`.
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");

/// DejaVu Sans' cap height (and digit height), as a fraction of the em.
const CAP_HEIGHT_EM: f32 = 0.729;

/// Horizontal placement of text relative to its anchor point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HAlign {
    /// The anchor is at the start of the text.
    Left,
    /// The anchor is at the middle of the text.
    Center,
    /// The anchor is at the end of the text.
    Right,
}

/// Vertical placement of text relative to its anchor point (capitals and digits are what is aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VAlign {
    /// The anchor is at the top of the capitals.
    Top,
    /// The anchor is half-way up the capitals.
    Center,
}

/// The bundled font, parsed once.
pub(super) fn font() -> Result<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
        .ok_or_else(|| anyhow!("the bundled font (DejaVu Sans) could not be loaded"))
}

/// The ab_glyph scale that makes the em `em_px` pixels.
fn scale(font: &FontRef<'static>, em_px: f32) -> PxScale {
    let units_per_em = font.units_per_em().unwrap_or(2048.0);
    PxScale::from(em_px * font.height_unscaled() / units_per_em)
}

/// The advance width in pixels of `text` set at an em of `em_px` pixels.
pub(super) fn text_width(text: &str, em_px: f32) -> Result<f32> {
    let font = font()?;
    let scaled = font.as_scaled(scale(font, em_px));
    let mut width = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(prev) = prev {
            width += scaled.kern(prev, id);
        }
        width += scaled.h_advance(id);
        prev = Some(id);
    }
    Ok(width)
}

/// Anti-aliased coverage of `text` at an em of `em_px` pixels: `(dx, dy, alpha)` for each touched
/// pixel, relative to the anchor point. With `rotate` the text reads upwards (rotated a quarter turn
/// anticlockwise about the anchor).
pub(super) fn rasterize_text(
    text: &str,
    em_px: f32,
    h: HAlign,
    v: VAlign,
    rotate: bool,
) -> Result<Vec<(i32, i32, f32)>> {
    let font = font()?;
    let px_scale = scale(font, em_px);
    let scaled = font.as_scaled(px_scale);
    let width = text_width(text, em_px)?;
    let x0 = match h {
        HAlign::Left => 0.0,
        HAlign::Center => -width / 2.0,
        HAlign::Right => -width,
    };
    let cap = CAP_HEIGHT_EM * em_px;
    let baseline = match v {
        VAlign::Top => cap,
        VAlign::Center => cap / 2.0,
    };

    let mut outlines = Vec::new();
    let mut pen = x0;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(prev) = prev {
            pen += scaled.kern(prev, id);
        }
        if let Some(outline) = font.outline_glyph(id.with_scale_and_position(px_scale, point(pen, baseline)))
        {
            outlines.push(outline);
        }
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
    let Some(first) = outlines.first() else {
        return Ok(Vec::new());
    };

    // Sum the glyphs' coverage on one grid, so that pixels shared by neighbouring glyphs are not
    // blended twice.
    let mut min = first.px_bounds().min;
    let mut max = first.px_bounds().max;
    for o in &outlines {
        let b = o.px_bounds();
        (min.x, min.y, max.x, max.y) =
            (min.x.min(b.min.x), min.y.min(b.min.y), max.x.max(b.max.x), max.y.max(b.max.y));
    }
    let (gx, gy) = (min.x as i32, min.y as i32);
    let (gw, gh) = ((max.x - min.x).ceil() as usize + 1, (max.y - min.y).ceil() as usize + 1);
    let mut grid = vec![0f32; gw * gh];
    for o in &outlines {
        let b = o.px_bounds();
        let (ox, oy) = (b.min.x as i32 - gx, b.min.y as i32 - gy);
        o.draw(|x, y, c| {
            let (x, y) = (ox + x as i32, oy + y as i32);
            if (0..gw as i32).contains(&x) && (0..gh as i32).contains(&y) {
                grid[y as usize * gw + x as usize] += c;
            }
        });
    }
    let mut pixels = Vec::new();
    for (i, &c) in grid.iter().enumerate() {
        if c > 1.0 / 255.0 {
            let (x, y) = (gx + (i % gw) as i32, gy + (i / gw) as i32);
            let (dx, dy) = if rotate { (y, -x) } else { (x, y) };
            pixels.push((dx, dy, c.min(1.0)));
        }
    }
    Ok(pixels)
}
