//! The chart primitive: a line chart over the test's time, as hand-written SVG. Axes
//! with round ticks (linear or log), grid, the stage changes as dashed lines, the end
//! of the payments as a solid one, one polyline a series and a legend.

use super::format::esc;
use std::fmt::Write as _;

/// Size of a chart, px.
const W: f64 = 1100.0;
const H: f64 = 280.0;
/// Margins around the plot area: left (tick labels), right, top (title, legend),
/// bottom (tick labels, axis name).
const ML: f64 = 70.0;
const MR: f64 = 20.0;
const MT: f64 = 34.0;
const MB: f64 = 36.0;
/// Size of the plot area.
const PW: f64 = W - ML - MR;
const PH: f64 = H - MT - MB;

/// Width the legend gives each series, right-aligned in the title row.
const LEGEND_ENTRY_WIDTH: f64 = 150.0;

/// Colors that stay distinct on white and for common color blindness.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// How values map to the height of the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scale {
    /// From 0 to a round value above the largest.
    Linear,
    /// Decades from the smallest to the largest; values at or below 0 are not drawn.
    Log,
}

impl Scale {
    /// Whether `y` can be drawn on this scale.
    fn shows(self, y: f64) -> bool {
        y.is_finite() && (self == Scale::Linear || y > 0.0)
    }
}

/// Whether a series was measured (solid line) or planned (dashed, as the VUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Measured,
    Planned,
}

/// One line of a chart.
pub(super) struct Series {
    name: String,
    source: Source,
    points: Vec<(f64, f64)>,
}

impl Series {
    /// A measured quantity, drawn solid.
    pub(super) fn new(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.to_string(),
            source: Source::Measured,
            points,
        }
    }

    /// A planned quantity, drawn dashed.
    pub(super) fn planned(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            source: Source::Planned,
            ..Series::new(name, points)
        }
    }
}

/// The time axis that every chart of a run shares.
pub(super) struct Timeline {
    /// Right end of the axis, seconds since the test start.
    pub(super) x_max: f64,
    /// Stage changes: when, and a label (a dashed line each).
    pub(super) stages: Vec<(f64, String)>,
    /// End of the payments (a solid line).
    pub(super) end: f64,
}

/// A line chart over the test's time.
pub(super) struct Chart<'a> {
    pub(super) title: &'a str,
    pub(super) y_label: &'a str,
    pub(super) scale: Scale,
    pub(super) series: Vec<Series>,
    pub(super) timeline: &'a Timeline,
}

/// Where the plot area puts data: x over `[0, x_max]`, y over `[y_lo, y_hi]` (in
/// decades on a log scale), both clamped to the area.
struct Frame {
    x_max: f64,
    y_lo: f64,
    y_hi: f64,
    scale: Scale,
}

impl Frame {
    fn x(&self, x: f64) -> f64 {
        ML + (x / self.x_max).clamp(0.0, 1.0) * PW
    }

    fn y(&self, y: f64) -> f64 {
        let v = match self.scale {
            Scale::Log => y.max(1e-12).log10(),
            Scale::Linear => y,
        };
        MT + PH - ((v - self.y_lo) / (self.y_hi - self.y_lo)).clamp(0.0, 1.0) * PH
    }
}

