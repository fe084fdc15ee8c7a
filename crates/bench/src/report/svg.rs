//! The chart primitive: a line chart over the test's time, as hand-written SVG. Axes
//! with round ticks (linear or log), grid, the stage changes as dashed lines, the end
//! of the payments as a solid one, one polyline a series, and a legend in rows of its
//! own under the title (wrapping, so that it never overlaps the title, however many
//! series). The drawing has a `viewBox` and no fixed size: the page scales it to its
//! width. Each chart is an `<svg class="chart" data-chart="ID">`, which the page's
//! check (and the browser test) counts.

use super::format::esc;
use std::fmt::Write as _;

/// Width of a chart in the `viewBox`'s units (the page scales it to its own width).
pub(super) const W: f64 = 1100.0;
/// Height of the plot area.
pub(super) const PH: f64 = 210.0;
/// Margins around the plot area: left (tick labels), right, bottom (tick labels, axis
/// name). The top one depends on the legend's rows ([`legend_layout`]).
pub(super) const ML: f64 = 70.0;
pub(super) const MR: f64 = 20.0;
pub(super) const MB: f64 = 36.0;
/// Width of the plot area.
pub(super) const PW: f64 = W - ML - MR;

/// Baseline of the title (14 px bold).
const TITLE_Y: f64 = 18.0;
/// Width allowed per character of the title, generous (bold capitals are ~9 px).
#[cfg(test)]
const TITLE_CHAR_W: f64 = 9.0;
/// Baseline of the legend's first row, and the height of a row (11 px text).
const LEGEND_Y: f64 = 38.0;
const LEGEND_ROW: f64 = 16.0;
/// Width allowed per character of a legend name, generous (11 px sans-serif).
const LEGEND_CHAR_W: f64 = 7.0;
/// A legend entry: its swatch, the gap to its name, the gap to the next entry.
const SWATCH_W: f64 = 14.0;
const SWATCH_GAP: f64 = 4.0;
const ENTRY_GAP: f64 = 22.0;
/// Space between the legend's last row and the plot area (stage labels go in there).
const LEGEND_GAP: f64 = 10.0;

/// More stage changes than this and their labels are left out (the lines stay; the
/// stage table has them): `flapping` has one every 3 s, and the labels would pile up.
pub(super) const MAX_STAGE_LABELS: usize = 12;

/// Colors that stay distinct on white and for common color blindness.
pub(super) const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A rectangle: left, top, right, bottom.
pub(super) type Rect = (f64, f64, f64, f64);

/// Room the title takes (what the legend must stay clear of).
#[cfg(test)]
fn title_rect(title: &str) -> Rect {
    let w = TITLE_CHAR_W * title.chars().count() as f64;
    (ML, TITLE_Y - 14.0, ML + w, TITLE_Y + 4.0)
}

/// Where the legend entries go (left to right from the plot's left edge, wrapping to
/// a new row before the right edge, every row below the title): each entry's room,
/// and the top of the plot area under them.
pub(super) fn legend_layout(names: &[&str]) -> (Vec<Rect>, f64) {
    let mut rects = Vec::new();
    let (mut x, mut row) = (ML, 0.0);
    for name in names {
        let w = SWATCH_W + SWATCH_GAP + LEGEND_CHAR_W * name.chars().count() as f64;
        if x > ML && x + w > W - MR {
            x = ML;
            row += 1.0;
        }
        let base = LEGEND_Y + row * LEGEND_ROW;
        rects.push((x, base - 11.0, x + w, base + 4.0));
        x += w + ENTRY_GAP;
    }
    let rows = if names.is_empty() { 0.0 } else { row + 1.0 };
    (rects, LEGEND_Y - 12.0 + rows * LEGEND_ROW + LEGEND_GAP)
}

/// Opens a chart's `<svg>` (`id` for the page's check, `height` in the viewBox's units)
/// and writes its title.
pub(super) fn open(o: &mut String, id: &str, title: &str, height: f64) {
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{}" viewBox="0 0 {W} {height}" width="100%" preserveAspectRatio="xMinYMin meet" font-family="sans-serif" font-size="11" role="img" aria-label="{}"><text x="{ML}" y="{TITLE_Y}" font-size="14" font-weight="bold">{}</text>"#,
        esc(id),
        esc(title),
        esc(title)
    );
}

