//! PNG charts for the simulator's and the benchmarks' reports.
//!
//! plotters draws each chart as SVG (its released versions render text to
//! bitmaps only through the system's fontconfig); resvg rasterises the SVG
//! with a font compiled into the binary, so the charts look the same on any
//! machine and need no system package.

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use plotters;

/// DejaVu Sans cut down to ASCII and a few symbols (license beside it).
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
const FONT_FAMILY: &str = "DejaVu Sans";

/// Every chart's size in pixels.
pub const SIZE: (u32, u32) = (900, 540);

/// The canvas a chart draws on.
pub type Canvas<'a> = DrawingArea<SVGBackend<'a>, Shift>;

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("drawing a chart failed: {0}")]
    Draw(String),
    #[error("the chart is not valid SVG: {0}")]
    Svg(String),
    #[error("the chart has no size")]
    Empty,
    #[error("cannot write {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}

/// Wraps a plotters error, which carries its backend's lifetime.
pub fn draw_error<E: std::fmt::Debug>(e: E) -> ChartError {
    ChartError::Draw(format!("{e:?}"))
}

/// Runs `draw` on a white SVG canvas of [`SIZE`] and returns the SVG text.
pub fn svg(draw: impl FnOnce(&Canvas<'_>) -> Result<(), ChartError>) -> Result<String, ChartError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        draw(&root)?;
        root.present().map_err(draw_error)?;
    }
    Ok(out)
}

/// Rasterises `svg` with the built-in font and writes it to `path` as PNG.
pub fn write_png(svg: &str, path: &Path) -> Result<(), ChartError> {
    let mut options = resvg::usvg::Options::default();
    {
        let fonts = Arc::make_mut(&mut options.fontdb);
        fonts.load_font_data(FONT.to_vec());
        fonts.set_sans_serif_family(FONT_FAMILY);
    }
    options.font_family = FONT_FAMILY.into();
    let tree = resvg::usvg::Tree::from_str(svg, &options).map_err(|e| ChartError::Svg(e.to_string()))?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or(ChartError::Empty)?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.save_png(path).map_err(|e| ChartError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The legend of a chart's labelled series, boxed at `position`.
pub fn draw_legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<(), ChartError> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_written_as_a_png_of_the_chart_size() {
        let svg = svg(|root| {
            let mut chart = ChartBuilder::on(root)
                .caption("a line", ("sans-serif", 20))
                .build_cartesian_2d(0.0..1.0, 0.0..1.0)
                .map_err(draw_error)?;
            chart
                .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLUE))
                .map_err(draw_error)?;
            Ok(())
        })
        .unwrap();
        let dir = std::env::temp_dir().join(format!("charts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("line.png");
        write_png(&svg, &path).unwrap();
        let png = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), SIZE.0);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), SIZE.1);
    }

    #[test]
    fn an_unwritable_path_is_an_error_that_names_it() {
        let svg = svg(|_| Ok(())).unwrap();
        let path = Path::new("/nonexistent-dir/chart.png");
        let err = write_png(&svg, path).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/chart.png"), "{err}");
    }
}
