//! A hand-written SVG plot of latency percentile curves: percentile on a `1 / (1 - p)`
//! axis (so 90 %, 99 % and 99.9 % are evenly spaced) against latency on a log axis.

use std::fmt::Write as _;

/// One named curve of `(percentile, latency in microseconds)` points.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Legend label.
    pub(crate) name: String,
    /// Points in ascending percentile order.
    pub(crate) points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// Percentile ticks of the x axis: position `-log10(1 - p)` and label.
const X_TICKS: [(f64, &str); 6] = [
    (0.0, "0%"),
    (std::f64::consts::LOG10_2, "50%"),
    (1.0, "90%"),
    (2.0, "99%"),
    (3.0, "99.9%"),
    (4.0, "99.99%"),
];

/// Renders the curves as a standalone SVG document. Points with a latency of zero or
/// less cannot go on a log axis and are left out.
pub(crate) fn render_latency_plot(title: &str, series: &[Series]) -> String {
    let points = series
        .iter()
        .flat_map(|line| line.points.iter().copied())
        .filter(|&(p, latency)| latency > 0.0 && (0.0..100.0).contains(&p));
    let (mut x_max, mut y_min, mut y_max) = (1.0_f64, f64::INFINITY, f64::NEG_INFINITY);
    for (p, latency) in points {
        x_max = x_max.max(percentile_axis(p));
        y_min = y_min.min(latency.log10());
        y_max = y_max.max(latency.log10());
    }
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + plot_width() / 2.0,
        escape(title)
    );

    if !y_min.is_finite() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">no latency data in this run</text>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        svg.push_str("</svg>\n");
        return svg;
    }

    let x_max = x_max.ceil();
    let (y_low, y_high) = (y_min.floor(), y_max.ceil().max(y_min.floor() + 1.0));
    let scale = Scale {
        x_max,
        y_low,
        y_high,
    };
    draw_axes(&mut svg, &scale);

    for (index, line) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let coordinates: Vec<String> = line
            .points
            .iter()
            .filter(|&&(p, latency)| latency > 0.0 && (0.0..100.0).contains(&p))
            .map(|&(p, latency)| {
                format!("{:.1},{:.1}", scale.x(percentile_axis(p)), scale.y(latency))
            })
            .collect();
        if !coordinates.is_empty() {
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                coordinates.join(" ")
            );
        }
        let legend_y = TOP + 20.0 + 22.0 * index as f64;
        let legend_x = WIDTH - RIGHT + 20.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="3"/>"#,
            legend_x + 24.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}">{}</text>"#,
            legend_x + 30.0,
            legend_y + 4.0,
            escape(&line.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Position of percentile `p` on the x axis: 0 at 0 %, 1 at 90 %, 2 at 99 %.
fn percentile_axis(p: f64) -> f64 {
    -(1.0 - p / 100.0).log10()
}

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

struct Scale {
    x_max: f64,
    y_low: f64,
    y_high: f64,
}

impl Scale {
    fn x(&self, axis: f64) -> f64 {
        LEFT + plot_width() * axis / self.x_max
    }

    fn y(&self, latency_us: f64) -> f64 {
        let fraction = (latency_us.log10() - self.y_low) / (self.y_high - self.y_low);
        TOP + plot_height() * (1.0 - fraction)
    }
}

fn draw_axes(svg: &mut String, scale: &Scale) {
    let (bottom, right) = (TOP + plot_height(), LEFT + plot_width());
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        plot_width(),
        plot_height()
    );
    for (axis, label) in X_TICKS.iter().filter(|(axis, _)| *axis <= scale.x_max) {
        let x = scale.x(*axis);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            bottom + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_width() / 2.0,
        bottom + 42.0
    );
    let decades = (scale.y_high - scale.y_low).round() as i32;
    for step in 0..=decades {
        let exponent = scale.y_low + f64::from(step);
        let latency = 10f64.powf(exponent);
        let y = scale.y(latency);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            latency_label(latency)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">latency</text>"#,
        TOP + plot_height() / 2.0,
        TOP + plot_height() / 2.0
    );
}

fn latency_label(latency_us: f64) -> String {
    if latency_us >= 1_000_000.0 {
        format!("{} s", latency_us / 1_000_000.0)
    } else if latency_us >= 1_000.0 {
        format!("{} ms", latency_us / 1_000.0)
    } else if latency_us >= 1.0 {
        format!("{latency_us} µs")
    } else {
        format!("{} ns", latency_us * 1_000.0)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, scale: f64) -> Series {
        Series {
            name: name.into(),
            points: vec![
                (0.0, 100.0 * scale),
                (90.0, 300.0 * scale),
                (99.0, 2_000.0 * scale),
            ],
        }
    }

    #[test]
    fn plot_has_one_polyline_and_legend_per_series() {
        let svg = render_latency_plot("e2e", &[series("direct", 1.0), series("full <chain>", 2.0)]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("full &lt;chain&gt;"));
        assert!(!svg.contains("full <chain>"));
    }

    #[test]
    fn plot_axes_span_the_data() {
        let svg = render_latency_plot("e2e", &[series("direct", 1.0)]);
        // Latencies 100 µs to 2 ms give decades 100 µs, 1 ms and 10 ms.
        assert!(svg.contains(">100 µs<"), "{svg}");
        assert!(svg.contains(">1 ms<"));
        assert!(svg.contains(">10 ms<"));
        assert!(svg.contains(">99%<"));
        assert!(!svg.contains(">99.9%<"));
    }

    #[test]
    fn curve_points_stay_inside_the_plot() {
        let svg = render_latency_plot("e2e", &[series("direct", 1.0)]);
        let points = svg
            .split("points=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        for pair in points.split(' ') {
            let (x, y) = pair.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((LEFT..=WIDTH - RIGHT).contains(&x), "x {x}");
            assert!((TOP..=HEIGHT - BOTTOM).contains(&y), "y {y}");
        }
    }

    #[test]
    fn empty_plot_shows_no_data() {
        let svg = render_latency_plot("e2e", &[]);
        assert!(svg.contains("no latency data"));
        assert!(!svg.contains("<polyline"));
    }

    #[test]
    fn latency_labels_use_readable_units() {
        assert_eq!(latency_label(10.0), "10 µs");
        assert_eq!(latency_label(1_000.0), "1 ms");
        assert_eq!(latency_label(0.1), "100 ns");
    }
}
