//! Heatmap panels: input validation, layout and drawing on the SVG and PNG backends.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use plotters::coord::Shift;
use plotters::element::BitMapElement;
use plotters::prelude::*;

use super::canvas::{
    format_value, frame, grid_cell, grid_size, line, render, rgb, Figure, Format, Label, Rect, LABEL_SIZE,
    TICK_SIZE, TITLE_SIZE,
};
use super::colormap::{ColorScale, NON_FINITE};
use super::text::{HAlign, VAlign};

/// One heatmap panel: `values[row][col]`.
///
/// Row 0 is drawn at the top and column 0 at the left (as a matrix is printed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Heatmap {
    /// The title above the panel.
    pub title: String,
    /// The label of the horizontal axis (the column index).
    pub x_label: String,
    /// The label of the vertical axis (the row index).
    pub y_label: String,
    /// The matrix, row by row; all rows must have the same, non-zero length.
    pub values: Vec<Vec<f32>>,
    /// A label per column (tokens, say), drawn upwards under the panel; empty: the column
    /// indices.
    pub x_ticks: Vec<String>,
    /// A label per row, drawn left of the panel; empty: the row indices.
    pub y_ticks: Vec<String>,
}

/// Width in pixels of one panel of the grid (the canvas is `columns * PANEL_WIDTH` wide).
const PANEL_WIDTH: u32 = 420;
/// Height in pixels of one panel of the grid (the canvas is `rows * PANEL_HEIGHT` high).
const PANEL_HEIGHT: u32 = 380;

/// Space around the plot area of a panel: title above, tick labels and the axis label below and
/// left, colour bar and its labels right.
const MARGIN_LEFT: i32 = 58;
const MARGIN_RIGHT: i32 = 100;
const MARGIN_TOP: i32 = 38;
const MARGIN_BOTTOM: i32 = 52;
/// The widest a row or column label may be (longer ones shrink, then are cut short), and the
/// space the grid adds left of (below) every panel when some panel labels its rows (columns).
const TICK_LABEL_WIDTH: i32 = 72;
/// Labelled rows and columns are labelled one by one while cells are at least this many
/// pixels; on smaller cells, every so many.
const MIN_LABELLED_CELL: usize = 12;
/// Gap between the plot area and the colour bar, and the bar's width.
const BAR_GAP: i32 = 14;
const BAR_WIDTH: i32 = 14;

/// SVG panels with at most this many cells, each at least a pixel wide and high, are drawn as one
/// vector rectangle per cell; larger ones as an embedded image.
const MAX_VECTOR_CELLS: usize = 128 * 128;

/// Draws the panels in a grid with `columns` columns into `out`; the format follows the extension
/// (.svg or .png; anything else is an error naming the path). Each panel has its own colour scale
/// (a diverging blue-white-red map centred on 0 when the panel has both signs, else a sequential map),
/// a colour bar with min/max values, axis labels and tick labels (row/column indices), and a title.
///
/// Non-finite values (NaN, ±inf, e.g. masked attention scores) are left out of the colour scale and
/// drawn in a light grey, with a legend entry under the colour bar. Each panel takes 420 x 380
/// pixels, plus [`TICK_LABEL_WIDTH`] left (below) when some panel has row (column) labels; with
/// fewer panels than `columns`, the grid has only as many columns as panels. Large matrices are
/// drawn at one pixel per screen pixel, each pixel showing the mean of the cells it covers.
///
/// # Errors
/// When there are no panels, `columns` is 0, a panel has no values or ragged rows, labels that
/// do not match its rows or columns, the extension is not .svg or .png, or the file cannot be
/// written.
pub fn draw_heatmaps(panels: &[Heatmap], columns: usize, out: &Path) -> Result<()> {
    validate(panels, columns)?;
    let space_if = |labelled: bool| if labelled { TICK_LABEL_WIDTH } else { 0 };
    let extra = Extra {
        left: space_if(panels.iter().any(|panel| !panel.y_ticks.is_empty())),
        bottom: space_if(panels.iter().any(|panel| !panel.x_ticks.is_empty())),
    };
    render(&Grid { panels, columns: columns.min(panels.len()), extra }, out, "heatmaps")
}

