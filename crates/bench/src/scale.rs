//! Issue 6 §6: the simulator's hops and lookup success at growing overlay
//! sizes against ½·log2 N, under churn (median session 10 minutes).

use anyhow::{Context, Result};
use charts::plotters::coord::types::RangedCoordf64;
use charts::plotters::prelude::*;
use charts::{draw_error, draw_legend, ChartError, SIZE};
use std::path::Path;
use std::process::Command;

/// Every scale run's median session (issue 6 §6: 10 minutes) and seed.
pub const CHURN_MEDIAN_S: u64 = 600;
pub const SEED: u64 = 1;

/// The bound on mean hops: ½·log2 N plus this.
const HOPS_MARGIN: f64 = 0.5;
/// The bound on lookup success under churn, in percent.
const SUCCESS_TARGET_PERCENT: f64 = 99.9;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SimFigures {
    pub peers: usize,
    pub simulated_s: f64,
    pub lookups: u64,
    pub lookup_success_rate: f64,
    pub hops_mean: f64,
    pub hops_p99: u32,
    pub hops_half_log2_n: f64,
    pub items_lost: u64,
    pub items_lost_expected: u64,
    pub maintenance_bytes_per_peer_s: f64,
    pub wall_s: f64,
    pub peak_rss_mb: f64,
}

/// `p2psip sim` at `peers` with its plots written to `plots`.
pub fn simulate(p2psip: &Path, peers: usize, duration_s: u64, plots: &Path) -> Result<SimFigures> {
    let out = Command::new(p2psip)
        .arg("sim")
        .args(["--peers", &peers.to_string()])
        .args(["--duration", &duration_s.to_string()])
        .args(["--churn-median", &CHURN_MEDIAN_S.to_string()])
        .args(["--seed", &SEED.to_string(), "--json", "--plot"])
        .arg(plots)
        .output()
        .with_context(|| format!("cannot run {} sim", p2psip.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "p2psip sim --peers {peers} failed: {}",
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
    );
    serde_json::from_slice(&out.stdout).context("p2psip sim --json printed no report")
}

/// Writes `scale.png`: mean and p99 hops at each overlay size against
/// ½·log2 N (and the ½·log2 N + 0.5 bound), beside lookup success against
/// 99.9 %. The overlay size is on a log scale, where ½·log2 N is a line.
pub fn write_chart(figures: &[SimFigures], path: &Path) -> Result<()> {
    anyhow::ensure!(!figures.is_empty(), "no simulator runs to chart");
    let mut figures = figures.to_vec();
    figures.sort_by_key(|f| f.peers);
    let figures = &figures[..];
    let svg = charts::svg(|root| {
        let root = root
            .titled(
                &format!(
                    "The simulator at scale - churn median {CHURN_MEDIAN_S} s, seed {SEED}, {:.0} simulated s",
                    figures[0].simulated_s
                ),
                ("sans-serif", 20),
            )
            .map_err(draw_error)?;
        let (left, right) = root.split_horizontally(SIZE.0 / 2);
        hops_panel(&left, figures)?;
        success_panel(&right, figures)
    })?;
    charts::write_png(&svg, path)?;
    Ok(())
}

/// Where an overlay size goes on the x axis: log10 of the peers, so that
/// the axis is labelled by whole decades and ½·log2 N is a straight line.
fn decade(peers: usize) -> f64 {
    (peers.max(1) as f64).log10()
}

/// The x range: the decades around every size, from 1 peer up.
fn peers_axis(figures: &[SimFigures]) -> std::ops::Range<f64> {
    let sizes = figures.iter().map(|f| decade(f.peers));
    let low = sizes.clone().fold(f64::INFINITY, f64::min);
    let high = sizes.fold(f64::NEG_INFINITY, f64::max);
    (low - 0.5).floor().max(0.0)..(high + 0.5).ceil()
}

/// A decade's label: 1k, 10k, 100k, 1M.
fn peers_label(x: &f64) -> String {
    let n = 10f64.powf(*x).round();
    match n {
        n if n >= 1e6 => format!("{}M", n / 1e6),
        n if n >= 1e3 => format!("{}k", n / 1e3),
        n => format!("{n}"),
    }
}

/// Labels at whole decades only.
fn decades(x: &std::ops::Range<f64>) -> usize {
    (x.end - x.start) as usize + 1
}

/// Axis ranges on the overlay size's decades.
type PeersChart<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A panel with overlay sizes across and `y` up, its mesh drawn.
fn peers_chart<'a>(
    area: &charts::Canvas<'a>,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    y_desc: &str,
    y_labels: usize,
    y_label: &dyn Fn(&f64) -> String,
) -> Result<PeersChart<'a>, ChartError> {
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .margin_right(24)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x.clone(), y)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("peers")
        .x_labels(decades(&x))
        .x_label_formatter(&peers_label)
        .disable_x_mesh()
        .y_desc(y_desc)
        .y_labels(y_labels)
        .y_label_formatter(y_label)
        .draw()
        .map_err(draw_error)?;
    Ok(chart)
}

