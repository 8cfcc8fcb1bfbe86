//! Line-chart panels sharing one x axis: layout, axes, series and legends, on the SVG and PNG
//! backends.

use std::path::Path;

use anyhow::{ensure, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::Axis;
use super::canvas::{
    frame, grid_cell, grid_size, line, render, rgb, Figure, Format, Label, Rect, LABEL_SIZE, TICK_SIZE,
    TITLE_SIZE,
};
use super::colormap::Rgb;
use super::text::{HAlign, VAlign};

/// One line of a panel, with its legend entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// The colour of the line, its markers and its legend swatch.
    pub color: Rgb,
    /// Marks every point with a dot (for sparse series, e.g. validation scores).
    pub markers: bool,
    /// The points `(x, y)`, in drawing order; points with a non-finite coordinate are left out.
    pub points: Vec<(f64, f64)>,
}

/// One panel of a line chart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinePanel {
    /// The title above the panel.
    pub title: String,
    /// The label of the horizontal axis.
    pub x_label: String,
    /// The label of the vertical axis.
    pub y_label: String,
    /// The lines; a panel whose series have no points says "no data".
    pub series: Vec<Series>,
}

/// Width in pixels of one panel of the grid (the canvas is `columns * PANEL_WIDTH` wide).
const PANEL_WIDTH: u32 = 800;
/// Height in pixels of one panel of the grid (the canvas is `rows * PANEL_HEIGHT` high).
const PANEL_HEIGHT: u32 = 260;

/// Space around the plot area of a panel: title above, tick labels and the axis label below and
/// left, the legend right.
const MARGIN_LEFT: i32 = 76;
const MARGIN_RIGHT: i32 = 200;
const MARGIN_TOP: i32 = 36;
const MARGIN_BOTTOM: i32 = 48;
/// Gap between the plot area and the legend, the length of a legend swatch and the legend's line
/// spacing.
const LEGEND_GAP: i32 = 16;
const SWATCH: i32 = 22;
const LEGEND_LINE: i32 = 20;
/// Radius of the point markers.
const MARKER_RADIUS: u32 = 3;

const GRID_COLOR: RGBColor = RGBColor(228, 228, 228);

/// Draws the panels in a grid with `columns` columns into `out`; the format follows the extension
/// (.svg or .png; anything else is an error naming the path). All panels share one x axis, which
/// starts at 0 (or below, for negative x) and has whole-number ticks when every x is whole; each
/// panel has its own y axis, fitted to its points, with light grid lines at the ticks. Lines are
/// two pixels wide; a series with a single point, or with `markers`, gets a dot at each point.
/// The legend, right of each plot, lists the series that have points. Each panel takes 800 x 260
/// pixels; with fewer panels than `columns`, the grid has only as many columns as panels.
///
/// # Errors
/// When there are no panels, `columns` is 0, the extension is not .svg or .png, or the file
/// cannot be written.
pub fn draw_line_charts(panels: &[LinePanel], columns: usize, out: &Path) -> Result<()> {
    ensure!(!panels.is_empty(), "no line-chart panels to draw (the panel list is empty)");
    ensure!(columns > 0, "the line-chart grid needs at least one column (columns = 0)");
    let xs = || panels.iter().flat_map(|p| &p.series).flat_map(Series::finite_points).map(|(x, _)| x);
    let (x_min, x_max) = xs().fold((0.0, 0.0), |(lo, hi): (f64, f64), x| (lo.min(x), hi.max(x)));
    let integer = xs().all(|x| x.fract() == 0.0);
    let x_ticks = (PANEL_WIDTH as i32 - MARGIN_LEFT - MARGIN_RIGHT) / 64;
    let x_axis = Axis::fit(x_min, x_max, x_ticks as usize, integer);
    let columns = columns.min(panels.len());
    render(&Chart { panels, columns, x_axis }, out, "the line chart")
}

impl Series {
    /// The points with finite coordinates.
    fn finite_points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite())
    }
}

/// The panels, the number of grid columns (at most the number of panels) and the shared x axis.
struct Chart<'a> {
    panels: &'a [LinePanel],
    columns: usize,
    x_axis: Axis,
}

impl Figure for Chart<'_> {
    fn size(&self) -> (u32, u32) {
        grid_size(self.panels.len(), self.columns, (PANEL_WIDTH, PANEL_HEIGHT))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, format: Format) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        for (i, panel) in self.panels.iter().enumerate() {
            let area = grid_cell(i, self.columns, (PANEL_WIDTH, PANEL_HEIGHT));
            draw_panel(root, panel, area, &self.x_axis, format)?;
        }
        Ok(())
    }
}

/// The plot area of a panel that covers `area`.
fn plot_area(area: Rect) -> Rect {
    Rect {
        x0: area.x0 + MARGIN_LEFT,
        y0: area.y0 + MARGIN_TOP,
        x1: area.x1 - MARGIN_RIGHT,
        y1: area.y1 - MARGIN_BOTTOM,
    }
}