/// Checks the panel list and the grid width.
fn validate(panels: &[Heatmap], columns: usize) -> Result<()> {
    ensure!(!panels.is_empty(), "no heatmap panels to draw (the panel list is empty)");
    ensure!(columns > 0, "the heatmap grid needs at least one column (columns = 0)");
    for (i, panel) in panels.iter().enumerate() {
        let name = format!("heatmap panel {i} ('{}')", panel.title);
        let Some(first) = panel.values.first() else {
            bail!("{name} has no values (zero rows)");
        };
        ensure!(!first.is_empty(), "{name} has no values (zero columns)");
        if let Some((r, row)) = panel.values.iter().enumerate().find(|(_, row)| row.len() != first.len()) {
            bail!("{name} has ragged rows: row 0 has {} values but row {r} has {}", first.len(), row.len());
        }
        for (axis, ticks, len) in
            [("column", &panel.x_ticks, first.len()), ("row", &panel.y_ticks, panel.values.len())]
        {
            ensure!(
                ticks.is_empty() || ticks.len() == len,
                "{name} has {} {axis} labels for {len} {axis}s",
                ticks.len()
            );
        }
    }
    Ok(())
}

/// Where the parts of the panel `index` go on the canvas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PanelLayout {
    /// The whole panel.
    panel: Rect,
    /// The cells.
    plot: Rect,
    /// The colour bar.
    bar: Rect,
}

/// Pixels every panel of a grid gets beyond [`PANEL_WIDTH`] × [`PANEL_HEIGHT`] for row and
/// column labels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Extra {
    left: i32,
    bottom: i32,
}

impl Extra {
    /// The size of a panel with this extra space.
    fn panel_size(self) -> (u32, u32) {
        (PANEL_WIDTH + self.left as u32, PANEL_HEIGHT + self.bottom as u32)
    }
}

fn panel_layout(index: usize, columns: usize, extra: Extra) -> PanelLayout {
    let panel = grid_cell(index, columns, extra.panel_size());
    let plot = Rect {
        x0: panel.x0 + MARGIN_LEFT + extra.left,
        y0: panel.y0 + MARGIN_TOP,
        x1: panel.x1 - MARGIN_RIGHT,
        y1: panel.y1 - MARGIN_BOTTOM - extra.bottom,
    };
    let bar = Rect { x0: plot.x1 + BAR_GAP, y0: plot.y0, x1: plot.x1 + BAR_GAP + BAR_WIDTH, y1: plot.y1 };
    PanelLayout { panel, plot, bar }
}

/// The panels, the number of grid columns (at most the number of panels) and the space for
/// labels.
struct Grid<'a> {
    panels: &'a [Heatmap],
    columns: usize,
    extra: Extra,
}

