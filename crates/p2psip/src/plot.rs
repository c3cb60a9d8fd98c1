//! `p2psip sim --plot DIR`: PNG charts of a simulation report.

use anyhow::{Context, Result};
use charts::plotters::prelude::*;
use charts::{draw_error, draw_legend, svg, ChartError, SIZE};
use sim::Report;
use std::path::{Path, PathBuf};

/// Draws one chart of a report as SVG text.
type DrawChart = fn(&Report) -> Result<String, ChartError>;

/// Writes hops.png, lookups.png and maintenance.png into `dir` and returns
/// their paths.
pub fn write_charts(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the plot directory {}", dir.display()))?;
    let charts: [(&str, DrawChart); 3] = [
        ("hops.png", hops_svg),
        ("lookups.png", lookups_svg),
        ("maintenance.png", maintenance_svg),
    ];
    let mut written = Vec::new();
    for (name, draw) in charts {
        let path = dir.join(name);
        charts::write_png(&draw(report)?, &path)?;
        written.push(path);
    }
    Ok(written)
}

fn title(r: &Report, what: &str) -> String {
    let churn = r
        .churn_median_s
        .map_or("no churn".to_string(), |m| format!("churn median {m:.0} s"));
    format!("{what} - {} peers, {churn}, seed {}", r.peers, r.seed)
}

/// Share of successful lookups by hop count, with ½·log2 N and the mean.
fn hops_svg(r: &Report) -> Result<String, ChartError> {
    let total: u64 = r.hops_histogram.iter().sum::<u64>().max(1);
    let shares: Vec<f64> = r
        .hops_histogram
        .iter()
        .map(|c| *c as f64 / total as f64 * 100.0)
        .collect();
    let max_hops = (shares.len() as f64).max(r.hops_half_log2_n + 1.0).ceil();
    let max_share = shares.iter().copied().fold(1.0, f64::max) * 1.15;
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title(r, "Overlay hops per lookup"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..max_hops, 0.0..max_share)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("hops")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("% of successful lookups")
            .disable_x_mesh()
            .draw()
            .map_err(draw_error)?;
        chart
            .draw_series(shares.iter().enumerate().map(|(h, s)| {
                let h = h as f64;
                Rectangle::new([(h - 0.35, 0.0), (h + 0.35, *s)], BLUE.mix(0.6).filled())
            }))
            .map_err(draw_error)?
            .label(format!("lookups ({})", r.lookups_ok))
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], BLUE.mix(0.6).filled()));
        for (x, colour, label) in [
            (r.hops_half_log2_n, RED, format!("½·log2 N = {:.2}", r.hops_half_log2_n)),
            (r.hops_mean, BLACK, format!("mean = {:.2}", r.hops_mean)),
        ] {
            chart
                .draw_series(LineSeries::new([(x, 0.0), (x, max_share)], colour.stroke_width(2)))
                .map_err(draw_error)?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour.stroke_width(2)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// Lookup success per simulated minute.
fn lookups_svg(r: &Report) -> Result<String, ChartError> {
    let s = &r.series;
    let points: Vec<(f64, f64)> = s
        .minute
        .iter()
        .zip(s.lookups.iter().zip(&s.lookups_ok))
        .filter(|(_, (n, _))| **n > 0)
        .map(|(m, (n, ok))| (*m as f64, *ok as f64 / *n as f64 * 100.0))
        .collect();
    let lowest = points.iter().map(|p| p.1).fold(100.0, f64::min);
    let floor = (lowest - 1.0).clamp(0.0, 99.0).floor();
    let minutes = (s.minute.len() as f64).max(1.0);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title(r, "Lookup success"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..minutes, floor..100.5)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("simulated minute")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("% of lookups that found the value")
            .draw()
            .map_err(draw_error)?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2)))
            .map_err(draw_error)?
            .label(format!("overall {:.3} %", r.lookup_success_rate * 100.0))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLUE.stroke_width(2)));
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// Maintenance messages and bytes per live peer per second, by minute.
fn maintenance_svg(r: &Report) -> Result<String, ChartError> {
    let s = &r.series;
    let per_peer_s = |v: &[u64]| -> Vec<(f64, f64)> {
        s.minute
            .iter()
            .zip(v.iter().zip(&s.live_peers))
            .filter(|(_, (_, live))| **live > 0)
            .map(|(m, (x, live))| (*m as f64, *x as f64 / *live as f64 / 60.0))
            .collect()
    };
    let msgs = per_peer_s(&s.maintenance_msgs);
    let bytes = per_peer_s(&s.maintenance_bytes);
    let minutes = (s.minute.len() as f64).max(1.0);
    let top = |v: &[(f64, f64)]| v.iter().map(|p| p.1).fold(0.0, f64::max) * 1.2 + 1e-3;
    svg(|root| {
        let (upper, lower) = root.split_vertically(SIZE.1 / 2);
        for (area, points, what, colour, caption) in [
            (
                &upper,
                &msgs,
                "messages / peer / s",
                BLUE,
                Some(title(r, "Maintenance traffic")),
            ),
            (&lower, &bytes, "bytes / peer / s", RED, None),
        ] {
            let mut builder = ChartBuilder::on(area);
            if let Some(c) = caption {
                builder.caption(c, ("sans-serif", 20));
            }
            let mut chart = builder
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(0.0..minutes, 0.0..top(points))
                .map_err(draw_error)?;
            chart
                .configure_mesh()
                .x_desc("simulated minute")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_desc(what)
                .draw()
                .map_err(draw_error)?;
            chart
                .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
                .map_err(draw_error)?;
        }
        Ok(())
    })
}