/// A round step that cuts `range` in about five.
pub(super) fn nice_step(range: f64) -> f64 {
    let raw = range / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let m = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// A tick label: no trailing zeros, at most three decimals.
pub(super) fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl Chart<'_> {
    /// The chart as an `<svg>` element.
    pub(super) fn svg(&self) -> String {
        let mut o = String::new();
        let _ = write!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
        );
        let _ = write!(
            o,
            r#"<text x="{ML}" y="16" font-size="14" font-weight="bold">{}</text>"#,
            esc(self.title)
        );
        let Some((lo, hi)) = self.y_range() else {
            let _ = write!(
                o,
                r##"<text x="{}" y="{}" fill="#888">no data</text></svg>"##,
                ML + 10.0,
                MT + 20.0
            );
            return o;
        };
        let (frame, y_ticks) = self.y_axis(lo, hi);
        y_grid(&mut o, &frame, &y_ticks);
        x_ticks(&mut o, &frame);
        self.axis_names(&mut o);
        self.time_marks(&mut o, &frame);
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            self.polyline(&mut o, &frame, s, color);
            self.legend_entry(&mut o, i, s, color);
        }
        o.push_str("</svg>");
        o
    }

    /// Smallest and largest value that can be drawn; `None` when there is none.
    fn y_range(&self) -> Option<(f64, f64)> {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1));
        for y in ys.filter(|&y| self.scale.shows(y)) {
            lo = lo.min(y);
            hi = hi.max(y);
        }
        lo.is_finite().then_some((lo, hi))
    }

    /// The plot area's mapping for values from `lo` to `hi`, and the y ticks: whole
    /// decades on a log scale, round steps from 0 on a linear one.
    fn y_axis(&self, lo: f64, hi: f64) -> (Frame, Vec<f64>) {
        let (y_lo, y_hi, ticks): (f64, f64, Vec<f64>) = match self.scale {
            Scale::Log => {
                let a = lo.log10().floor();
                let b = hi.log10().ceil().max(a + 1.0);
                let ticks = (a as i32..=b as i32).map(|e| 10f64.powi(e)).collect();
                (a, b, ticks)
            }
            Scale::Linear => {
                let hi = if hi <= 0.0 { 1.0 } else { hi * 1.05 };
                let step = nice_step(hi);
                let top = (hi / step).ceil() * step;
                let ticks = (0..=((top / step).round() as i64))
                    .map(|i| i as f64 * step)
                    .collect();
                (0.0, top, ticks)
            }
        };
        let frame = Frame {
            x_max: self.timeline.x_max.max(1.0),
            y_lo,
            y_hi,
            scale: self.scale,
        };
        (frame, ticks)
    }

    /// The plot area's border and the names of both axes.
    fn axis_names(&self, o: &mut String) {
        let _ = write!(
            o,
            r##"<rect x="{ML}" y="{MT}" width="{PW}" height="{PH}" fill="none" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">seconds since the test start</text>"##,
            ML + PW / 2.0,
            H - 4.0
        );
        let _ = write!(
            o,
            r##"<text transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle" fill="#444">{}</text>"##,
            MT + PH / 2.0,
            esc(self.y_label)
        );
    }

    /// Stage changes (dashed, labels alternating between two rows) and the end of the
    /// payments (solid).
    fn time_marks(&self, o: &mut String, frame: &Frame) {
        for (i, (t, label)) in self.timeline.stages.iter().enumerate() {
            let px = frame.x(*t);
            let ly = MT + 10.0 + (i % 2) as f64 * 11.0;
            let _ = write!(
                o,
                r##"<line x1="{px:.1}" y1="{MT}" x2="{px:.1}" y2="{:.1}" stroke="#b0b0b0" stroke-dasharray="4 3"/><text x="{:.1}" y="{ly:.1}" font-size="9" fill="#777">{}</text>"##,
                MT + PH,
                px + 2.0,
                esc(label)
            );
        }
        let px = frame.x(self.timeline.end);
        let _ = write!(
            o,
            r##"<line x1="{px:.1}" y1="{MT}" x2="{px:.1}" y2="{:.1}" stroke="#555" stroke-width="1.5"/>"##,
            MT + PH
        );
    }

    /// The points of `s` that the scale can show, as one polyline (none without any).
    fn polyline(&self, o: &mut String, frame: &Frame, s: &Series, color: &str) {
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| self.scale.shows(p.1))
            .map(|&(x, y)| format!("{:.1},{:.1}", frame.x(x), frame.y(y)))
            .collect();
        if pts.is_empty() {
            return;
        }
        let dash = match s.source {
            Source::Planned => r#" stroke-dasharray="6 4""#,
            Source::Measured => "",
        };
        let _ = write!(
            o,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} points="{}"/>"#,
            pts.join(" ")
        );
    }

    /// Series `i`'s swatch and name, right-aligned in the title row.
    fn legend_entry(&self, o: &mut String, i: usize, s: &Series, color: &str) {
        let lx = W - MR - LEGEND_ENTRY_WIDTH * (self.series.len() - i) as f64;
        let _ = write!(
            o,
            r#"<rect x="{lx:.1}" y="8" width="14" height="4" fill="{color}"/><text x="{:.1}" y="14">{}</text>"#,
            lx + 18.0,
            esc(&s.name)
        );
    }
}

/// Horizontal grid lines at the y ticks, with their labels.
fn y_grid(o: &mut String, frame: &Frame, ticks: &[f64]) {
    for t in ticks {
        let y = frame.y(*t);
        let _ = write!(
            o,
            r##"<line x1="{ML}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
            W - MR,
            ML - 6.0,
            y + 4.0,
            fmt_tick(*t)
        );
    }
}

/// Ticks and labels of the time axis, at round steps from 0.
fn x_ticks(o: &mut String, frame: &Frame) {
    let x_step = nice_step(frame.x_max);
    let mut x = 0.0;
    while x <= frame.x_max + 1e-9 {
        let px = frame.x(x);
        let _ = write!(
            o,
            r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
            MT + PH,
            MT + PH + 4.0,
            MT + PH + 16.0,
            fmt_tick(x)
        );
        x += x_step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_ticks() {
        assert_eq!(fmt_tick(0.5), "0.5");
        assert_eq!(fmt_tick(2000.0), "2000");
        assert_eq!(nice_step(600.0), 200.0);
    }

    #[test]
    fn charts_are_well_formed_svg() {
        let timeline = Timeline {
            x_max: 60.0,
            stages: vec![(10.0, "D 100ms | F 0ms".to_string())],
            end: 60.0,
        };
        let c = Chart {
            title: "t <x>",
            y_label: "ms",
            scale: Scale::Log,
            series: vec![Series::new(
                "p99",
                vec![(0.5, 0.8), (1.5, 12.0), (2.5, 0.0)],
            )],
            timeline: &timeline,
        };
        let svg = c.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("t &lt;x&gt;"));
        assert!(svg.contains("<polyline"));
        let empty = Chart {
            series: vec![],
            scale: Scale::Linear,
            ..c
        };
        assert!(empty.svg().contains("no data"));
    }
}