impl Figure for Grid<'_> {
    fn size(&self) -> (u32, u32) {
        grid_size(self.panels.len(), self.columns, self.extra.panel_size())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, format: Format) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        for (i, panel) in self.panels.iter().enumerate() {
            draw_panel(root, panel, panel_layout(i, self.columns, self.extra), format)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panel: &Heatmap,
    layout: PanelLayout,
    format: Format,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let PanelLayout { panel: area, plot, bar } = layout;
    let (nrows, ncols) = (panel.values.len(), panel.values[0].len());
    let scale = ColorScale::from_values(panel.values.iter().flatten());
    let color = |v: f32| scale.as_ref().map_or(NON_FINITE, |s| s.color(v));

    // Cells.
    let (w, h) = (plot.width() as usize, plot.height() as usize);
    let vector = format == Format::Svg && nrows * ncols <= MAX_VECTOR_CELLS && nrows <= h && ncols <= w;
    if vector {
        let edge = |i: usize, n: usize, len: usize, start: i32| start + (i * len / n) as i32;
        for r in 0..nrows {
            let (y0, y1) = (edge(r, nrows, h, plot.y0), edge(r + 1, nrows, h, plot.y0));
            for c in 0..ncols {
                let (x0, x1) = (edge(c, ncols, w, plot.x0), edge(c + 1, ncols, w, plot.x0));
                root.draw(&Rectangle::new([(x0, y0), (x1, y1)], rgb(color(panel.values[r][c])).filled()))?;
            }
        }
    } else {
        let pixels = rasterize(&panel.values, scale.as_ref(), w, h);
        let image = BitMapElement::with_owned_buffer((plot.x0, plot.y0), (w as u32, h as u32), pixels)
            .context("heatmap image buffer has the wrong size")?;
        root.draw(&image)?;
    }
    frame(root, plot)?;

    // Ticks and tick labels (the panel's labels or the cell indices, at cell centres).
    let column_spacing =
        if panel.x_ticks.is_empty() { digits(ncols - 1) * 7 + 18 } else { MIN_LABELLED_CELL };
    for c in ticks(ncols, (w / column_spacing).max(2)) {
        let x = plot.x0 + ((c as f64 + 0.5) * w as f64 / ncols as f64) as i32;
        line(root, (x, plot.y1), (x, plot.y1 + 4))?;
        let index = c.to_string();
        let label = match panel.x_ticks.get(c) {
            Some(text) => {
                Label { h: HAlign::Right, rotate: true, ..Label::fitted(text, TICK_SIZE, TICK_LABEL_WIDTH)? }
            }
            None => Label::new(&index, TICK_SIZE, HAlign::Center, VAlign::Top),
        };
        label.draw(root, (x, plot.y1 + 7), format)?;
    }
    let row_spacing = if panel.y_ticks.is_empty() { 24 } else { MIN_LABELLED_CELL };
    for r in ticks(nrows, (h / row_spacing).max(2)) {
        let y = plot.y0 + ((r as f64 + 0.5) * h as f64 / nrows as f64) as i32;
        line(root, (plot.x0 - 5, y), (plot.x0 - 1, y))?;
        let index = r.to_string();
        let label = match panel.y_ticks.get(r) {
            Some(text) => Label { h: HAlign::Right, ..Label::fitted(text, TICK_SIZE, TICK_LABEL_WIDTH)? },
            None => Label::new(&index, TICK_SIZE, HAlign::Right, VAlign::Center),
        };
        label.draw(root, (plot.x0 - 8, y), format)?;
    }

    // Axis labels and title, shrunk to fit when long.
    let x_label = Label::fitted(&panel.x_label, LABEL_SIZE, plot.width() + 40)?;
    let below = if panel.x_ticks.is_empty() { 35 } else { TICK_LABEL_WIDTH + 20 };
    x_label.draw(root, ((plot.x0 + plot.x1) / 2, plot.y1 + below), format)?;
    let y_label = Label { rotate: true, ..Label::fitted(&panel.y_label, LABEL_SIZE, plot.height())? };
    y_label.draw(root, (area.x0 + 14, (plot.y0 + plot.y1) / 2), format)?;
    let title = Label::fitted(&panel.title, TITLE_SIZE, area.width() - 16)?;
    title.draw(root, ((area.x0 + area.x1) / 2, area.y0 + 19), format)?;

    // Colour bar, labelled with the data's min and max (and 0 on a diverging scale).
    match scale {
        Some(scale) => {
            let bar_h = bar.height();
            for i in 0..bar_h {
                let t = 1.0 - f64::from(i) / f64::from((bar_h - 1).max(1));
                let y = bar.y0 + i;
                root.draw(&Rectangle::new([(bar.x0, y), (bar.x1, y + 1)], rgb(scale.map.at(t)).filled()))?;
            }
            frame(root, bar)?;
            let mut marks = vec![scale.data_max, scale.data_min];
            if scale.lo < 0.0 {
                marks.push(0.0);
            }
            let mut placed: Vec<i32> = Vec::new();
            for v in marks {
                let y = bar.y1 - 1 - (scale.position(v) * f64::from(bar_h - 1)).round() as i32;
                if placed.iter().any(|&p| (p - y).abs() < 14) {
                    continue;
                }
                placed.push(y);
                line(root, (bar.x1, y), (bar.x1 + 3, y))?;
                let value = format_value(v);
                Label::new(&value, TICK_SIZE, HAlign::Left, VAlign::Center).draw(
                    root,
                    (bar.x1 + 7, y),
                    format,
                )?;
            }
        }
        None => {
            frame(root, bar)?;
            let label = Label {
                rotate: true,
                ..Label::new("no finite values", TICK_SIZE, HAlign::Center, VAlign::Center)
            };
            label.draw(root, ((bar.x0 + bar.x1) / 2, (bar.y0 + bar.y1) / 2), format)?;
        }
    }

    // Legend for non-finite cells.
    if panel.values.iter().flatten().any(|v| !v.is_finite()) {
        let swatch = Rect { x0: bar.x0, y0: plot.y1 + 10, x1: bar.x1, y1: plot.y1 + 10 + BAR_WIDTH };
        root.draw(&Rectangle::new(
            [(swatch.x0, swatch.y0), (swatch.x1, swatch.y1)],
            rgb(NON_FINITE).filled(),
        ))?;
        frame(root, swatch)?;
        let label = Label::new("non-finite", TICK_SIZE, HAlign::Left, VAlign::Center);
        label.draw(root, (swatch.x1 + 5, (swatch.y0 + swatch.y1) / 2), format)?;
    }
    Ok(())
}