/// One figure per overlay size, joined by a line, under `label`.
fn draw_sizes(chart: &mut PeersChart<'_>, points: &[(f64, f64)], label: &str) -> Result<(), ChartError> {
    chart
        .draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2)))
        .map_err(draw_error)?;
    chart
        .draw_series(points.iter().map(|p| Circle::new(*p, 5, BLUE.filled())))
        .map_err(draw_error)?
        .label(label)
        .legend(|(x, y)| Circle::new((x + 7, y), 5, BLUE.filled()));
    Ok(())
}

/// A dashed red line through `points`, labelled as a bound.
fn draw_bound(chart: &mut PeersChart<'_>, points: [(f64, f64); 2], label: &str) -> Result<(), ChartError> {
    chart
        .draw_series(DashedLineSeries::new(points, 6, 4, RED.stroke_width(1)))
        .map_err(draw_error)?
        .label(label)
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], RED.stroke_width(1)));
    Ok(())
}

fn hops_panel(area: &charts::Canvas<'_>, figures: &[SimFigures]) -> Result<(), ChartError> {
    let x = peers_axis(figures);
    // ½·log2 N with N = 10^x.
    let half_log2 = |x: f64| x * std::f64::consts::LOG2_10 / 2.0;
    let top = figures
        .iter()
        .map(|f| f64::from(f.hops_p99))
        .fold(half_log2(x.end) + HOPS_MARGIN, f64::max)
        .ceil()
        + 1.0;
    // One label per whole hop.
    let mut chart = peers_chart(
        area,
        x.clone(),
        0.0..top,
        "overlay hops per lookup",
        top as usize + 1,
        &|y| format!("{y:.0}"),
    )?;
    let curve = |offset: f64| {
        [
            (x.start, half_log2(x.start) + offset),
            (x.end, half_log2(x.end) + offset),
        ]
    };
    chart
        .draw_series(LineSeries::new(curve(0.0), RED.stroke_width(2)))
        .map_err(draw_error)?
        .label("½·log2 N")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], RED.stroke_width(2)));
    draw_bound(&mut chart, curve(HOPS_MARGIN), "bound: ½·log2 N + 0.5")?;
    let means: Vec<(f64, f64)> = figures.iter().map(|f| (decade(f.peers), f.hops_mean)).collect();
    draw_sizes(&mut chart, &means, "mean hops")?;
    chart
        .draw_series(
            figures
                .iter()
                .map(|f| TriangleMarker::new((decade(f.peers), f64::from(f.hops_p99)), 6, BLUE.mix(0.5).filled())),
        )
        .map_err(draw_error)?
        .label("p99 hops")
        .legend(|(x, y)| TriangleMarker::new((x + 7, y), 6, BLUE.mix(0.5).filled()));
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn success_panel(area: &charts::Canvas<'_>, figures: &[SimFigures]) -> Result<(), ChartError> {
    let x = peers_axis(figures);
    let points: Vec<(f64, f64)> = figures
        .iter()
        .map(|f| (decade(f.peers), f.lookup_success_rate * 100.0))
        .collect();
    let lowest = points.iter().map(|p| p.1).fold(SUCCESS_TARGET_PERCENT, f64::min);
    let floor = (lowest - 0.1).clamp(0.0, 99.8);
    let mut chart = peers_chart(
        area,
        x.clone(),
        floor..100.02,
        "% of lookups that found the value",
        10,
        &|y| format!("{y:.2}"),
    )?;
    draw_bound(
        &mut chart,
        [(x.start, SUCCESS_TARGET_PERCENT), (x.end, SUCCESS_TARGET_PERCENT)],
        "bound: 99.9 %",
    )?;
    draw_sizes(&mut chart, &points, "lookup success")?;
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(peers: usize, hops_mean: f64, success: f64) -> SimFigures {
        SimFigures {
            peers,
            simulated_s: 600.0,
            lookups: 10_000,
            lookup_success_rate: success,
            hops_mean,
            hops_p99: hops_mean.ceil() as u32 + 3,
            hops_half_log2_n: (peers as f64).log2() / 2.0,
            items_lost: 0,
            items_lost_expected: 0,
            maintenance_bytes_per_peer_s: 100.0,
            wall_s: 1.0,
            peak_rss_mb: 1.0,
        }
    }

    fn png_size(path: &Path) -> (u32, u32) {
        let png = std::fs::read(path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        (
            u32::from_be_bytes(png[16..20].try_into().unwrap()),
            u32::from_be_bytes(png[20..24].try_into().unwrap()),
        )
    }

    #[test]
    fn the_scale_chart_is_drawn_for_one_size_or_several() {
        let dir = std::env::temp_dir().join(format!("bench-scale-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let runs = [
            figures(1_000, 5.1, 1.0),
            figures(10_000, 6.6, 0.9995),
            figures(100_000, 8.4, 0.998),
        ];
        for (name, runs) in [("three.png", &runs[..]), ("one.png", &runs[..1])] {
            let path = dir.join(name);
            write_chart(runs, &path).unwrap();
            assert_eq!(png_size(&path), SIZE, "{name}");
        }
        let err = write_chart(&[], &dir.join("none.png")).unwrap_err();
        assert!(err.to_string().contains("no simulator runs"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