fn draw_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panel: &LinePanel,
    area: Rect,
    x_axis: &Axis,
    format: Format,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let plot = plot_area(area);
    let title = Label::fitted(&panel.title, TITLE_SIZE, area.width() - 16)?;
    title.draw(root, ((plot.x0 + plot.x1) / 2, area.y0 + 18), format)?;

    let shown: Vec<&Series> = panel.series.iter().filter(|s| s.finite_points().next().is_some()).collect();
    let ys = || shown.iter().flat_map(|s| s.finite_points()).map(|(_, y)| y);
    let (Some(y_min), Some(y_max)) = (ys().reduce(f64::min), ys().reduce(f64::max)) else {
        frame(root, plot)?;
        let label = Label::new("no data", LABEL_SIZE, HAlign::Center, VAlign::Center);
        return label.draw(root, ((plot.x0 + plot.x1) / 2, (plot.y0 + plot.y1) / 2), format);
    };
    let y_axis = Axis::fit(y_min, y_max, (plot.height() / 28) as usize, false);
    let px = |x: f64| plot.x0 + (x_axis.position(x) * f64::from(plot.width() - 1)).round() as i32;
    let py = |y: f64| plot.y1 - 1 - (y_axis.position(y) * f64::from(plot.height() - 1)).round() as i32;

    // Grid lines, tick marks and tick labels.
    for (x, text) in &x_axis.ticks {
        let x = px(*x);
        root.draw(&PathElement::new(vec![(x, plot.y0), (x, plot.y1 - 1)], GRID_COLOR))?;
        line(root, (x, plot.y1), (x, plot.y1 + 4))?;
        Label::new(text, TICK_SIZE, HAlign::Center, VAlign::Top).draw(root, (x, plot.y1 + 7), format)?;
    }
    for (y, text) in &y_axis.ticks {
        let y = py(*y);
        root.draw(&PathElement::new(vec![(plot.x0, y), (plot.x1 - 1, y)], GRID_COLOR))?;
        line(root, (plot.x0 - 5, y), (plot.x0 - 1, y))?;
        Label::new(text, TICK_SIZE, HAlign::Right, VAlign::Center).draw(root, (plot.x0 - 8, y), format)?;
    }

    // The series, in order (later ones on top).
    for series in &shown {
        let style = ShapeStyle::from(rgb(series.color)).stroke_width(2);
        let points: Vec<(i32, i32)> = series.finite_points().map(|(x, y)| (px(x), py(y))).collect();
        if points.len() > 1 {
            root.draw(&PathElement::new(points.as_slice(), style))?;
        }
        if series.markers || points.len() == 1 {
            for &p in &points {
                root.draw(&Circle::new(p, MARKER_RADIUS, style.filled()))?;
            }
        }
    }
    frame(root, plot)?;

    // Legend: a swatch (with a dot for marked series) and the name of each series shown.
    let lx = plot.x1 + LEGEND_GAP;
    for (i, series) in shown.iter().enumerate() {
        let y = plot.y0 + 8 + i as i32 * LEGEND_LINE;
        let style = ShapeStyle::from(rgb(series.color)).stroke_width(2);
        root.draw(&PathElement::new(vec![(lx, y), (lx + SWATCH, y)], style))?;
        if series.markers {
            root.draw(&Circle::new((lx + SWATCH / 2, y), MARKER_RADIUS, style.filled()))?;
        }
        let text_x = lx + SWATCH + 6;
        let name = Label::fitted(&series.name, TICK_SIZE, area.x1 - text_x - 6)?;
        Label { h: HAlign::Left, ..name }.draw(root, (text_x, y), format)?;
    }

    // Axis labels.
    let x_label = Label::fitted(&panel.x_label, LABEL_SIZE, plot.width())?;
    x_label.draw(root, ((plot.x0 + plot.x1) / 2, plot.y1 + 34), format)?;
    let y_label = Label { rotate: true, ..Label::fitted(&panel.y_label, LABEL_SIZE, plot.height())? };
    y_label.draw(root, (area.x0 + 14, (plot.y0 + plot.y1) / 2), format)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(title: &str, series: Vec<Series>) -> LinePanel {
        LinePanel { title: title.into(), x_label: "step".into(), y_label: "value".into(), series }
    }

    fn series(name: &str, color: Rgb, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), color, markers: false, points }
    }

    #[test]
    fn odd_data_is_drawn_rather_than_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("odd.svg");
        let nan = f64::NAN;
        let panels = [
            panel("one point", vec![series("a", [200, 0, 0], vec![(25.0, 7.1)])]),
            panel("nothing finite", vec![series("b", [0, 200, 0], vec![(50.0, nan), (nan, 1.0)])]),
            panel("huge", vec![series("c", [0, 0, 200], vec![(10.0, 2.0), (20.0, 1e300), (30.0, -1e300)])]),
            panel("constant", vec![series("d", [0, 0, 100], vec![(0.0, 1e-4), (1e7, 1e-4)])]),
        ];
        draw_line_charts(&panels, 2, &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains(r#"width="1600" height="520""#));
        // The lone point is a dot; the panel without finite points says so and has no legend.
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("\nno data\n") && !svg.contains("\nb\n"));
        assert!(svg.contains("\n1e300\n") && svg.contains("\n1e7\n"), "no 1e300 / 1e7 tick labels");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn bad_input_is_an_error_naming_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let ok = [panel("t", vec![series("a", [0, 0, 0], vec![(0.0, 1.0)])])];
        let err = format!("{:#}", draw_line_charts(&[], 1, &dir.path().join("x.png")).unwrap_err());
        assert!(err.contains("no line-chart panels"), "{err}");
        let err = format!("{:#}", draw_line_charts(&ok, 0, &dir.path().join("x.png")).unwrap_err());
        assert!(err.contains("columns = 0"), "{err}");
        let err = format!("{:#}", draw_line_charts(&ok, 1, &dir.path().join("x.pdf")).unwrap_err());
        assert!(err.contains("x.pdf") && err.contains("expected .svg or .png"), "{err}");
    }
}