/// One colour per output pixel (RGB bytes, row by row): the colour of the cell under the pixel's
/// centre when cells are at least a pixel in size, else the colour of the mean of the finite values
/// of the cells the pixel covers (so that fine patterns average out instead of aliasing, and the
/// colours stay on the colour bar), or [`NON_FINITE`] when none of them is finite.
fn rasterize(values: &[Vec<f32>], scale: Option<&ColorScale>, width: usize, height: usize) -> Vec<u8> {
    let ncols = values.first().map_or(0, Vec::len);
    let xs = spans(ncols, width);
    let ys = spans(values.len(), height);
    let color = |v: f32| scale.map_or(NON_FINITE, |s| s.color(v));
    let mut pixels = Vec::with_capacity(width * height * 3);
    for &(r0, r1) in &ys {
        for &(c0, c1) in &xs {
            if r1 - r0 == 1 && c1 - c0 == 1 {
                pixels.extend_from_slice(&color(values[r0][c0]));
            } else {
                let (mut sum, mut n) = (0f64, 0u32);
                for &v in values[r0..r1].iter().flat_map(|row| &row[c0..c1]) {
                    if v.is_finite() {
                        sum += f64::from(v);
                        n += 1;
                    }
                }
                let mean = if n > 0 { (sum / f64::from(n)) as f32 } else { f32::NAN };
                pixels.extend_from_slice(&color(mean));
            }
        }
    }
    pixels
}

/// For each of `pixels` pixels along an axis of `cells` cells, the range of cells it shows: the cell
/// under its centre, or all cells that its footprint overlaps.
fn spans(cells: usize, pixels: usize) -> Vec<(usize, usize)> {
    (0..pixels)
        .map(|p| {
            if cells <= pixels {
                let c = (((p as f64 + 0.5) * cells as f64 / pixels as f64) as usize).min(cells - 1);
                (c, c + 1)
            } else {
                let a = p * cells / pixels;
                (a, ((p + 1) * cells).div_ceil(pixels).clamp(a + 1, cells))
            }
        })
        .collect()
}

/// Tick positions 0, step, 2*step, ... below `n`, with the step 1, 2 or 5 times a power of ten
/// chosen so that there are at most `max_ticks` of them.
fn ticks(n: usize, max_ticks: usize) -> impl Iterator<Item = usize> {
    let max_ticks = max_ticks.max(1);
    let mut base = 1usize;
    let step = loop {
        if let Some(step) = [base, 2 * base, 5 * base].into_iter().find(|&s| n.div_ceil(s) <= max_ticks) {
            break step;
        }
        base *= 10;
    };
    (0..n).step_by(step)
}