/// Says that a chart has nothing to draw, and closes it.
pub(super) fn no_data(o: &mut String, top: f64) {
    let _ = write!(
        o,
        r##"<text class="nodata" x="{}" y="{}" fill="#888">no data</text></svg>"##,
        ML + 10.0,
        top + 20.0
    );
}

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

/// How a series is drawn: solid (measured), or dashed (planned, as the VUs, or in
/// another unit than the chart's other series, as a share in %).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stroke {
    Solid,
    Dashed,
}

/// One line of a chart.
pub(super) struct Series {
    name: String,
    stroke: Stroke,
    points: Vec<(f64, f64)>,
}

impl Series {
    /// A measured quantity, drawn solid.
    pub(super) fn new(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.to_string(),
            stroke: Stroke::Solid,
            points,
        }
    }

    /// A planned quantity, drawn dashed.
    pub(super) fn planned(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            stroke: Stroke::Dashed,
            ..Series::new(name, points)
        }
    }

    /// A quantity in another unit than the chart's other series, drawn dashed.
    pub(super) fn other_unit(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series::planned(name, points)
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
    /// Names the chart for the page's check (`data-chart`).
    pub(super) id: &'a str,
    pub(super) title: &'a str,
    pub(super) y_label: &'a str,
    pub(super) scale: Scale,
    pub(super) series: Vec<Series>,
    pub(super) timeline: &'a Timeline,
}

/// Where the plot area (from `top`, [`PH`] high) puts data: x over `[0, x_max]`, y
/// over `[y_lo, y_hi]` (in decades on a log scale), both clamped to the area.
pub(super) struct Frame {
    pub(super) top: f64,
    pub(super) x_max: f64,
    pub(super) y_lo: f64,
    pub(super) y_hi: f64,
    pub(super) scale: Scale,
}

impl Frame {
    pub(super) fn x(&self, x: f64) -> f64 {
        ML + (x / self.x_max).clamp(0.0, 1.0) * PW
    }

    pub(super) fn y(&self, y: f64) -> f64 {
        let v = match self.scale {
            Scale::Log => y.max(1e-12).log10(),
            Scale::Linear => y,
        };
        self.bottom() - ((v - self.y_lo) / (self.y_hi - self.y_lo)).clamp(0.0, 1.0) * PH
    }

    /// The bottom of the plot area.
    pub(super) fn bottom(&self) -> f64 {
        self.top + PH
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
        let names: Vec<&str> = self.series.iter().map(|s| s.name.as_str()).collect();
        let (legend, top) = legend_layout(&names);
        let mut o = String::new();
        open(&mut o, self.id, self.title, top + PH + MB);
        let Some((lo, hi)) = self.y_range() else {
            no_data(&mut o, top);
            return o;
        };
        let (frame, y_ticks) = self.y_axis(lo, hi, top);
        y_grid(&mut o, &frame, &y_ticks);
        x_ticks(&mut o, &frame);
        axis_names(&mut o, &frame, "seconds since the test start", self.y_label);
        self.time_marks(&mut o, &frame);
        for (i, (s, at)) in self.series.iter().zip(&legend).enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            self.polyline(&mut o, &frame, s, color);
            legend_entry(&mut o, *at, &s.name, color);
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
    fn y_axis(&self, lo: f64, hi: f64, top: f64) -> (Frame, Vec<f64>) {
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
            top,
            x_max: self.timeline.x_max.max(1.0),
            y_lo,
            y_hi,
            scale: self.scale,
        };
        (frame, ticks)
    }

    /// Stage changes (dashed, labels alternating between two rows) and the end of the
    /// payments (solid).
    fn time_marks(&self, o: &mut String, frame: &Frame) {
        let (top, bottom) = (frame.top, frame.bottom());
        let labelled = self.timeline.stages.len() <= MAX_STAGE_LABELS;
        for (i, (t, label)) in self.timeline.stages.iter().enumerate() {
            let px = frame.x(*t);
            let _ = write!(
                o,
                r##"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{bottom:.1}" stroke="#b0b0b0" stroke-dasharray="4 3"/>"##,
            );
            if labelled {
                let ly = top + 10.0 + (i % 2) as f64 * 11.0;
                let _ = write!(
                    o,
                    r##"<text x="{:.1}" y="{ly:.1}" font-size="9" fill="#777">{}</text>"##,
                    px + 2.0,
                    esc(label)
                );
            }
        }
        let px = frame.x(self.timeline.end);
        let _ = write!(
            o,
            r##"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{bottom:.1}" stroke="#555" stroke-width="1.5"/>"##,
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
        let dash = match s.stroke {
            Stroke::Dashed => r#" stroke-dasharray="6 4""#,
            Stroke::Solid => "",
        };
        let _ = write!(
            o,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} points="{}"/>"#,
            pts.join(" ")
        );
    }
}

