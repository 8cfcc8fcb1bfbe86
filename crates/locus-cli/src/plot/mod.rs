//! Plots (SVG or PNG) for the `locus` command: heatmaps, e.g. positional-encoding tables, and line
//! charts, e.g. a run's training curves.
//!
//! [`draw_heatmaps`] draws one or more matrices as heatmap panels in a grid, each with its own colour
//! scale and colour bar (see [`colormap`]). [`draw_line_charts`] draws panels of lines against a
//! shared x axis, each with its own y axis and legend. Everything is pure Rust: SVG text is left to
//! the viewer (`font-family="DejaVu Sans, Verdana, Arial, sans-serif"`), and PNG text is rasterised
//! with `ab_glyph` (module `text`) from a subset of DejaVu Sans embedded in the binary
//! (`assets/DejaVuSans-subset.ttf`, license in `assets/DejaVuSans-LICENSE.txt`), so no system fonts
//! or font libraries are needed.
//!
//! Large matrices are drawn as an image (one colour per output pixel, averaged over the cells it
//! covers); in SVG files that image is embedded as a base64 PNG, which needs the `bitmap_encoder`
//! feature of `plotters-svg`.
//!
//! PNG text is drawn by this module rather than by plotters' `ab_glyph` feature, whose glyph
//! placement is off (side bearings dropped, baseline misplaced); plotters is used without any font
//! feature, and its SVG backend writes `<text>` elements without needing font data.

mod axis;
mod canvas;
pub mod colormap;
mod heatmap;
mod lines;
mod text;

pub use heatmap::{draw_heatmaps, Heatmap};
pub use lines::{draw_line_charts, LinePanel, Series};