/// The number of decimal digits of `n`.
fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::super::colormap::{ColorMap, Rgb};
    use super::*;

    fn panel(title: &str, values: Vec<Vec<f32>>) -> Heatmap {
        Heatmap {
            title: title.into(),
            x_label: "column".into(),
            y_label: "row".into(),
            values,
            ..Default::default()
        }
    }

    fn ramp(rows: usize, cols: usize) -> Vec<Vec<f32>> {
        (0..rows).map(|r| (0..cols).map(|c| (r * cols + c) as f32).collect()).collect()
    }

    fn read_png(path: &Path) -> image::RgbImage {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG signature");
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap().to_rgb8()
    }

    /// The pixel at the centre of cell (row, col) of panel `index` in a grid of `columns`.
    fn cell_centre(
        index: usize,
        columns: usize,
        (nrows, ncols): (usize, usize),
        (row, col): (usize, usize),
    ) -> (u32, u32) {
        let plot = panel_layout(index, columns, Extra::default()).plot;
        let x = plot.x0 + ((col as f64 + 0.5) * plot.width() as f64 / ncols as f64) as i32;
        let y = plot.y0 + ((row as f64 + 0.5) * plot.height() as f64 / nrows as f64) as i32;
        (x as u32, y as u32)
    }

    /// The colour around a cell's centre (asserting that a 5x5 block there is uniform).
    fn cell_colour(img: &image::RgbImage, (x, y): (u32, u32)) -> Rgb {
        let c = img.get_pixel(x, y).0;
        for dy in 0..5 {
            for dx in 0..5 {
                assert_eq!(img.get_pixel(x + dx - 2, y + dy - 2).0, c, "cell at ({x}, {y}) is not uniform");
            }
        }
        c
    }

    fn error_of(panels: &[Heatmap], columns: usize, path: &Path) -> String {
        format!("{:#}", draw_heatmaps(panels, columns, path).unwrap_err())
    }

    #[test]
    fn svg_has_an_svg_root_and_the_titles() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pe.svg");
        let panels = [panel("sinusoidal PE", ramp(8, 16)), panel("learned <PE> & more", ramp(3, 3))];
        draw_heatmaps(&panels, 2, &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.trim_start().starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(r#"width="840" height="380""#));
        assert!(svg.contains("sinusoidal PE"));
        assert!(svg.contains("learned &lt;PE&gt; &amp; more"));
        // Small matrices are vector cells, one rectangle each.
        assert!(svg.matches("<rect").count() >= 8 * 16 + 9);
        assert!(!svg.contains("<image"));
    }

    #[test]
    fn large_svg_panels_embed_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("big.svg");
        draw_heatmaps(&[panel("big", ramp(300, 200))], 1, &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert_eq!(svg.matches("href=\"data:image/png;base64,").count(), 1);
        assert!(!svg.contains("data:png"));
        assert!(svg.len() < 500_000, "SVG is {} bytes", svg.len());
    }

    #[test]
    fn png_has_the_expected_size_and_cell_colours() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pe.png");
        // Panel 0: one sign, maximum 23 at (3, 5), minimum 0 at (0, 0).
        // Panel 1: both signs, maximum 2 at (1, 2) >= |minimum| = 1 at (0, 0), zero at (0, 1).
        // Panel 2: both signs, |minimum| = 4 > maximum = 1.
        let signed = vec![vec![-1.0, 0.0, 0.5], vec![0.25, -0.5, 2.0]];
        let skewed = vec![vec![-4.0, 1.0], vec![0.0, -2.0]];
        let panels = [panel("ramp", ramp(4, 6)), panel("signed", signed), panel("skewed", skewed)];
        draw_heatmaps(&panels, 2, &out).unwrap();
        let img = read_png(&out);
        assert_eq!(img.dimensions(), (2 * PANEL_WIDTH, 2 * PANEL_HEIGHT));

        let seq = ColorMap::Sequential;
        assert_eq!(cell_colour(&img, cell_centre(0, 2, (4, 6), (3, 5))), seq.top());
        assert_eq!(cell_colour(&img, cell_centre(0, 2, (4, 6), (0, 0))), seq.bottom());
        let div = ColorMap::Diverging;
        assert_eq!(cell_colour(&img, cell_centre(1, 2, (2, 3), (1, 2))), div.top());
        assert_eq!(cell_colour(&img, cell_centre(1, 2, (2, 3), (0, 1))), div.at(0.5));
        assert_eq!(cell_colour(&img, cell_centre(2, 2, (2, 2), (0, 0))), div.bottom());
        assert_eq!(cell_colour(&img, cell_centre(2, 2, (2, 2), (0, 1))), div.at(0.625));
        // The unused fourth slot of the grid stays white.
        assert_eq!(img.get_pixel(PANEL_WIDTH + 200, PANEL_HEIGHT + 200).0, [255, 255, 255]);
        // The colour bar's top and bottom rows are the map's ends.
        let bar = panel_layout(0, 2, Extra::default()).bar;
        let x = ((bar.x0 + bar.x1) / 2) as u32;
        assert_eq!(img.get_pixel(x, bar.y0 as u32).0, seq.top());
        assert_eq!(img.get_pixel(x, (bar.y1 - 1) as u32).0, seq.bottom());
    }

    #[test]
    fn non_finite_cells_are_neutral_and_left_out_of_the_scale() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("masked.png");
        let inf = f32::INFINITY;
        let values = vec![vec![1.0, -inf, -inf], vec![2.0, 3.0, -inf], vec![f32::NAN, inf, 4.0]];
        let all_masked = vec![vec![f32::NAN; 3]; 2];
        draw_heatmaps(&[panel("masked", values), panel("all masked", all_masked)], 2, &out).unwrap();
        let img = read_png(&out);
        for cell in [(0, 1), (0, 2), (1, 2), (2, 0), (2, 1)] {
            assert_eq!(cell_colour(&img, cell_centre(0, 2, (3, 3), cell)), NON_FINITE, "cell {cell:?}");
        }
        assert_eq!(cell_colour(&img, cell_centre(0, 2, (3, 3), (2, 2))), ColorMap::Sequential.top());
        assert_eq!(cell_colour(&img, cell_centre(0, 2, (3, 3), (0, 0))), ColorMap::Sequential.bottom());
        assert_eq!(cell_colour(&img, cell_centre(1, 2, (2, 3), (1, 1))), NON_FINITE);

        let svg_out = dir.path().join("masked.svg");
        draw_heatmaps(&[panel("masked", vec![vec![0.0, f32::NEG_INFINITY]])], 1, &svg_out).unwrap();
        let svg = std::fs::read_to_string(&svg_out).unwrap();
        assert!(svg.contains(r##"fill="#BEBEBE""##));
        assert!(svg.contains("non-finite"));
    }

    #[test]
    fn large_png_panels_average_cells() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("big.png");
        // Alternating columns 0, 1, averaged: each pixel covers two or three columns, so it shows the
        // colour of 1/3, 1/2 or 2/3, never of 0 or 1.
        let stripes: Vec<Vec<f32>> = (0..512).map(|_| (0..512).map(|c| (c % 2) as f32).collect()).collect();
        draw_heatmaps(&[panel("stripes", stripes)], 1, &out).unwrap();
        let img = read_png(&out);
        let plot = panel_layout(0, 1, Extra::default()).plot;
        let map = ColorMap::Sequential;
        let allowed = [map.at(1.0 / 3.0), map.at(0.5), map.at(2.0 / 3.0)];
        for x in plot.x0..plot.x1 {
            let c = img.get_pixel(x as u32, (plot.y0 + 100) as u32).0;
            assert!(allowed.contains(&c), "pixel {x}: {c:?}");
        }
    }

    #[test]
    fn extension_is_case_insensitive() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("UPPER.PNG");
        draw_heatmaps(&[panel("t", ramp(2, 2))], 1, &out).unwrap();
        assert_eq!(read_png(&out).dimensions(), (PANEL_WIDTH, PANEL_HEIGHT));
    }

    #[test]
    fn bad_input_is_an_error_naming_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let ok = [panel("t", ramp(2, 2))];
        let png = dir.path().join("x.png");

        let jpg = dir.path().join("attn.jpg");
        let err = error_of(&ok, 1, &jpg);
        assert!(err.contains("attn.jpg") && err.contains(".svg or .png"), "{err}");
        let err = error_of(&ok, 1, &dir.path().join("noext"));
        assert!(err.contains("noext") && err.contains("unsupported"), "{err}");

        let err = error_of(&[], 1, &png);
        assert!(err.contains("no heatmap panels"), "{err}");
        let err = error_of(&ok, 0, &png);
        assert!(err.contains("columns = 0"), "{err}");

        let ragged = [panel("t", ramp(2, 2)), panel("rag", vec![vec![1.0, 2.0], vec![3.0], vec![4.0, 5.0]])];
        let err = error_of(&ragged, 2, &png);
        assert!(err.contains("panel 1 ('rag')") && err.contains("ragged rows"), "{err}");
        assert!(err.contains("row 0 has 2 values but row 1 has 1"), "{err}");
        let err = error_of(&[panel("empty", vec![])], 1, &png);
        assert!(err.contains("'empty'") && err.contains("zero rows"), "{err}");
        let err = error_of(&[panel("thin", vec![vec![], vec![]])], 1, &png);
        assert!(err.contains("'thin'") && err.contains("zero columns"), "{err}");
        assert!(!png.exists() && !jpg.exists());

        let missing = dir.path().join("no/such/dir/out.svg");
        let err = error_of(&ok, 1, &missing);
        assert!(err.contains("no/such/dir/out.svg"), "{err}");
    }

    #[test]
    fn grid_size_follows_the_panel_count() {
        assert_eq!(grid_size(1, 3, (PANEL_WIDTH, PANEL_HEIGHT)), (PANEL_WIDTH, PANEL_HEIGHT));
        assert_eq!(grid_size(3, 2, (PANEL_WIDTH, PANEL_HEIGHT)), (2 * PANEL_WIDTH, 2 * PANEL_HEIGHT));
        assert_eq!(grid_size(2, 5, (PANEL_WIDTH, PANEL_HEIGHT)), (2 * PANEL_WIDTH, PANEL_HEIGHT));
        assert_eq!(panel_layout(3, 2, Extra::default()).panel, Rect { x0: 420, y0: 380, x1: 840, y1: 760 });
    }

    #[test]
    fn rasterising_picks_or_averages_cells() {
        // Upsampling: each pixel shows the cell under its centre.
        assert_eq!(spans(2, 4), vec![(0, 1), (0, 1), (1, 2), (1, 2)]);
        // Downsampling: each pixel covers the cells it spans.
        assert_eq!(spans(4, 2), vec![(0, 2), (2, 4)]);
        assert_eq!(spans(5, 2), vec![(0, 3), (2, 5)]);
        let nan = f32::NAN;
        let values = vec![vec![0.0, 4.0, 2.0, nan, nan, nan]];
        let scale = ColorScale::from_values(values.iter().flatten()).unwrap();
        let map = ColorMap::Sequential;
        let pixels = rasterize(&values, Some(&scale), 3, 1);
        assert_eq!(pixels, [map.at(0.5), map.at(0.5), NON_FINITE].concat());
        let pixels = rasterize(&values, Some(&scale), 12, 1);
        assert_eq!(pixels[..9], [map.bottom(), map.bottom(), map.top()].concat());
        assert_eq!(rasterize(&values, None, 2, 1), [NON_FINITE, NON_FINITE].concat());
    }

    #[test]
    fn ticks_and_digits() {
        assert_eq!(ticks(64, 6).collect::<Vec<_>>(), vec![0, 20, 40, 60]);
        assert_eq!(ticks(5, 10).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(ticks(512, 7).collect::<Vec<_>>(), vec![0, 100, 200, 300, 400, 500]);
        assert_eq!(ticks(1, 0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(digits(0), 1);
        assert_eq!(digits(511), 3);
    }
}