/// A legend entry in the room `at` (from [`legend_layout`]): a swatch and a name.
pub(super) fn legend_entry(o: &mut String, at: Rect, name: &str, color: &str) {
    let (x, _, _, bottom) = at;
    let base = bottom - 4.0;
    let _ = write!(
        o,
        r#"<rect x="{x:.1}" y="{:.1}" width="{SWATCH_W}" height="4" fill="{color}"/><text x="{:.1}" y="{base:.1}">{}</text>"#,
        base - 6.0,
        x + SWATCH_W + SWATCH_GAP,
        esc(name)
    );
}

/// The plot area's border and the names of both axes.
pub(super) fn axis_names(o: &mut String, frame: &Frame, x_label: &str, y_label: &str) {
    let _ = write!(
        o,
        r##"<rect x="{ML}" y="{:.1}" width="{PW}" height="{PH}" fill="none" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
        frame.top,
        ML + PW / 2.0,
        frame.bottom() + MB - 4.0,
        esc(x_label)
    );
    let _ = write!(
        o,
        r##"<text transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle" fill="#444">{}</text>"##,
        frame.top + PH / 2.0,
        esc(y_label)
    );
}

/// Horizontal grid lines at the y ticks, with their labels.
pub(super) fn y_grid(o: &mut String, frame: &Frame, ticks: &[f64]) {
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
        x_tick(o, frame.x(x), frame.bottom(), &fmt_tick(x));
        x += x_step;
    }
}

/// A tick at `px` under the plot area (whose bottom is `bottom`), with its label.
pub(super) fn x_tick(o: &mut String, px: f64, bottom: f64, label: &str) {
    let _ = write!(
        o,
        r##"<line x1="{px:.1}" y1="{bottom:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
        bottom + 4.0,
        bottom + 16.0,
        esc(label)
    );
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
            id: "latency",
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
        // Scales with the page: a viewBox, a relative width, no fixed height.
        assert!(svg.contains(r#"viewBox="0 0 1100 "#) && svg.contains(r#"width="100%""#));
        assert!(!svg.contains("height=\"3") && svg.contains(r#"data-chart="latency""#));
        assert!(svg.contains("t &lt;x&gt;"));
        assert!(svg.contains("<polyline"));
        let empty = Chart {
            series: vec![],
            scale: Scale::Linear,
            ..c
        };
        assert!(empty.svg().contains(r#"class="nodata""#));
    }

    fn overlap(a: Rect, b: Rect) -> bool {
        a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
    }

    #[test]
    fn legends_never_overlap_the_title_the_plot_or_each_other() {
        let title = "CPU per process, 5 s average (100% = one core), a long title indeed";
        let names: Vec<String> = (0..14)
            .map(|i| format!("processor-{i}{}", "x".repeat(i * 3)))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let t = title_rect(title);
        for k in 0..=names.len() {
            let (rects, top) = legend_layout(&names[..k]);
            for (i, r) in rects.iter().enumerate() {
                assert!(!overlap(*r, t), "{k} series: entry {i} overlaps the title");
                assert!(r.0 >= ML && r.2 <= W - MR, "{k} series: entry {i} {r:?}");
                assert!(r.3 <= top, "{k} series: entry {i} overlaps the plot area");
                for (j, q) in rects[..i].iter().enumerate() {
                    assert!(!overlap(*r, *q), "{k} series: entries {j} and {i}");
                }
            }
        }
        // Fourteen long names take several rows; the plot area moves down for them.
        let (_, one_row) = legend_layout(&names[..1]);
        let (_, all) = legend_layout(&names);
        assert!(all > one_row + 40.0, "{one_row} {all}");
    }
}
